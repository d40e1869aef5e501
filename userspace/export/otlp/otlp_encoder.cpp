#include "export/otlp/otlp_encoder.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <tuple>

#include <google/protobuf/arena.h>

#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "protocols/registry.h"

namespace loupe::otlp {
namespace {

namespace pb_common = opentelemetry::proto::common::v1;
namespace pb_trace = opentelemetry::proto::trace::v1;
namespace pb_metrics = opentelemetry::proto::metrics::v1;
using protocols::Side;

void add_string(google::protobuf::RepeatedPtrField<pb_common::KeyValue>* into, std::string_view key,
                std::string_view value) {
    auto* kv = into->Add();
    kv->set_key(key.data(), key.size());
    kv->mutable_value()->set_string_value(value.data(), value.size());
}

void add_int(google::protobuf::RepeatedPtrField<pb_common::KeyValue>* into, std::string_view key,
             std::int64_t value) {
    auto* kv = into->Add();
    kv->set_key(key.data(), key.size());
    kv->mutable_value()->set_int_value(value);
}

void fill_resource(opentelemetry::proto::resource::v1::Resource* resource,
                   const EncoderContext& context, const std::string& service, std::uint32_t pid,
                   std::string_view executable) {
    auto* attributes = resource->mutable_attributes();
    std::shared_ptr<const Attributes> known;
    if (context.resource_of) known = context.resource_of(service);
    bool has_service_name = false;
    if (known)
        for (const auto& [k, v] : *known) {
            add_string(attributes, k, v);
            has_service_name = has_service_name || k == "service.name";
        }
    if (!has_service_name) add_string(attributes, "service.name", service);
    if (!context.host_name.empty()) add_string(attributes, "host.name", context.host_name);
    if (pid != 0) add_int(attributes, "process.pid", pid);
    if (!executable.empty()) add_string(attributes, "process.executable.name", executable);
}

void fill_scope(pb_common::InstrumentationScope* scope, const EncoderContext& context) {
    scope->set_name("loupe");
    scope->set_version(context.scope_version);
}

void fill_span(pb_trace::Span* out, const Span& s) {
    out->set_trace_id(s.trace_id.data(), s.trace_id.size());
    out->set_span_id(s.span_id.data(), s.span_id.size());
    if (std::any_of(s.parent_span_id.begin(), s.parent_span_id.end(),
                    [](std::uint8_t b) { return b != 0; }))
        out->set_parent_span_id(s.parent_span_id.data(), s.parent_span_id.size());
    out->set_flags(s.sampled_by_caller ? 1u : 0u);
    out->set_name(s.name);
    out->set_kind(s.side == Side::kClient ? pb_trace::Span::SPAN_KIND_CLIENT
                                          : pb_trace::Span::SPAN_KIND_SERVER);
    out->set_start_time_unix_nano(s.start_unix_ns);
    out->set_end_time_unix_nano(s.end_unix_ns);
    auto* a = out->mutable_attributes();
    if (s.protocol == protocols::Protocol::kHttp1) {
        add_string(a, "http.request.method", s.operation);
        if (!s.route.empty()) add_string(a, "http.route", s.route);
        if (s.http_status != 0) add_int(a, "http.response.status_code", s.http_status);
        add_string(a, "network.protocol.name", "http");
    } else {
        add_string(a, "db.system.name", s.db_system);
        if (!s.operation.empty()) add_string(a, "db.operation.name", s.operation);
        if (!s.db_namespace.empty()) add_string(a, "db.namespace", s.db_namespace);
        if (!s.db_collection.empty()) add_string(a, "db.collection.name", s.db_collection);
        if (!s.db_summary.empty()) add_string(a, "db.query.summary", s.db_summary);
        if (!s.error_type.empty()) add_string(a, "db.response.status_code", s.error_type);
    }
    if (!s.server_address.empty()) add_string(a, "server.address", s.server_address);
    if (s.server_port != 0) add_int(a, "server.port", s.server_port);
    if (!s.error_type.empty()) {
        add_string(a, "error.type", s.error_type);
        out->mutable_status()->set_code(pb_trace::Status::STATUS_CODE_ERROR);
    }
}

}  // namespace

std::string encode_traces(const std::vector<Span>& spans, const EncoderContext& context) {
    google::protobuf::Arena arena;
    auto* request = google::protobuf::Arena::CreateMessage<
        opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest>(&arena);
    std::map<std::pair<std::string_view, std::uint32_t>, pb_trace::ScopeSpans*> by_process;
    for (const Span& s : spans) {
        auto [it, fresh] = by_process.try_emplace({s.service, s.pid}, nullptr);
        if (fresh) {
            auto* resource_spans = request->add_resource_spans();
            fill_resource(resource_spans->mutable_resource(), context, s.service, s.pid,
                          s.executable);
            it->second = resource_spans->add_scope_spans();
            fill_scope(it->second->mutable_scope(), context);
        }
        fill_span(it->second->add_spans(), s);
    }
    return request->SerializeAsString();
}

std::string otel_attribute_name(std::string_view label) {
    static const std::map<std::string_view, std::string_view> kKnown = {
        {"http_request_method", "http.request.method"},
        {"http_route", "http.route"},
        {"http_response_status_code", "http.response.status_code"},
        {"server_address", "server.address"},
        {"server_port", "server.port"},
        {"db_system_name", "db.system.name"},
        {"db_operation_name", "db.operation.name"},
        {"db_namespace", "db.namespace"},
        {"db_collection_name", "db.collection.name"},
        {"db_query_summary", "db.query.summary"},
        {"db_response_status_code", "db.response.status_code"},
        {"error_type", "error.type"},
    };
    if (const auto it = kKnown.find(label); it != kKnown.end()) return std::string(it->second);
    std::string name(label);
    std::replace(name.begin(), name.end(), '_', '.');
    return name;
}

std::string otel_metric_name(std::string_view family) {
    if (family.ends_with("_seconds")) family.remove_suffix(8);
    std::string name(family);
    std::replace(name.begin(), name.end(), '_', '.');
    return name;
}

std::string encode_request_metrics(const aggregate::SeriesMap& series,
                                   const EncoderContext& context, std::uint64_t start_unix_ns,
                                   std::uint64_t now_unix_ns, std::size_t* data_points) {
    google::protobuf::Arena arena;
    auto* request = google::protobuf::Arena::CreateMessage<
        opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest>(&arena);
    // service -> metric name -> its histogram
    std::map<std::string_view, std::pair<pb_metrics::ScopeMetrics*,
                                         std::map<std::string_view, pb_metrics::Histogram*>>>
        by_service;
    std::size_t points = 0;
    for (const auto& [key, s] : series) {
        const protocols::MetricSpec* spec = aggregate::metric_spec(key.protocol);
        if (!spec || s.count == 0) continue;
        auto [sit, fresh] = by_service.try_emplace(key.service);
        if (fresh) {
            auto* resource_metrics = request->add_resource_metrics();
            fill_resource(resource_metrics->mutable_resource(), context, key.service, 0, {});
            sit->second.first = resource_metrics->add_scope_metrics();
            fill_scope(sit->second.first->mutable_scope(), context);
        }
        const protocols::FamilySpec& family = spec->family(key.side);
        auto [mit, new_metric] = sit->second.second.try_emplace(family.histogram, nullptr);
        if (new_metric) {
            auto* metric = sit->second.first->add_metrics();
            metric->set_name(otel_metric_name(family.histogram));
            metric->set_description(std::string(family.histogram_help));
            metric->set_unit("s");
            mit->second = metric->mutable_histogram();
            mit->second->set_aggregation_temporality(
                pb_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
        }
        auto* point = mit->second->add_data_points();
        ++points;
        for (const auto& label : family.labels) {
            std::string_view value = label.field == protocols::KeyField::kConstant
                                         ? label.constant
                                         : key.field(label.field);
            if (label.field == protocols::KeyField::kSystem && value.empty())
                value = label.constant;
            if (value.empty() && label.omit_empty) continue;
            if (label.name == "http_response_status_code" || label.name == "server_port") {
                int number = 0;
                const auto [ptr, ec] =
                    std::from_chars(value.data(), value.data() + value.size(), number);
                if (ec == std::errc() && ptr == value.data() + value.size()) {
                    add_int(point->mutable_attributes(), otel_attribute_name(label.name), number);
                    continue;
                }
            }
            add_string(point->mutable_attributes(), otel_attribute_name(label.name), value);
        }
        point->set_start_time_unix_nano(start_unix_ns);
        point->set_time_unix_nano(now_unix_ns);
        point->set_count(s.count);
        point->set_sum(static_cast<double>(s.sum_ns) / 1e9);
        std::uint64_t in_bounds = 0;
        for (std::size_t i = 0; i < spec->bounds_ns.size(); ++i) {
            point->add_explicit_bounds(static_cast<double>(spec->bounds_ns[i]) / 1e9);
            point->add_bucket_counts(s.buckets[i]);
            in_bounds += s.buckets[i];
        }
        point->add_bucket_counts(s.count - std::min(in_bounds, s.count));  // +Inf
    }
    if (data_points) *data_points = points;
    return request->SerializeAsString();
}

std::string gzip(const std::string& data, int level) {
    z_stream stream{};
    if (deflateInit2(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
    std::string out;
    out.resize(deflateBound(&stream, static_cast<uLong>(data.size())) + 32);
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&stream, Z_FINISH);
    const auto produced = stream.total_out;
    deflateEnd(&stream);
    if (rc != Z_STREAM_END) return {};
    out.resize(produced);
    return out;
}

std::int64_t rejected_spans(const std::string& response_body) {
    opentelemetry::proto::collector::trace::v1::ExportTraceServiceResponse response;
    if (!response.ParseFromString(response_body)) return -1;
    return response.partial_success().rejected_spans();
}

std::int64_t rejected_data_points(const std::string& response_body) {
    opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceResponse response;
    if (!response.ParseFromString(response_body)) return -1;
    return response.partial_success().rejected_data_points();
}

}  // namespace loupe::otlp
