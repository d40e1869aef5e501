// Sends spans and metrics to an OTLP/HTTP receiver (binary protobuf, gzip) from threads of its
// own: the capture path only moves finished spans into a bounded queue (never waits on the
// network). A batch is retried with exponential back-off while the receiver answers 429, 502,
// 503 or 504 or cannot be reached, honouring Retry-After; meanwhile new spans wait in the queue
// and, once it is full, are dropped and counted. Metrics are cumulative: a failed export is not
// retried, the next one carries the same counts and more.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "export/otlp/otlp_encoder.h"
#include "export/otlp/span.h"

namespace loupe::otlp {

struct ExporterOptions {
    std::string traces_url;   // empty: no spans
    std::string metrics_url;  // empty: no metrics
    std::vector<std::pair<std::string, std::string>> headers;
    bool gzip = true;
    std::string ca_cert_path;  // PEM CA certificates for https URLs; empty: the system's
    std::size_t max_queued_spans = 100'000;
    std::size_t batch_spans = 4096;               // spans per export request at most
    std::chrono::milliseconds batch_delay{1000};  // a partial batch waits at most this long
    std::chrono::milliseconds metrics_interval{10'000};
    std::chrono::milliseconds timeout{10'000};
    std::chrono::milliseconds first_backoff{500};
    std::chrono::milliseconds max_backoff{30'000};
};

struct ExporterCounters {
    std::uint64_t spans_sent = 0;  // accepted by the receiver (rejected ones included)
    std::uint64_t spans_dropped_queue_full = 0;
    std::uint64_t spans_dropped_failed = 0;  // the receiver refused the batch (not retryable)
    std::uint64_t spans_rejected = 0;        // partial_success.rejected_spans
    std::uint64_t span_requests = 0;         // export requests answered 2xx
    std::uint64_t metric_requests = 0;
    std::uint64_t metric_requests_failed = 0;
    std::uint64_t data_points_sent = 0;
    std::uint64_t data_points_rejected = 0;  // partial_success.rejected_data_points
    std::uint64_t retries = 0;               // attempts that will be retried
    std::uint64_t bytes_sent = 0;            // request bodies, as sent (compressed)
    std::size_t spans_queued = 0;
};

class OtlpExporter {
  public:
    // Builds the metrics export: the body (ExportMetricsServiceRequest) and its data points.
    using MetricsSource = std::function<std::pair<std::string, std::size_t>()>;

    OtlpExporter(ExporterOptions options, EncoderContext context, MetricsSource metrics);
    ~OtlpExporter();  // a last attempt for what is queued, then stops
    OtlpExporter(const OtlpExporter&) = delete;
    OtlpExporter& operator=(const OtlpExporter&) = delete;

    // Moves spans into the queue; those beyond max_queued_spans are dropped and counted. Never
    // blocks on the network.
    void enqueue(std::vector<Span>& spans);
    ExporterCounters counters() const;
    bool traces_enabled() const { return !options_.traces_url.empty(); }

  private:
    enum class Outcome { kSent, kRetry, kFailed };
    struct Answer {
        Outcome outcome = Outcome::kFailed;
        std::chrono::milliseconds retry_after{0};
        std::string body;
    };
    Answer post(const std::string& url, const std::string& body);
    void span_loop();
    void metrics_loop();
    // Sleeps `duration` unless stopping; false when stopping.
    bool sleep(std::chrono::milliseconds duration);

    ExporterOptions options_;
    EncoderContext context_;
    MetricsSource metrics_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Span> queue_;
    ExporterCounters counters_;
    bool stopping_ = false;
    std::thread span_thread_;
    std::thread metrics_thread_;
};

}  // namespace loupe::otlp
