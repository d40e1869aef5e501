// OTLP protobuf bodies (ExportTraceServiceRequest, ExportMetricsServiceRequest) from loupe's spans
// and request series; gzip for the wire.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "aggregate/request_metrics.h"
#include "export/otlp/span.h"
#include "resources/resource_tracker.h"

namespace loupe::otlp {

using Attributes = std::vector<std::pair<std::string, std::string>>;

// The resource of a service key (attribution/): service.name, container.id, k8s.*, and the
// OTEL_RESOURCE_ATTRIBUTES ones; host.name and process.* are added by the encoder.
using ResourceOf = std::function<std::shared_ptr<const Attributes>(const std::string& service)>;

struct EncoderContext {
    ResourceOf resource_of;
    std::string host_name;
    std::string scope_version;
};

// One ResourceSpans per (service, process).
std::string encode_traces(const std::vector<Span>& spans, const EncoderContext& context);

// A sampled span of a request series, attached to that series' latency data point.
struct Exemplar {
    TraceId trace_id{};
    SpanId span_id{};
    double seconds = 0;  // the span's duration
    std::uint64_t time_unix_ns = 0;
};
// By Series::id: the latest sampled span of each series.
using Exemplars = std::unordered_map<std::uint64_t, Exemplar>;

enum class HistogramForm {
    kExponential,  // from each series' cumulative LogSketch (Series::cumulative), bucket by bucket
    kExplicit,     // the bounds and counts of /metrics' le buckets
};

struct MetricsInput {
    const aggregate::SeriesMap* series = nullptr;
    HistogramForm form = HistogramForm::kExponential;
    const Exemplars* exemplars = nullptr;  // optional
    // Resource usage by service (process.cpu.time, ...); null: none sampled yet.
    const std::map<std::string, resources::ServiceResources>* services = nullptr;
    unsigned node_cpus = 0;  // for process.cpu.utilization
};

// The request series as OTLP metrics, named after OpenTelemetry's semantic conventions, one
// ResourceMetrics per service: cumulative histograms (exponential, or explicit with /metrics'
// bounds), the count and sum of /metrics, an exemplar per series when one is known; and the
// services' resource usage (process.cpu.time, process.memory.usage, process.disk.io, ...).
// start_unix_ns: when counting began (the agent's start), the same in every export.
std::string encode_metrics(const MetricsInput& input, const EncoderContext& context,
                           std::uint64_t start_unix_ns, std::uint64_t now_unix_ns,
                           std::size_t* data_points = nullptr);

// The request series alone, as explicit-bucket histograms.
std::string encode_request_metrics(const aggregate::SeriesMap& series,
                                   const EncoderContext& context, std::uint64_t start_unix_ns,
                                   std::uint64_t now_unix_ns, std::size_t* data_points = nullptr);

// The offset of an OTLP exponential histogram (in seconds) whose first bucket is a cumulative
// sketch's bucket `sketch_index` at `scale` (aggregate::to_binary_units): the same edges, exactly.
constexpr int otlp_bucket_index(int sketch_index, int scale) {
    return sketch_index - (aggregate::kBinarySecondShift << scale);
}

// OTel's dotted name of a Prometheus label or family name of loupe's ("http_response_status_code"
// -> "http.response.status_code", "http_server_request_duration_seconds" ->
// "http.server.request.duration").
std::string otel_attribute_name(std::string_view label);
std::string otel_metric_name(std::string_view family);

// gzip (RFC 1952) of `data`; empty on failure.
std::string gzip(const std::string& data, int level = 1);

// Rejected items in an export's answer (partial_success), or -1 when it does not decode.
std::int64_t rejected_spans(const std::string& response_body);
std::int64_t rejected_data_points(const std::string& response_body);

}  // namespace loupe::otlp
