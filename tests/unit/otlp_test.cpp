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
