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

namespace {

void add_exemplar(google::protobuf::RepeatedPtrField<pb_metrics::Exemplar>* into,
                  const Exemplar& e) {
    auto* out = into->Add();
    out->set_time_unix_nano(e.time_unix_ns);
    out->set_as_double(e.seconds);
    out->set_trace_id(e.trace_id.data(), e.trace_id.size());
    out->set_span_id(e.span_id.data(), e.span_id.size());
}

void fill_explicit(pb_metrics::HistogramDataPoint* point, const aggregate::Series& s,
                   const protocols::MetricSpec& spec) {
    std::uint64_t in_bounds = 0;
    for (std::size_t i = 0; i < spec.bounds_ns.size(); ++i) {
        point->add_explicit_bounds(static_cast<double>(spec.bounds_ns[i]) / 1e9);
        point->add_bucket_counts(s.buckets[i]);
        in_bounds += s.buckets[i];
    }
    point->add_bucket_counts(s.count - std::min(in_bounds, s.count));  // +Inf
}

// The sketch's buckets, one for one: its edges in 2^-30 s units are the OTLP edges in seconds at
// the same scale, so only the index moves (otlp_bucket_index).
void fill_exponential(pb_metrics::ExponentialHistogramDataPoint* point,
                      const stats::LogSketch& sketch, std::uint64_t count) {
    const int scale = sketch.scale();
    point->set_scale(scale);
    point->set_zero_count(0);  // the sketch has no zero bucket: it clamps below 1000 units
    int first = 0;
    std::vector<std::uint64_t> counts;
    sketch.for_each_bucket([&](int index, std::uint64_t n) {
        if (counts.empty()) first = index;
        counts.resize(static_cast<std::size_t>(index - first) + 1, 0);
        counts.back() = n;
    });
    // A counter saturates at 2^32-1. Every other count being exact, a single saturated bucket
    // holds what the others do not.
    std::uint64_t total = 0;
    std::size_t saturated = 0, saturated_at = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        total += counts[i];
        if (counts[i] == ~std::uint32_t{0}) {
            ++saturated;
            saturated_at = i;
        }
    }
    if (saturated == 1 && total < count) counts[saturated_at] += count - total;
    auto* positive = point->mutable_positive();
    positive->set_offset(otlp_bucket_index(first, scale));
    for (const std::uint64_t n : counts)
        positive->add_bucket_counts(n);
}

// The ScopeMetrics of a service, made once per export.
class ServiceScopes {
  public:
    ServiceScopes(
        opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest* request,
        const EncoderContext& context)
        : request_(request), context_(context) {}

    pb_metrics::ScopeMetrics* of(std::string_view service) {
        auto [it, fresh] = scopes_.try_emplace(service, nullptr);
        if (fresh) {
            auto* resource_metrics = request_->add_resource_metrics();
            fill_resource(resource_metrics->mutable_resource(), context_, std::string(service), 0,
                          {});
            it->second = resource_metrics->add_scope_metrics();
            fill_scope(it->second->mutable_scope(), context_);
        }
        return it->second;
    }

  private:
    opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest* request_;
    const EncoderContext& context_;
    std::map<std::string_view, pb_metrics::ScopeMetrics*> scopes_;
};

void add_request_points(const MetricsInput& input, ServiceScopes& scopes,
                        std::uint64_t start_unix_ns, std::uint64_t now_unix_ns,
                        std::size_t& points) {
    const bool exponential = input.form == HistogramForm::kExponential;
    // (service, metric name) -> the metric
    std::map<std::pair<std::string_view, std::string_view>, pb_metrics::Metric*> metrics;
    for (const auto& [key, s] : *input.series) {
        const protocols::MetricSpec* spec = aggregate::metric_spec(key.protocol);
        if (!spec || s.count == 0) continue;
        if (exponential && !s.cumulative) continue;  // made before the store kept sketches
        const protocols::FamilySpec& family = spec->family(key.side);
        auto [mit, new_metric] = metrics.try_emplace({key.service, family.histogram}, nullptr);
        if (new_metric) {
            auto* metric = scopes.of(key.service)->add_metrics();
            metric->set_name(otel_metric_name(family.histogram));
            metric->set_description(std::string(family.histogram_help));
            metric->set_unit("s");
            if (exponential)
                metric->mutable_exponential_histogram()->set_aggregation_temporality(
                    pb_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
            else
                metric->mutable_histogram()->set_aggregation_temporality(
                    pb_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
            mit->second = metric;
        }
        google::protobuf::RepeatedPtrField<pb_common::KeyValue>* attributes = nullptr;
        google::protobuf::RepeatedPtrField<pb_metrics::Exemplar>* exemplars = nullptr;
        if (exponential) {
            auto* point = mit->second->mutable_exponential_histogram()->add_data_points();
            point->set_start_time_unix_nano(start_unix_ns);
            point->set_time_unix_nano(now_unix_ns);
            point->set_count(s.count);
            point->set_sum(static_cast<double>(s.sum_ns) / 1e9);
            fill_exponential(point, *s.cumulative, s.count);
            attributes = point->mutable_attributes();
            exemplars = point->mutable_exemplars();
        } else {
            auto* point = mit->second->mutable_histogram()->add_data_points();
            point->set_start_time_unix_nano(start_unix_ns);
            point->set_time_unix_nano(now_unix_ns);
            point->set_count(s.count);
            point->set_sum(static_cast<double>(s.sum_ns) / 1e9);
            fill_explicit(point, s, *spec);
            attributes = point->mutable_attributes();
            exemplars = point->mutable_exemplars();
        }
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
                    add_int(attributes, otel_attribute_name(label.name), number);
                    continue;
                }
            }
            add_string(attributes, otel_attribute_name(label.name), value);
        }
        if (input.exemplars)
            if (const auto e = input.exemplars->find(s.id); e != input.exemplars->end())
                add_exemplar(exemplars, e->second);
    }
}

// /metrics' process_* families under semantic-convention names and units.
void add_resource_points(const MetricsInput& input, ServiceScopes& scopes,
                         std::uint64_t start_unix_ns, std::uint64_t now_unix_ns,
                         std::size_t& points) {
    using resources::ServiceResources;
    auto point_of = [&](pb_metrics::NumberDataPoint* p) {
        p->set_start_time_unix_nano(start_unix_ns);
        p->set_time_unix_nano(now_unix_ns);
        ++points;
        return p;
    };
    auto sum = [&](pb_metrics::ScopeMetrics* scope, const char* name, const char* unit,
                   const char* description, bool monotonic) {
        auto* metric = scope->add_metrics();
        metric->set_name(name);
        metric->set_unit(unit);
        metric->set_description(description);
        auto* data = metric->mutable_sum();
        data->set_aggregation_temporality(pb_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
        data->set_is_monotonic(monotonic);
        return data;
    };
    auto directions = [&](pb_metrics::ScopeMetrics* scope, const char* name, const char* attribute,
                          const char* description, const char* a, std::uint64_t value_a,
                          const char* b, std::uint64_t value_b) {
        auto* metric = sum(scope, name, "By", description, true);
        for (const auto& [direction, value] : {std::pair{a, value_a}, std::pair{b, value_b}}) {
            auto* p = point_of(metric->add_data_points());
            p->set_as_int(static_cast<std::int64_t>(value));
            add_string(p->mutable_attributes(), attribute, direction);
        }
    };
    const double cpus = input.node_cpus ? input.node_cpus : 1.0;
    for (const auto& [service, r] : *input.services) {
        auto* scope = scopes.of(service);
        point_of(sum(scope, "process.cpu.time", "s",
                     "CPU time of the service's processes, live and exited.", true)
                     ->add_data_points())
            ->set_as_double(static_cast<double>(r.totals.cpu_ns) / 1e9);
        auto* utilization = scope->add_metrics();
        utilization->set_name("process.cpu.utilization");
        utilization->set_unit("1");
        utilization->set_description(
            "Share of the node's CPU capacity the service used over the last second.");
        point_of(utilization->mutable_gauge()->add_data_points())
            ->set_as_double(r.cpu_cores / cpus);
        point_of(sum(scope, "process.memory.usage", "By",
                     "Resident memory (RSS) of the service's live processes.", false)
                     ->add_data_points())
            ->set_as_int(static_cast<std::int64_t>(r.rss_bytes));
        directions(scope, "process.disk.io", "disk.io.direction",
                   "Storage bytes the service caused to be read/written (/proc/PID/io).", "read",
                   r.totals.io_read_bytes, "write", r.totals.io_write_bytes);
        directions(scope, "process.network.io", "network.io.direction",
                   "Socket bytes sent and received.", "transmit", r.totals.net_tx_bytes, "receive",
                   r.totals.net_rx_bytes);
    }
}

}  // namespace

std::string encode_metrics(const MetricsInput& input, const EncoderContext& context,
                           std::uint64_t start_unix_ns, std::uint64_t now_unix_ns,
                           std::size_t* data_points) {
    google::protobuf::Arena arena;
    auto* request = google::protobuf::Arena::CreateMessage<
        opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest>(&arena);
    ServiceScopes scopes(request, context);
    std::size_t points = 0;
    if (input.series) add_request_points(input, scopes, start_unix_ns, now_unix_ns, points);
    if (input.services) add_resource_points(input, scopes, start_unix_ns, now_unix_ns, points);
    if (data_points) *data_points = points;
    return request->SerializeAsString();
}

std::string encode_request_metrics(const aggregate::SeriesMap& series,
                                   const EncoderContext& context, std::uint64_t start_unix_ns,
                                   std::uint64_t now_unix_ns, std::size_t* data_points) {
    MetricsInput input;
    input.series = &series;
    input.form = HistogramForm::kExplicit;
    return encode_metrics(input, context, start_unix_ns, now_unix_ns, data_points);
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
