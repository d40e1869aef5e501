#include <gtest/gtest.h>

#include "cli/top/columns.h"
#include "cli/top/snapshot.h"

namespace loupe::top {
namespace {

const char* kServices = R"([
  {"name": "nginx", "server": {"requests_total": 100, "rps": 50.5, "error_ratio": 0.02, "p50_seconds": 0.004,
                               "p95_seconds": 0.25, "p99_seconds": 0.5, "statuses": {"200": 98, "500": 2}},
   "client": null, "resources": {"processes": 3, "cpu_cores": 0.5, "rss_bytes": 10485760,
                                 "disk_read_bytes_per_second": 0, "disk_write_bytes_per_second": 2048,
                                 "net_rx_bytes_per_second": 100, "net_tx_bytes_per_second": 5000,
                                 "tcp_retransmits_total": 4}},
  {"name": "curl", "server": null, "client": {"rps": 1, "error_ratio": 0, "p50_seconds": null}, "resources": null},
  {"name": "sleep", "server": null, "client": null, "resources": {"processes": 0, "cpu_cores": 0}}
])";

TEST(TopSnapshot, ParsesServicesAndPrefersServerSide) {
    const auto rows = parse_services(nlohmann::json::parse(kServices));
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].side, "server");
    EXPECT_DOUBLE_EQ(rows[0].rps, 50.5);
    EXPECT_DOUBLE_EQ(*rows[0].p95, 0.25);
    EXPECT_EQ(rows[0].processes, 3u);
    EXPECT_EQ(rows[1].side, "client");
    EXPECT_FALSE(rows[1].p50);
    EXPECT_FALSE(rows[1].has_resources);
}

TEST(TopSnapshot, EndpointsStatusMixAndPeers) {
    const auto rows = parse_endpoints(nlohmann::json::parse(
        R"([{"side":"server","method":"GET","route":"/a","rps":2,"statuses":{"200":3,"404":1}},
            {"side":"client","method":"GET","route":"/b","rps":1,"peers":["10.0.0.5:5432","10.0.0.6:5432"]}])"));
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].status_mix, "200:75% 404:25%");
    EXPECT_TRUE(rows[0].peers.empty());
    EXPECT_EQ(rows[1].peers, (std::vector<std::string>{"10.0.0.5:5432", "10.0.0.6:5432"}));
}

TEST(TopColumns, Formatting) {
    EXPECT_EQ(format_bytes(512), "512B");
    EXPECT_EQ(format_bytes(10485760), "10.0M");
    EXPECT_EQ(format_rate(0), "-");
    EXPECT_EQ(format_seconds(std::nullopt), "-");
    EXPECT_EQ(format_seconds(0.0000042), "4us");
    EXPECT_EQ(format_seconds(0.25), "250.0ms");
    EXPECT_EQ(format_seconds(2.5), "2.50s");
    EXPECT_EQ(pad("abc", 5, true), "  abc");
    EXPECT_EQ(pad("abcdef", 3, false), "abc");
}

TEST(TopColumns, SortFilterAndHideHistory) {
    auto rows = parse_services(nlohmann::json::parse(kServices));
    const auto visible = filter_services(rows, "");
    EXPECT_EQ(visible.size(), 2u);  // "sleep" has no live process and no traffic
    EXPECT_EQ(filter_services(rows, "NGI").size(), 1u);
    sort_services(rows, column_index("RPS"), true);
    EXPECT_EQ(rows[0].name, "nginx");
    sort_services(rows, column_index("SERVICE"), false);
    EXPECT_EQ(rows[0].name, "curl");
    EXPECT_EQ(column_index("cpu%"), column_index("CPU%"));
    EXPECT_EQ(column_index("nope"), -1);
}

TEST(TopColumns, PlainTableMarksThresholdsWithoutColour) {
    Snapshot snap;
    snap.services = parse_services(nlohmann::json::parse(kServices));
    const std::string table =
        render_plain(snap, "http://x", Thresholds{0.2, 0.01}, column_index("RPS"));
    EXPECT_NE(table.find("2.0%!"), std::string::npos) << table;     // error ratio over budget
    EXPECT_NE(table.find("250.0ms!"), std::string::npos) << table;  // p95 over SLO
    EXPECT_EQ(table.find("sleep"), std::string::npos);
    EXPECT_LT(table.find("nginx"), table.find("curl"));
}

}  // namespace
}  // namespace loupe::top
