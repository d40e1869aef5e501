#include "protocols/http1/http1_protocol.h"

#include <array>
#include <vector>

#include "protocols/http1/http1_parser.h"
#include "protocols/http1/route_normalizer.h"

namespace loupe::http1 {
namespace {

using protocols::KeyField;
using protocols::LabelSpec;

class Http1Parser final : public protocols::ConnectionParser {
  public:
    explicit Http1Parser(protocols::Side hint) : connection_(hint) {}

    void on_segment(const protocols::Segment& segment, protocols::RequestSink& sink) override {
        connection_.on_segment(segment, exchanges_);
        report(sink);
    }
    void on_close(std::uint64_t timestamp_ns, protocols::RequestSink& sink) override {
        connection_.on_close(timestamp_ns, exchanges_);
        report(sink);
    }
    protocols::Side side() const noexcept override { return connection_.role(); }
    const protocols::ParserStats& stats() const noexcept override {
        const auto& s = connection_.stats();
        stats_.unparsed_segments = s.unparsed_segments;
        stats_.unmatched_responses = s.unmatched_responses;
        stats_.dropped_requests = s.dropped_requests;
        stats_.desyncs = connection_.framing_stats().desyncs;
        return stats_;
    }
    std::size_t memory_bytes() const noexcept override {
        return sizeof(*this) - sizeof(connection_) + connection_.memory_bytes() +
               exchanges_.capacity() * sizeof(Exchange);
    }

  private:
    void report(protocols::RequestSink& sink) {
        for (const Exchange& ex : exchanges_) {
            protocols::Request r;
            r.protocol = protocols::Protocol::kHttp1;
            r.side = ex.role;
            r.operation = ex.method;
            r.target = ex.path;
            r.status = ex.status;
            r.start_ns = ex.start_ns;
            r.end_ns = ex.end_ns;
            r.traceparent = ex.traceparent.view();
            sink.on_request(r);
        }
        exchanges_.clear();
    }

    Http1Connection connection_;
    std::vector<Exchange> exchanges_;  // reused: no allocation per request once warm
    mutable protocols::ParserStats stats_;
};

// OpenTelemetry's advisory buckets for http.server.request.duration (seconds): 5 ms ... 10 s.
constexpr std::array<std::uint64_t, 14> kBoundsNs = {
    5'000'000,     10'000'000,    25'000'000,    50'000'000,    75'000'000,
    100'000'000,   250'000'000,   500'000'000,   750'000'000,   1'000'000'000,
    2'500'000'000, 5'000'000'000, 7'500'000'000, 10'000'000'000};

constexpr LabelSpec kServerLabels[] = {
    {"http_request_method", KeyField::kOperation},
    {"http_route", KeyField::kTarget},
    {"http_response_status_code", KeyField::kStatus},
    {"url_scheme", KeyField::kUrlScheme},
};
constexpr LabelSpec kClientLabels[] = {
    {"http_request_method", KeyField::kOperation},    {"http_route", KeyField::kTarget},
    {"http_response_status_code", KeyField::kStatus}, {"server_address", KeyField::kServerAddress},
    {"server_port", KeyField::kServerPort},           {"url_scheme", KeyField::kUrlScheme},
};

// "200", or "none" when the connection closed without a response.
std::string_view status_label(const protocols::Request& r, std::array<char, 16>& digits) {
    if (r.status < 100 || r.status > 999) return "none";
    digits[0] = static_cast<char>('0' + r.status / 100);
    digits[1] = static_cast<char>('0' + r.status / 10 % 10);
    digits[2] = static_cast<char>('0' + r.status % 10);
    return {digits.data(), 3};
}

std::string route_of(std::string_view path) {
    static const RouteNormalizer normalizer;
    return normalizer.normalize(path);
}

// 5xx for servers; 4xx, 5xx for clients; no response for both (the request got no answer).
bool is_error(protocols::Side side, std::string_view status) {
    if (status == "none") return true;
    if (status.empty()) return false;
    return side == protocols::Side::kServer ? status[0] == '5'
                                            : (status[0] == '4' || status[0] == '5');
}

}  // namespace

std::unique_ptr<protocols::ConnectionParser> make_parser(protocols::Side hint) {
    return std::make_unique<Http1Parser>(hint);
}

const protocols::MetricSpec kMetricSpec = {
    .system = "http",
    .database = false,
    .server = {"http_server_request_duration_seconds",
               "Duration of HTTP server requests: first request byte read to last response byte "
               "written (kernel clock).",
               "loupe_http_server_request_duration_window_seconds",
               "Request duration over a sliding window (label window): quantiles from the sketch "
               "(0.54% to 4.3% relative error, wider spreads coarser), exact _count and _sum of "
               "the window.",
               kServerLabels,
               {}},
    .client = {"http_client_request_duration_seconds",
               "Duration of HTTP client requests: first request byte written to last response "
               "byte read (kernel clock).",
               "loupe_http_client_request_duration_window_seconds",
               "Request duration over a sliding window (label window): quantiles from the sketch "
               "(0.54% to 4.3% relative error, wider spreads coarser), exact _count and _sum of "
               "the window.",
               kClientLabels,
               {}},
    .bounds_ns = kBoundsNs,
    .capped = KeyField::kTarget,
    .overflow = "/{overflow}",
    .status = &status_label,
    .normalize_target = &route_of,
    .is_error = &is_error,
};

}  // namespace loupe::http1
