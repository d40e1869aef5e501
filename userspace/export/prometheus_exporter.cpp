#include "export/prometheus_exporter.h"

#include <cmath>
#include <sstream>
#include <utility>
#include <vector>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "util/version.h"

namespace loupe::exporter {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

struct Window {
    const char* label;
    std::chrono::nanoseconds span;
};
constexpr Window kWindows[] = {{"1m", std::chrono::minutes(1)}, {"5m", std::chrono::minutes(5)}};
constexpr std::pair<const char*, double> kQuantiles[] = {
    {"0.5", 0.5}, {"0.95", 0.95}, {"0.99", 0.99}};  // label, q

std::vector<ClientMetric::Label> http_labels(const aggregate::HttpSeriesKey& key) {
    std::vector<ClientMetric::Label> labels = {{"service_name", key.service},
                                               {"http_request_method", key.method},
                                               {"http_route", key.route},
                                               {"http_response_status_code", key.status}};
    if (key.side == aggregate::HttpSide::kClient) {
        labels.push_back({"server_address", key.server_address});
        labels.push_back({"server_port", key.server_port});
    }
    return labels;
}

MetricFamily family(std::string name, std::string help, MetricType type) {
    MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
}

ClientMetric sample(double value, std::vector<ClientMetric::Label> labels, MetricType type) {
    ClientMetric m;
    m.label = std::move(labels);
    if (type == MetricType::Counter)
        m.counter.value = value;
    else
        m.gauge.value = value;
    return m;
}

void add_counter(std::vector<MetricFamily>& out, const char* name, const char* help, double value,
                 std::vector<ClientMetric::Label> labels = {}) {
    auto f = family(name, help, MetricType::Counter);
    f.metric.push_back(sample(value, std::move(labels), MetricType::Counter));
    out.push_back(std::move(f));
}

void add_gauge(std::vector<MetricFamily>& out, const char* name, const char* help, double value,
               std::vector<ClientMetric::Label> labels = {}) {
    auto f = family(name, help, MetricType::Gauge);
    f.metric.push_back(sample(value, std::move(labels), MetricType::Gauge));
    out.push_back(std::move(f));
}

void add_http_families(std::vector<MetricFamily>& out, const MetricsView& view,
                       aggregate::HttpSide side) {
    const bool server = side == aggregate::HttpSide::kServer;
    auto histogram = family(
        server ? "http_server_request_duration_seconds" : "http_client_request_duration_seconds",
        server ? "Duration of HTTP server requests: first request byte read to last response "
                 "byte written (kernel clock)."
               : "Duration of HTTP client requests: first request byte written to last "
                 "response byte read (kernel clock).",
        MetricType::Histogram);
    auto windowed =
        family(server ? "loupe_http_server_request_duration_window_seconds"
                      : "loupe_http_client_request_duration_window_seconds",
               "Request duration over a sliding window (label window): quantiles from the sketch "
               "(0.54% relative error), exact _count and _sum of the window.",
               MetricType::Summary);
    stats::LogSketch merged;
    for (const auto& [key, series] : view.http.series()) {
        if (key.side != side) continue;
        ClientMetric h;
        h.label = http_labels(key);
        h.histogram.sample_count = series.count;
        h.histogram.sample_sum = static_cast<double>(series.sum_ns) * 1e-9;
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < aggregate::kDurationBoundsNs.size(); ++i) {
            cumulative += series.buckets[i];
            h.histogram.bucket.push_back(
                {cumulative, static_cast<double>(aggregate::kDurationBoundsNs[i]) * 1e-9});
        }
        h.histogram.bucket.push_back({series.count, std::numeric_limits<double>::infinity()});
        histogram.metric.push_back(std::move(h));

        for (const auto& w : kWindows) {
            series.window.window(w.span, view.now, merged);
            if (merged.empty()) continue;
            ClientMetric m;
            m.label = http_labels(key);
            m.label.push_back({"window", w.label});
            m.summary.sample_count = merged.count();
            m.summary.sample_sum = static_cast<double>(merged.sum_ns()) * 1e-9;
            for (const auto& [qlabel, q] : kQuantiles)
                m.summary.quantile.push_back({q, merged.quantile_ns(q) * 1e-9});
            windowed.metric.push_back(std::move(m));
        }
    }
    out.push_back(std::move(histogram));
    out.push_back(std::move(windowed));
}

}  // namespace

std::string render_prometheus(const MetricsView& view) {
    std::vector<MetricFamily> families;
    add_http_families(families, view, aggregate::HttpSide::kServer);
    add_http_families(families, view, aggregate::HttpSide::kClient);

    const auto& p = view.pipeline;
    add_counter(families, "loupe_events_total", "Events received from the kernel.",
                static_cast<double>(p.events));
    {
        auto f = family("loupe_events_dropped_total", "Events or state lost, by reason.",
                        MetricType::Counter);
        const std::pair<const char*, std::uint64_t> reasons[] = {
            {"ringbuf_full", view.kernel_drops.ringbuf_full},
            {"inflight_table_full", view.kernel_drops.inflight_full},
            {"conn_table_full", view.kernel_drops.conn_table_full},
            {"malformed", p.malformed_events},
            {"series_limit", view.http.series_dropped()},
            {"connections_evicted", p.connections_evicted},
            {"pending_request_limit", p.dropped_requests}};
        for (const auto& [reason, value] : reasons)
            f.metric.push_back(
                sample(static_cast<double>(value), {{"reason", reason}}, MetricType::Counter));
        families.push_back(std::move(f));
    }
    add_counter(families, "loupe_http_exchanges_total", "HTTP request/response exchanges matched.",
                static_cast<double>(p.exchanges));
    add_counter(families, "loupe_http_unparsed_segments_total",
                "Reads/writes on HTTP connections that did not parse as HTTP/1.x (garbage, binary, "
                "truncated).",
                static_cast<double>(p.unparsed_segments));
    add_counter(families, "loupe_http_unmatched_responses_total",
                "HTTP responses without a pending request.",
                static_cast<double>(p.unmatched_responses));
    add_counter(families, "loupe_http_route_overflow_total",
                "Requests whose route went to the overflow route because the per-service route cap "
                "was reached.",
                static_cast<double>(view.http.routes_overflowed()));
    add_gauge(families, "loupe_connections_tracked", "Connections with parser state in user space.",
              static_cast<double>(view.live_connections));
    add_gauge(families, "loupe_series", "Live metric series held by the agent.",
              static_cast<double>(view.http.series().size()));
    add_gauge(families, "loupe_uptime_seconds", "Seconds since the agent started.",
              view.uptime_seconds);
    add_gauge(families, "loupe_resident_memory_bytes", "Resident memory of the loupe agent.",
              view.resident_memory_bytes);
    add_gauge(families, "loupe_build_info", "Build information.", 1.0, {{"version", kVersion}});

    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, families);
    return out.str();
}

}  // namespace loupe::exporter
