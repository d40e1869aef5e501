#include <map>
#include <string>

#include <gtest/gtest.h>

#include "export/otlp/otlp_config.h"
#include "export/otlp/otlp_encoder.h"
#include "export/otlp/trace_joiner.h"

namespace loupe::otlp {
namespace {

using protocols::Protocol;
using protocols::Request;
using protocols::Side;
using Origin = pipeline::ConnectionTracker::Origin;

pipeline::Endpoint end(std::uint8_t last, std::uint16_t port) {
    const std::uint8_t addr[4] = {127, 0, 0, last};
    return pipeline::make_endpoint(2, addr, port);
}

Request http(Side side, std::uint64_t start, std::uint64_t end_ns, int status = 200,
             std::string_view traceparent = {}) {
    Request r;
    r.protocol = Protocol::kHttp1;
    r.side = side;
    r.operation = "GET";
    r.target = "/users/12";
    r.status = status;
    r.start_ns = start;
    r.end_ns = end_ns;
    r.traceparent = traceparent;
    return r;
}

TEST(TraceJoiner, JoinsThreeProcessesByConnectionAndThread) {
    TraceJoiner joiner({}, 1'000);
    // curl (pid 1) -> frontend (pid 2, thread 22) -> nginx (pid 3); arrival order as in the
    // kernel: nginx's span ends first, curl's last.
    const auto curl_end = end(1, 40000), front = end(1, 8080), front_out = end(1, 40001),
               nginx = end(1, 80);
    joiner.add(http(Side::kServer, 300, 400), Origin{3, "nginx", {}, 0, 33, nginx, front_out},
               "nginx", 10);
    joiner.add(http(Side::kClient, 250, 450),
               Origin{2, "python3", "127.0.0.1", 80, 22, front_out, nginx}, "python3", 10);
    joiner.add(http(Side::kServer, 200, 500), Origin{2, "python3", {}, 0, 22, front, curl_end},
               "python3", 10);
    joiner.add(http(Side::kClient, 100, 600),
               Origin{1, "curl", "127.0.0.1", 8080, 11, curl_end, front}, "curl", 10);
    std::vector<Span> spans;
    joiner.release(10 + 1'000'000'000, spans);
    EXPECT_TRUE(spans.empty());  // held for 2 s
    joiner.release(10 + 2'000'000'000, spans);
    ASSERT_EQ(spans.size(), 4u);
    const Span &n = spans[0], &fc = spans[1], &fs = spans[2], &c = spans[3];
    EXPECT_EQ(n.parent_span_id, fc.span_id);
    EXPECT_EQ(fc.parent_span_id, fs.span_id);
    EXPECT_EQ(fs.parent_span_id, c.span_id);
    EXPECT_EQ(c.parent_span_id, SpanId{});
    for (const Span& s : spans)
        EXPECT_EQ(s.trace_id, c.trace_id);
    EXPECT_EQ(n.start_unix_ns, 1'300u);  // monotonic + offset
    EXPECT_EQ(n.route, "/users/{id}");
    EXPECT_EQ(n.name, "GET /users/{id}");
    EXPECT_EQ(joiner.counters().parent_thread, 1u);
    EXPECT_EQ(joiner.counters().parent_connection, 2u);
}

TEST(TraceJoiner, IncomingTraceparentWins) {
    TraceJoiner joiner({}, 0);
    const auto client = end(1, 40000), server = end(1, 80);
    joiner.add(http(Side::kServer, 300, 400, 200,
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
               Origin{3, "nginx", {}, 0, 33, server, client}, "nginx", 0);
    joiner.add(http(Side::kClient, 250, 450),
               Origin{1, "curl", "127.0.0.1", 80, 11, client, server}, "curl", 0);
    std::vector<Span> spans;
    joiner.release(0, spans, true);
    ASSERT_EQ(spans.size(), 2u);
    TraceId trace;
    SpanId parent;
    bool sampled = false;
    ASSERT_TRUE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", trace,
                                  parent, sampled));
    EXPECT_EQ(spans[0].trace_id, trace);
    EXPECT_EQ(spans[0].parent_span_id, parent);
    EXPECT_EQ(spans[1].trace_id, trace);  // curl's span joins the trace it sent
}

TEST(TraceJoiner, SamplingKeepsErrorsAndSlowSpans) {
    JoinerOptions options;
    options.sampling_ratio = 0.0;
    options.always_keep_over_ns = 1'000;
    TraceJoiner joiner(options, 0);
    const Origin origin{3, "nginx", {}, 0, 33, {}, {}};
    joiner.add(http(Side::kServer, 0, 10, 200), origin, "nginx", 0);     // fast, fine: dropped
    joiner.add(http(Side::kServer, 0, 10, 503), origin, "nginx", 0);     // an error: kept
    joiner.add(http(Side::kServer, 0, 5'000, 200), origin, "nginx", 0);  // slow: kept
    std::vector<Span> spans;
    joiner.release(0, spans, true);
    ASSERT_EQ(spans.size(), 2u);
    EXPECT_EQ(spans[0].error_type, "503");
    EXPECT_EQ(joiner.counters().sampled_out, 1u);
}

TEST(OtlpConfig, Environment) {
    static std::map<std::string, std::string> env;
    env = {{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"},
           {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://other:4318/custom/metrics"},
           {"OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc%3D%3D, x-tenant = t1"},
           {"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod"}};
    OtlpSettings s;
    auto getenv = [](const char* name) -> const char* {
        const auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    };
    ASSERT_EQ(apply_otel_environment(s, getenv), std::nullopt);
    EXPECT_EQ(traces_url(s), "http://collector:4318/v1/traces");
    EXPECT_EQ(metrics_url(s), "http://other:4318/custom/metrics");
    ASSERT_EQ(s.headers.size(), 2u);
    EXPECT_EQ(s.headers[0], std::make_pair(std::string("api-key"), std::string("abc==")));
    EXPECT_EQ(s.headers[1], std::make_pair(std::string("x-tenant"), std::string("t1")));
    EXPECT_EQ(s.resource_attributes.size(), 1u);

    env = {{"OTEL_EXPORTER_OTLP_HEADERS", "novalue"}};
    const auto error = apply_otel_environment(s, getenv);
    ASSERT_TRUE(error.has_value());
    EXPECT_NE(error->find("OTEL_EXPORTER_OTLP_HEADERS"), std::string::npos);
    env = {{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"}};
    EXPECT_TRUE(apply_otel_environment(s, getenv).has_value());
    EXPECT_EQ(check_sampling_ratio("0.25"), std::nullopt);
    EXPECT_TRUE(check_sampling_ratio("1.5").has_value());

    OtlpSettings tls;
    EXPECT_TRUE(tls.exponential_histograms);  // the default
    env = {
        {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otel/ca.pem"},
        {"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "explicit_bucket_histogram"}};
    ASSERT_EQ(apply_otel_environment(tls, getenv), std::nullopt);
    EXPECT_EQ(tls.certificate, "/etc/otel/ca.pem");
    EXPECT_FALSE(tls.exponential_histograms);
    env = {{"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
            "base2_exponential_bucket_histogram"}};
    ASSERT_EQ(apply_otel_environment(tls, getenv), std::nullopt);
    EXPECT_TRUE(tls.exponential_histograms);
    env = {{"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "sum"}};
    EXPECT_TRUE(apply_otel_environment(tls, getenv).has_value());
    EXPECT_EQ(check_histogram_form("explicit"), std::nullopt);
    EXPECT_TRUE(check_histogram_form("native").has_value());
}

TEST(OtlpEncoder, Names) {
    EXPECT_EQ(otel_attribute_name("http_response_status_code"), "http.response.status_code");
    EXPECT_EQ(otel_metric_name("http_server_request_duration_seconds"),
              "http.server.request.duration");
    EXPECT_EQ(otel_metric_name("db_client_operation_duration_seconds"),
              "db.client.operation.duration");
}

}  // namespace
}  // namespace loupe::otlp

namespace loupe::otlp {
namespace {

TEST(OtlpEncoder, ReadsPartialSuccess) {
    // ExportTraceServiceResponse{partial_success{rejected_spans: 3}}, encoded by hand.
    EXPECT_EQ(rejected_spans(std::string("\x0a\x02\x08\x03", 4)), 3);
    EXPECT_EQ(rejected_data_points(std::string("\x0a\x02\x08\x05", 4)), 5);
    EXPECT_EQ(rejected_spans(""), 0);  // an empty answer: everything accepted
    EXPECT_EQ(rejected_spans("\xff\xff"), -1);
}

}  // namespace
}  // namespace loupe::otlp

#include <cmath>

#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb.h"

namespace loupe::otlp {
namespace {

namespace pb_metrics = opentelemetry::proto::metrics::v1;

const pb_metrics::Metric* find_metric(
    const opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest& request,
    std::string_view name) {
    for (const auto& rm : request.resource_metrics())
        for (const auto& sm : rm.scope_metrics())
            for (const auto& m : sm.metrics())
                if (m.name() == name) return &m;
    return nullptr;
}

TEST(OtlpEncoder, ExponentialHistogramIsTheSketchBucketForBucket) {
    aggregate::StoreLimits limits;
    limits.cumulative_sketches = true;
    aggregate::RequestMetricsStore store(limits);
    // Latencies from 1.5 us to 2.5 s: the sketch lowers its scale to hold them in 160 buckets.
    const std::uint64_t durations[] = {1'500,      42'000,     250'000,    1'000'000,
                                       3'700'000,  3'700'001,  99'000'000, 2'500'000'000,
                                       12'345'678, 777'777'777};
    std::uint64_t id = 0, sum_ns = 0;
    for (const std::uint64_t d : durations) {
        id = store.record(http(Side::kServer, 1'000, 1'000 + d), {"svc", {}, 0},
                          std::chrono::seconds(1));
        sum_ns += d;
    }
    ASSERT_NE(id, 0u);
    Exemplars exemplars;
    exemplars[id] = Exemplar{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
                             {9, 8, 7, 6, 5, 4, 3, 2},
                             0.777777777,
                             1'700'000'000'000'000'000};
    MetricsInput input;
    input.series = &store.series();
    input.exemplars = &exemplars;
    std::size_t points = 0;
    const std::string body = encode_metrics(input, {}, 1, 2, &points);
    opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest request;
    ASSERT_TRUE(request.ParseFromString(body));
    const pb_metrics::Metric* metric = find_metric(request, "http.server.request.duration");
    ASSERT_NE(metric, nullptr);
    ASSERT_TRUE(metric->has_exponential_histogram());
    EXPECT_EQ(metric->unit(), "s");
    EXPECT_EQ(metric->exponential_histogram().aggregation_temporality(),
              pb_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
    ASSERT_EQ(metric->exponential_histogram().data_points_size(), 1);
    EXPECT_EQ(points, 1u);
    const auto& point = metric->exponential_histogram().data_points(0);
    EXPECT_EQ(point.count(), std::size(durations));
    EXPECT_DOUBLE_EQ(point.sum(), static_cast<double>(sum_ns) / 1e9);
    EXPECT_EQ(point.zero_count(), 0u);
    EXPECT_LT(point.scale(), 6);  // the spread did not fit 160 buckets at scale 6
    // Each value in the OTLP bucket that holds it by the specification's definition, computed
    // here independently: bucket j of scale s is (2^(j/2^s), 2^((j+1)/2^s)] seconds.
    std::map<int, std::uint64_t> expected;
    for (const std::uint64_t d : durations) {
        const long double position =
            std::log2l(static_cast<long double>(d) / 1e9L) * std::exp2l(point.scale());
        ASSERT_GT(std::fabs(position - std::roundl(position)), 1e-6L);  // not on an edge
        ++expected[static_cast<int>(std::ceil(position)) - 1];
    }
    std::map<int, std::uint64_t> got;
    for (int i = 0; i < point.positive().bucket_counts_size(); ++i)
        if (point.positive().bucket_counts(i))
            got[point.positive().offset() + i] = point.positive().bucket_counts(i);
    EXPECT_EQ(got, expected);
    ASSERT_EQ(point.exemplars_size(), 1);
    EXPECT_EQ(point.exemplars(0).trace_id(),
              std::string("\1\2\3\4\5\6\7\10\11\12\13\14\15\16\17\20"));
    EXPECT_EQ(point.exemplars(0).span_id(), std::string("\11\10\7\6\5\4\3\2"));
    EXPECT_DOUBLE_EQ(point.exemplars(0).as_double(), 0.777777777);
    EXPECT_EQ(point.exemplars(0).time_unix_nano(), 1'700'000'000'000'000'000u);

    // The explicit form: /metrics' bounds and counts.
    input.form = HistogramForm::kExplicit;
    ASSERT_TRUE(request.ParseFromString(encode_metrics(input, {}, 1, 2)));
    metric = find_metric(request, "http.server.request.duration");
    ASSERT_NE(metric, nullptr);
    ASSERT_TRUE(metric->has_histogram());
    EXPECT_EQ(metric->histogram().data_points(0).count(), std::size(durations));
    EXPECT_EQ(metric->histogram().data_points(0).exemplars_size(), 1);
}

TEST(OtlpEncoder, BinaryUnitsAlignWithSecondsExactly) {
    // 2^-30 s units: 1 s is 2^30 of them, 1 ms rounds down, and the clamp keeps 2.4 h.
    EXPECT_EQ(aggregate::to_binary_units(1'000'000'000), std::uint64_t{1} << 30);
    EXPECT_EQ(aggregate::to_binary_units(1'000'000), 1'073'741u);
    EXPECT_EQ(aggregate::to_binary_units(0), 0u);
    EXPECT_EQ(aggregate::to_binary_units(~std::uint64_t{0}),
              aggregate::to_binary_units((std::uint64_t{1} << 43) - 1));
    // Sketch bucket 64 * 30 (2^30 units, i.e. 1 s) at scale 6 is OTLP's bucket 0: (1, 2^(1/64)].
    EXPECT_EQ(otlp_bucket_index(64 * 30, 6), 0);
    EXPECT_EQ(otlp_bucket_index(8 * 30 - 3, 3), -3);
}

TEST(OtlpEncoder, ResourceMetricsUnderSemanticConventionNames) {
    std::map<std::string, resources::ServiceResources> services;
    auto& r = services["svc"];
    r.totals.cpu_ns = 2'500'000'000;
    r.rss_bytes = 123'456;
    r.cpu_cores = 0.5;
    r.totals.io_read_bytes = 10;
    r.totals.io_write_bytes = 20;
    r.totals.net_tx_bytes = 30;
    r.totals.net_rx_bytes = 40;
    MetricsInput input;
    input.services = &services;
    input.node_cpus = 4;
    std::size_t points = 0;
    opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest request;
    ASSERT_TRUE(request.ParseFromString(encode_metrics(input, {}, 1, 2, &points)));
    EXPECT_EQ(points, 7u);
    const auto* cpu = find_metric(request, "process.cpu.time");
    ASSERT_NE(cpu, nullptr);
    EXPECT_EQ(cpu->unit(), "s");
    EXPECT_TRUE(cpu->sum().is_monotonic());
    EXPECT_DOUBLE_EQ(cpu->sum().data_points(0).as_double(), 2.5);
    const auto* utilization = find_metric(request, "process.cpu.utilization");
    ASSERT_NE(utilization, nullptr);
    EXPECT_DOUBLE_EQ(utilization->gauge().data_points(0).as_double(), 0.125);
    const auto* memory = find_metric(request, "process.memory.usage");
    ASSERT_NE(memory, nullptr);
    EXPECT_EQ(memory->unit(), "By");
    EXPECT_FALSE(memory->sum().is_monotonic());
    EXPECT_EQ(memory->sum().data_points(0).as_int(), 123'456);
    const auto* network = find_metric(request, "process.network.io");
    ASSERT_NE(network, nullptr);
    ASSERT_EQ(network->sum().data_points_size(), 2);
    EXPECT_EQ(network->sum().data_points(1).as_int(), 40);
    EXPECT_EQ(network->sum().data_points(1).attributes(0).key(), "network.io.direction");
    EXPECT_EQ(network->sum().data_points(1).attributes(0).value().string_value(), "receive");
    const auto* disk = find_metric(request, "process.disk.io");
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->sum().data_points(0).as_int(), 10);
}

}  // namespace
}  // namespace loupe::otlp
