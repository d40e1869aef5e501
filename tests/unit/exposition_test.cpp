#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "export/prometheus_exporter.h"
#include "export/text_exposition.h"
#include "protocols/registry.h"
#include "util/utf8.h"

namespace loupe::exporter {
namespace {

using std::chrono::seconds;

TEST(Utf8, ValidTextPassesInvalidBytesBecomeReplacementCharacters) {
    EXPECT_TRUE(util::is_valid_utf8("nginx"));
    EXPECT_TRUE(util::is_valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
    EXPECT_FALSE(util::is_valid_utf8("\xff\xfe"));
    EXPECT_FALSE(util::is_valid_utf8("\xC0\xAF"));          // overlong '/'
    EXPECT_FALSE(util::is_valid_utf8("\xED\xA0\x80"));      // a surrogate
    EXPECT_FALSE(util::is_valid_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
    EXPECT_FALSE(util::is_valid_utf8("\xE2\x82"));          // truncated
    EXPECT_EQ(util::valid_utf8("\xff\xfeloupe"), "\uFFFD\uFFFDloupe");
    // One replacement per maximal invalid subpart: the truncated euro sign is one.
    EXPECT_EQ(util::valid_utf8("a\xE2\x82z"), "a\uFFFDz");
    EXPECT_EQ(util::valid_utf8("\xC3\xA9"), "\xC3\xA9");
    for (int b = 0; b < 256; ++b) {
        const std::string one(1, static_cast<char>(b));
        EXPECT_TRUE(util::is_valid_utf8(util::valid_utf8(one))) << b;
    }
}

TEST(TextExposition, LabelValuesAreEscapedAndValidUtf8) {
    TextExposition out;
    out.family("m", "gauge", "help with \\ and\nnewline");
    out.sample("m", LabelSet{{"a", "q\"uote\\back\nline"}, {"b", "\xff\xfe\x1b]0;x\x07"}}, 1);
    const std::string text = out.take();
    EXPECT_NE(text.find("# HELP m help with \\\\ and\\nnewline\n"), std::string::npos) << text;
    EXPECT_NE(text.find(R"(a="q\"uote\\back\nline")"), std::string::npos) << text;
    EXPECT_NE(text.find("b=\"\uFFFD\uFFFD\x1b]0;x\x07\""), std::string::npos) << text;
    EXPECT_TRUE(util::is_valid_utf8(text));
}

TEST(TextExposition, NumbersInTheirShortestExactForm) {
    EXPECT_EQ(format_value(0.075), "0.075");
    EXPECT_EQ(format_value(75'000'000 / 1e9), "0.075");
    EXPECT_EQ(format_value(7.5), "7.5");
    EXPECT_EQ(format_value(100000), "100000");
    EXPECT_EQ(format_value(12345678901234.0), "12345678901234");
    EXPECT_EQ(format_value(2e-6), "2e-06");
    EXPECT_EQ(format_value(1.0 / 3), "0.3333333333333333");
    EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
    EXPECT_EQ(format_value(std::nan("")), "NaN");
}

// The budget's per-series costs must be what the exporter really writes.
TEST(PrometheusExporter, SamplesPerSeriesMatchTheBudgetsCosts) {
    aggregate::RequestMetricsStore store;
    protocols::Request r;
    r.protocol = protocols::Protocol::kHttp1;
    r.side = protocols::Side::kServer;
    r.operation = "GET";
    r.target = "/a";
    r.status = 200;
    r.end_ns = 20'000'000;
    store.record(r, {"svc"}, seconds(1000));
    pipeline::PipelineCounters counters;
    std::map<std::string, resources::ServiceResources> services;
    auto& svc = services["svc"];
    svc.limits = {0.5, 1 << 30};  // the limit families are only written for services with limits
    resources::NodeResources node;
    MetricsView view{.requests = store, .pipeline = counters};
    view.now = seconds(1000);
    view.services = &services;
    view.node = &node;
    const std::string text = render_prometheus(view);
    std::size_t http = 0, resource = 0;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line[0] == '#') continue;
        if (line.find("http_request_method=\"GET\"") != std::string::npos)
            ++http;
        else if (line.find("service_name=\"svc\"") != std::string::npos)
            ++resource;
    }
    EXPECT_EQ(http,
              protocols::find_protocol(protocols::Protocol::kHttp1)->metrics->samples_per_series());
    EXPECT_EQ(resource, resources::kSamplesPerService);
    // loupe_series counts every sample, itself included.
    std::size_t samples = 0;
    std::istringstream again(text);
    for (std::string line; std::getline(again, line);)
        samples += !line.empty() && line[0] != '#';
    EXPECT_NE(text.find("\nloupe_series " + std::to_string(samples) + "\n"), std::string::npos);
    EXPECT_NE(text.find("le=\"0.075\""), std::string::npos);
    EXPECT_EQ(text.find("0.07500000000000001"), std::string::npos);
}

// Samples of `name` in an exposition: "labels value" lines, labels as written.
std::vector<std::string> samples_of(const std::string& text, const std::string& name) {
    std::vector<std::string> out;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);)
        if (line.rfind(name + " ", 0) == 0 || line.rfind(name + "{", 0) == 0)
            out.push_back(line.substr(name.size()));
    return out;
}

// Every counter a database parser keeps beyond ParserStats is a counter family of its own, with
// the pipeline's total.
TEST(PrometheusExporter, ParserCountersAreExported) {
    aggregate::RequestMetricsStore store;
    pipeline::PipelineCounters counters;
    std::size_t written = 0;
    for (const auto& protocol : protocols::all_protocols()) {
        auto& totals = counters.protocols[static_cast<std::size_t>(protocol.id)].parser_specific;
        for (std::size_t i = 0; i < protocol.metrics->parser_counters.size(); ++i)
            totals[i] = 100 * static_cast<std::size_t>(protocol.id) + i + 1;
    }
    MetricsView view{.requests = store, .pipeline = counters};
    const std::string text = render_prometheus(view);
    for (const auto& protocol : protocols::all_protocols()) {
        const auto& specs = protocol.metrics->parser_counters;
        for (std::size_t i = 0; i < specs.size(); ++i, ++written) {
            const std::string name = "loupe_" + std::string(protocol.metrics->system) + "_" +
                                     std::string(specs[i].name) + "_total";
            EXPECT_NE(text.find("# TYPE " + name + " counter\n"), std::string::npos) << name;
            EXPECT_EQ(
                samples_of(text, name),
                std::vector<std::string>{
                    " " + std::to_string(100 * static_cast<std::size_t>(protocol.id) + i + 1)})
                << name;
        }
    }
    // The ones the README documents by name, among others.
    for (const char* name :
         {"loupe_postgresql_ssl_refused_total", "loupe_postgresql_tls_connections_total",
          "loupe_postgresql_cancel_requests_total", "loupe_mysql_tls_connections_total",
          "loupe_mysql_auth_failures_total"})
        EXPECT_EQ(samples_of(text, name).size(), 1u) << name;
    EXPECT_GE(written, 28u);
}

// Database query summaries over the per-service cap: one family by db_system_name (MariaDB's
// apart from MySQL's), HTTP's and Redis's overflow counters under their own names.
TEST(PrometheusExporter, QueryOverflowIsOneFamilyByDbSystemName) {
    aggregate::RequestMetricsStore store(aggregate::StoreLimits{1000, 4, std::chrono::minutes(15)});
    auto record = [&](protocols::Protocol protocol, std::string_view system,
                      const std::string& table) {
        const std::string target = "SELECT " + table;  // the Request only views it
        protocols::Request r;
        r.protocol = protocol;
        r.side = protocols::Side::kServer;
        r.operation = "SELECT";
        r.target = target;
        r.system_name = system;
        r.end_ns = 1'000'000;
        store.record(r, {"svc"}, seconds(1000));
    };
    // A cap of 4: the first two summaries of a service are admitted at once, a third one seen
    // once goes to _OTHER.
    for (const char* table : {"a", "b", "c", "d", "e"})
        record(protocols::Protocol::kPostgres, "", table);
    for (const char* table : {"a", "b", "c"})
        record(protocols::Protocol::kMysql, "mariadb", table);
    pipeline::PipelineCounters counters;
    MetricsView view{.requests = store, .pipeline = counters};
    const std::string text = render_prometheus(view);
    EXPECT_EQ(
        samples_of(text, "loupe_db_query_overflow_total"),
        (std::vector<std::string>{"{db_system_name=\"mariadb\"} 1", "{db_system_name=\"mysql\"} 0",
                                  "{db_system_name=\"postgresql\"} 3"}))
        << text;
    EXPECT_EQ(text.find("loupe_postgresql_route_overflow_total"), std::string::npos);
    EXPECT_EQ(text.find("loupe_mysql_route_overflow_total"), std::string::npos);
    EXPECT_EQ(samples_of(text, "loupe_http_route_overflow_total").size(), 1u);
    EXPECT_EQ(samples_of(text, "loupe_redis_operation_overflow_total").size(), 1u);
}

}  // namespace
}  // namespace loupe::exporter
