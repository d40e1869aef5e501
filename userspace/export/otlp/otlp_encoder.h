// OTLP protobuf bodies (ExportTraceServiceRequest, ExportMetricsServiceRequest) from loupe's spans
// and request series; gzip for the wire.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "aggregate/request_metrics.h"
#include "export/otlp/span.h"

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

// The request series as OTLP metrics: cumulative explicit-bucket histograms (the same bounds and
// counts as /metrics), named after OpenTelemetry's semantic conventions, one ResourceMetrics per
// service. start_unix_ns: when counting began (the agent's start), the same in every export.
std::string encode_request_metrics(const aggregate::SeriesMap& series,
                                   const EncoderContext& context, std::uint64_t start_unix_ns,
                                   std::uint64_t now_unix_ns, std::size_t* data_points = nullptr);

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
