#include "export/otlp/otlp_exporter.h"

#include <charconv>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "util/url.h"

namespace loupe::otlp {
namespace {

bool retryable(int status) {
    return status == 429 || status == 502 || status == 503 || status == 504;
}

// Retry-After as delta-seconds (an HTTP date is taken as no hint).
std::chrono::milliseconds retry_after(const httplib::Result& res) {
    if (!res || !res->has_header("Retry-After")) return std::chrono::milliseconds(0);
    const std::string value = res->get_header_value("Retry-After");
    unsigned seconds = 0;
    const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc() || ptr != value.data() + value.size())
        return std::chrono::milliseconds(0);
    return std::chrono::seconds(std::min(seconds, 300u));
}

// A URL without its path, for logs: the path and query may carry tokens.
std::string shown(const std::string& url) {
    return util::split_url(url).first;
}

}  // namespace

OtlpExporter::OtlpExporter(ExporterOptions options, EncoderContext context, MetricsSource metrics)
    : options_(std::move(options)), context_(std::move(context)), metrics_(std::move(metrics)) {
    if (!options_.traces_url.empty()) span_thread_ = std::thread([this] { span_loop(); });
    if (!options_.metrics_url.empty() && metrics_)
        metrics_thread_ = std::thread([this] { metrics_loop(); });
}

OtlpExporter::~OtlpExporter() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (span_thread_.joinable()) span_thread_.join();
    if (metrics_thread_.joinable()) metrics_thread_.join();
}

void OtlpExporter::enqueue(std::vector<Span>& spans) {
    if (spans.empty()) return;
    bool wake = false;
    {
        std::lock_guard lock(mutex_);
        if (options_.traces_url.empty()) {
            spans.clear();
            return;
        }
        const std::size_t room = options_.max_queued_spans > queue_.size()
                                     ? options_.max_queued_spans - queue_.size()
                                     : 0;
        const std::size_t taken = std::min(room, spans.size());
        for (std::size_t i = 0; i < taken; ++i)
            queue_.push_back(std::move(spans[i]));
        counters_.spans_dropped_queue_full += spans.size() - taken;
        wake = queue_.size() >= options_.batch_spans;
    }
    spans.clear();
    if (wake) wake_.notify_all();
}

ExporterCounters OtlpExporter::counters() const {
    std::lock_guard lock(mutex_);
    ExporterCounters out = counters_;
    out.spans_queued = queue_.size();
    return out;
}

bool OtlpExporter::sleep(std::chrono::milliseconds duration) {
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, duration, [this] { return stopping_; });
    return !stopping_;
}

OtlpExporter::Answer OtlpExporter::post(const std::string& url, const std::string& body) {
    const auto [base, path] = util::split_url(url);
    httplib::Client client(base);
    if (!options_.ca_cert_path.empty()) client.set_ca_cert_path(options_.ca_cert_path);
    client.set_connection_timeout(std::min(options_.timeout, std::chrono::milliseconds(5000)));
    client.set_read_timeout(options_.timeout);
    client.set_write_timeout(options_.timeout);
    httplib::Headers headers;
    for (const auto& [k, v] : options_.headers)
        headers.emplace(k, v);
    const std::string* sent = &body;
    std::string compressed;
    if (options_.gzip) {
        compressed = gzip(body);
        if (!compressed.empty()) {
            headers.emplace("Content-Encoding", "gzip");
            sent = &compressed;
        }
    }
    const auto res = client.Post(path, headers, *sent, "application/x-protobuf");
    Answer answer;
    if (!res) {
        answer.outcome = Outcome::kRetry;  // not reachable: the receiver may come back
        spdlog::debug("otlp: {} unreachable: {}", shown(url), httplib::to_string(res.error()));
        return answer;
    }
    {
        std::lock_guard lock(mutex_);
        counters_.bytes_sent += sent->size();
    }
    if (res->status >= 200 && res->status < 300) {
        answer.outcome = Outcome::kSent;
        answer.body = res->body;
    } else if (retryable(res->status)) {
        answer.outcome = Outcome::kRetry;
        answer.retry_after = retry_after(res);
    } else {
        answer.outcome = Outcome::kFailed;
        spdlog::warn("otlp: {} answered {} to an export: dropped", shown(url), res->status);
    }
    return answer;
}

void OtlpExporter::span_loop() {
    auto last_send = std::chrono::steady_clock::now();
    while (true) {
        std::vector<Span> batch;
        bool stopping = false;
        {
            std::unique_lock lock(mutex_);
            wake_.wait_until(lock, last_send + options_.batch_delay,
                             [this] { return stopping_ || queue_.size() >= options_.batch_spans; });
            stopping = stopping_;
            const std::size_t n = std::min(queue_.size(), options_.batch_spans);
            batch.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        last_send = std::chrono::steady_clock::now();
        if (batch.empty()) {
            if (stopping) return;
            continue;
        }
        const std::string body = encode_traces(batch, context_);
        auto backoff = options_.first_backoff;
        bool warned = false;
        while (true) {
            const Answer answer = post(options_.traces_url, body);
            std::unique_lock lock(mutex_);
            if (answer.outcome == Outcome::kSent) {
                ++counters_.span_requests;
                counters_.spans_sent += batch.size();
                const std::int64_t rejected = rejected_spans(answer.body);
                if (rejected > 0) counters_.spans_rejected += static_cast<std::uint64_t>(rejected);
                break;
            }
            if (answer.outcome == Outcome::kFailed || stopping_) {
                counters_.spans_dropped_failed += batch.size();
                break;
            }
            ++counters_.retries;
            const auto wait = std::max(backoff, answer.retry_after);
            if (!warned) {
                spdlog::warn("otlp: traces export to {} failed, retrying (every {} ms at most)",
                             shown(options_.traces_url), options_.max_backoff.count());
                warned = true;
            }
            wake_.wait_for(lock, wait, [this] { return stopping_; });
            backoff = std::min(backoff * 2, options_.max_backoff);
        }
        if (stopping) return;
    }
}

void OtlpExporter::metrics_loop() {
    while (sleep(options_.metrics_interval)) {
        auto [body, points] = metrics_();
        if (points == 0) continue;
        const Answer answer = post(options_.metrics_url, body);
        std::lock_guard lock(mutex_);
        if (answer.outcome == Outcome::kSent) {
            ++counters_.metric_requests;
            counters_.data_points_sent += points;
            const std::int64_t rejected = rejected_data_points(answer.body);
            if (rejected > 0)
                counters_.data_points_rejected += static_cast<std::uint64_t>(rejected);
        } else {
            ++counters_.metric_requests_failed;
        }
    }
}

}  // namespace loupe::otlp
