#include <gtest/gtest.h>

#include "cli/top/columns.h"
#include "cli/top/rates.h"
#include "cli/top/selection.h"
#include "cli/top/snapshot.h"
#include "util/utf8.h"

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
    EXPECT_DOUBLE_EQ(rows[0].rps_1m, 50.5);
    EXPECT_EQ(rows[0].requests_total, 100u);
    EXPECT_FALSE(rows[0].rps);  // the current rate needs a second snapshot
    EXPECT_DOUBLE_EQ(*rows[0].p95, 0.25);
    EXPECT_EQ(rows[0].processes, 3u);
    EXPECT_EQ(rows[1].side, "client");
    EXPECT_FALSE(rows[1].p50);
    EXPECT_FALSE(rows[1].has_resources);
}

TEST(TopSnapshot, EndpointsStatusMixAndPeers) {
    const auto rows =
        parse_endpoints(
            nlohmann::json::parse(
                R"([{"side":"server","method":"GET","route":"/a","rps":2,"statuses":{"200":3,"404":1}},
            {"side":"client","method":"GET","route":"/b","rps":1,"peers":["10.0.0.5:5432","10.0.0.6:5432"]}])"))
            .routes;
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].status_mix, "200:75% 404:25%");
    EXPECT_TRUE(rows[0].peers.empty());
    EXPECT_EQ(rows[1].peers, (std::vector<std::string>{"10.0.0.5:5432", "10.0.0.6:5432"}));
}

TEST(TopSnapshot, SlowOperationsOfTheDrillDown) {
    const auto rows = parse_slow(nlohmann::json::parse(R"([
        {"time": "2026-12-03T13:45:01.123Z", "service": "api", "side": "client",
         "protocol": "postgresql", "operation": "SELECT", "target": "SELECT accounts",
         "statement": "SELECT * FROM accounts WHERE id = ?", "peer": "10.0.0.5:5432",
         "duration_seconds": 0.25, "error": "57014"},
        {"time": "2026-12-03T13:45:00.001Z", "side": "server", "protocol": "http",
         "operation": "GET", "target": "/users/{id}", "duration_seconds": 1.5, "status": "200"},
        "not an entry", {"duration_seconds": "wrong type"}])"));
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].what, "SELECT * FROM accounts WHERE id = ?");  // the statement first
    EXPECT_EQ(rows[0].status, "57014");                              // the error over the status
    EXPECT_EQ(rows[0].peer, "10.0.0.5:5432");
    EXPECT_DOUBLE_EQ(rows[0].duration_seconds, 0.25);
    EXPECT_EQ(rows[1].what, "/users/{id}");
    EXPECT_EQ(rows[1].status, "200");
    EXPECT_EQ(rows[2].duration_seconds, 0);
    EXPECT_TRUE(parse_slow(nlohmann::json::object()).empty());
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

TEST(TopSnapshot, WrongTypesAreIgnoredNotThrown) {
    const auto rows = parse_services(nlohmann::json::parse(
        R"([{"name": 7, "server": {"requests_total": -3, "rps": "x", "statuses": {"200": "y"}}},
            "not an object", {"resources": {"processes": "many"}}])"));
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].name, "");
    EXPECT_EQ(rows[0].requests_total, 0u);
    const auto routes =
        parse_endpoints(
            nlohmann::json::parse(
                R"([{"side": 1, "peers": [1, "10.0.0.1:80"], "statuses": {"200": "y", "404": 1}}])"))
            .routes;
    ASSERT_EQ(routes.size(), 1u);
    EXPECT_EQ(routes[0].peers, (std::vector<std::string>{"10.0.0.1:80"}));
    EXPECT_EQ(routes[0].status_mix, "404:100%");
}

TEST(TopColumns, SortFilterAndHideHistory) {
    auto rows = parse_services(nlohmann::json::parse(kServices));
    rows[0].rps = 10;
    rows[1].rps = 1;
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

PlainOptions plain_options() {
    PlainOptions options;
    options.agent_url = "http://x";
    options.thresholds = Thresholds{0.2, 0.01};
    options.sort_column = column_index("RPS");
    options.rps_span_seconds = 1.0;
    return options;
}

TEST(TopColumns, PlainTableMarksThresholdsWithoutColour) {
    Snapshot snap;
    snap.services = parse_services(nlohmann::json::parse(kServices));
    snap.services[0].rps = 12.34;
    snap.services[1].rps = 1;
    const std::string table = render_plain(snap, plain_options());
    EXPECT_NE(table.find("2.0%!"), std::string::npos) << table;     // error ratio over budget
    EXPECT_NE(table.find("250.0ms!"), std::string::npos) << table;  // p95 over SLO
    EXPECT_EQ(table.find("sleep"), std::string::npos);
    EXPECT_LT(table.find("nginx"), table.find("curl"));
    // The current rate, not the API's 1-minute 50.5; and the windows are said.
    EXPECT_NE(table.find(" 12.3 "), std::string::npos) << table;
    EXPECT_EQ(table.find("50.5"), std::string::npos) << table;
    EXPECT_NE(table.find("2 services  RPS and DB/S: last 1.0 s; ERR%, P50/P95/P99, DB ERR, DB P95 "
                         "and HIT%: last minute"),
              std::string::npos)
        << table;
}

TEST(TopColumns, RpsFormatting) {
    EXPECT_EQ(format_rps(std::nullopt), "-");
    EXPECT_EQ(format_rps(0.0), "0.0");
    EXPECT_EQ(format_rps(12.345), "12.3");
    EXPECT_EQ(format_rps(26712.4), "26712");
    EXPECT_EQ(windows_legend(0),
              "RPS and DB/S: from the next refresh on; ERR%, P50/P95/P99, DB ERR, DB P95 and HIT%: "
              "last minute");
    EXPECT_EQ(windows_legend(3.04),
              "RPS and DB/S: last 3 s; ERR%, P50/P95/P99, DB ERR, DB P95 and HIT%: last minute");
}

TEST(TopColumns, PlainTableNeverPrintsControlCharacters) {
    Snapshot snap;
    snap.services = parse_services(nlohmann::json::parse(kServices));
    snap.services[0].name = "\x1b]0;pwned\x07x";
    snap.services[1].name = "\x1b[2J\xff\xfe\xc2\x9b";
    auto options = plain_options();
    options.agent_url = "http://\x1b[2Jhost";
    for (const auto charset : {util::TerminalCharset::kUtf8, util::TerminalCharset::kAscii}) {
        options.charset = charset;
        const std::string table = render_plain(snap, options);
        for (const char c : table)
            EXPECT_TRUE(c == '\n' || static_cast<unsigned char>(c) >= 0x20) << table;
        EXPECT_EQ(table.find('\x7f'), std::string::npos);
        EXPECT_TRUE(util::is_valid_utf8(table));
        EXPECT_NE(table.find("?]0;pwned?x"), std::string::npos) << table;
        EXPECT_NE(table.find("http://?[2Jhost"), std::string::npos) << table;
    }
    options.charset = util::TerminalCharset::kUtf8;
    EXPECT_NE(render_plain(snap, options).find("?[2J\xEF\xBF\xBD\xEF\xBF\xBD?"), std::string::npos);
    options.charset = util::TerminalCharset::kAscii;
    EXPECT_NE(render_plain(snap, options).find("?[2J???"), std::string::npos);
}

TEST(TopColumns, PadCountsColumnsNotBytes) {
    EXPECT_EQ(pad("caf\xC3\xA9", 6, false), "caf\xC3\xA9  ");
    EXPECT_EQ(pad("caf\xC3\xA9s", 4, false), "caf\xC3\xA9");  // cut between characters
    EXPECT_EQ(pad("\xC3\xA9", 3, true), "  \xC3\xA9");
}

TEST(TopColumns, ServicesCountSaysWhatTheFilterKept) {
    EXPECT_EQ(services_count(17, 17, false), "17 services");
    EXPECT_EQ(services_count(1, 1, false), "1 service");
    EXPECT_EQ(services_count(3, 17, true), "3 of 17 services");
    EXPECT_EQ(services_count(0, 17, true), "0 of 17 services");
}

// --- database operations ---

// As /api/v1/services answers: an application calling Redis (client side) and serving HTTP, the
// Redis server's own operations, and an HTTP-only service whose "databases" is empty.
const char* kDatabaseServices = R"([
  {"name": "checkout",
   "server": {"requests_total": 10, "rps": 1, "error_ratio": 0, "p50_seconds": 0.01, "p95_seconds": 0.02,
              "p99_seconds": 0.03, "statuses": {"200": 60}},
   "client": null,
   "databases": [
     {"system": "redis", "side": "client", "operation": "GET", "requests_total": 9000, "requests_1m": 600,
      "rps": 10, "error_ratio": 0, "p50_seconds": 0.0004, "p95_seconds": 0.0009, "p99_seconds": 0.002,
      "errors": {}, "cache_lookups_1m": 600, "cache_hit_ratio": 0.9},
     {"system": "redis", "side": "client", "operation": "MGET", "requests_total": 1000, "requests_1m": 100,
      "rps": 1.6, "error_ratio": 0, "p50_seconds": 0.001, "p95_seconds": 0.08, "p99_seconds": 0.1,
      "errors": {}, "cache_lookups_1m": 400, "cache_hit_ratio": 0.4},
     {"system": "redis", "side": "client", "operation": "LPUSH", "requests_total": 500, "requests_1m": 300,
      "rps": 5, "error_ratio": 0.1, "p50_seconds": 0.0005, "p95_seconds": 0.001, "p99_seconds": 0.0015,
      "errors": {"WRONGTYPE": 20, "ERR": 10}, "cache_lookups_1m": 0, "cache_hit_ratio": null}
   ],
   "resources": {"processes": 2, "cpu_cores": 0.1, "rss_bytes": 1000}},
  {"name": "redis-server", "server": null, "client": null,
   "databases": [
     {"system": "redis", "side": "server", "operation": "SET", "requests_total": 42, "requests_1m": 0,
      "rps": 0, "error_ratio": 0, "p50_seconds": null, "p95_seconds": null, "p99_seconds": null,
      "errors": {}, "cache_lookups_1m": 0, "cache_hit_ratio": null}
   ],
   "resources": {"processes": 0}},
  {"name": "nginx", "server": {"requests_total": 5, "rps": 1}, "client": null, "databases": [],
   "resources": {"processes": 1}}
])";

TEST(TopSnapshot, ServiceDatabaseFiguresCombineItsOperations) {
    const auto rows = parse_services(nlohmann::json::parse(kDatabaseServices));
    ASSERT_EQ(rows.size(), 3u);
    const auto& checkout = rows[0];
    EXPECT_TRUE(checkout.has_http);
    EXPECT_TRUE(checkout.has_db);
    EXPECT_EQ(checkout.db_requests_total, 10500u);
    EXPECT_FALSE(checkout.db_rps);  // current: needs a second snapshot
    // 30 errors of the minute's 1000 operations; the slowest operation's p95; 600*0.9 + 400*0.4
    // hits of 1000 lookups.
    EXPECT_DOUBLE_EQ(checkout.db_error_ratio, 0.03);
    ASSERT_TRUE(checkout.db_p95);
    EXPECT_DOUBLE_EQ(*checkout.db_p95, 0.08);
    ASSERT_TRUE(checkout.cache_hit_ratio);
    EXPECT_DOUBLE_EQ(*checkout.cache_hit_ratio, 0.7);
    // A database server with no operation in the last minute: no ratio or percentile to show.
    const auto& redis = rows[1];
    EXPECT_TRUE(redis.has_db);
    EXPECT_FALSE(redis.has_http);
    EXPECT_EQ(redis.db_requests_total, 42u);
    EXPECT_DOUBLE_EQ(redis.db_error_ratio, 0.0);
    EXPECT_FALSE(redis.db_p95);
    EXPECT_FALSE(redis.cache_hit_ratio);
    EXPECT_FALSE(rows[2].has_db);
}

TEST(TopSnapshot, DatabaseRowsOfAServiceRow) {
    const auto doc = nlohmann::json::parse(kDatabaseServices);
    const auto ops = parse_databases(doc[0]["databases"]);
    ASSERT_EQ(ops.size(), 3u);
    EXPECT_EQ(ops[0].system, "redis");
    EXPECT_EQ(ops[0].side, "client");
    EXPECT_EQ(ops[0].operation, "GET");
    EXPECT_EQ(ops[0].requests_total, 9000u);
    EXPECT_DOUBLE_EQ(ops[0].rps_1m, 10.0);
    EXPECT_DOUBLE_EQ(*ops[0].p95, 0.0009);
    EXPECT_EQ(ops[0].cache_lookups_1m, 600u);
    EXPECT_DOUBLE_EQ(*ops[0].cache_hit_ratio, 0.9);
    EXPECT_EQ(ops[0].error_mix, "");
    EXPECT_EQ(ops[2].error_mix, "WRONGTYPE:20 ERR:10");  // most frequent first
    EXPECT_FALSE(ops[2].cache_hit_ratio);
}

TEST(TopSnapshot, EndpointsSplitRoutesFromDatabaseOperations) {
    // /api/v1/services/{name}/endpoints of a service that serves HTTP and calls Redis, and a row
    // of an agent from before protocols (no "protocol"): HTTP.
    const auto endpoints = parse_endpoints(nlohmann::json::parse(R"([
      {"protocol": "http", "side": "server", "method": "GET", "route": "/cart", "requests_total": 7,
       "statuses": {"200": 7}},
      {"protocol": "redis", "side": "client", "operation": "CONFIG GET", "requests_total": 3,
       "requests_1m": 3, "rps": 0.05, "error_ratio": 0.3333, "p50_seconds": 0.001, "p95_seconds": 0.002,
       "p99_seconds": 0.002, "errors": {"NOAUTH": 1}, "cache_lookups_1m": 0, "cache_hit_ratio": null,
       "peers": ["127.0.0.1:6379"]},
      {"protocol": "redis", "side": "client", "operation": "GET", "requests_total": 90,
       "cache_lookups_1m": 90, "cache_hit_ratio": 0.5, "errors": {}, "peers": ["127.0.0.1:6379"]},
      {"side": "client", "method": "POST", "route": "/pay", "peers": ["10.0.0.9:80"]}
    ])"));
    ASSERT_EQ(endpoints.routes.size(), 2u);
    EXPECT_EQ(endpoints.routes[0].route, "/cart");
    EXPECT_EQ(endpoints.routes[0].status_mix, "200:100%");
    EXPECT_EQ(endpoints.routes[1].method, "POST");
    EXPECT_EQ(endpoints.routes[1].peers, (std::vector<std::string>{"10.0.0.9:80"}));
    ASSERT_EQ(endpoints.databases.size(), 2u);
    const auto& config = endpoints.databases[0];
    EXPECT_EQ(config.system, "redis");
    EXPECT_EQ(config.side, "client");
    EXPECT_EQ(config.operation, "CONFIG GET");
    EXPECT_EQ(config.error_mix, "NOAUTH:1");
    EXPECT_DOUBLE_EQ(config.error_ratio, 0.3333);
    EXPECT_EQ(config.peers, (std::vector<std::string>{"127.0.0.1:6379"}));
    EXPECT_DOUBLE_EQ(*endpoints.databases[1].cache_hit_ratio, 0.5);
}

TEST(TopSnapshot, DatabaseRowsOfWrongTypesAreIgnoredNotThrown) {
    const auto rows = parse_services(nlohmann::json::parse(
        R"([{"name": "a", "databases": "many"},
            {"name": "b", "databases": [1, {"operation": 5, "requests_total": "x", "requests_1m": -1,
                                            "errors": {"ERR": "x", "WRONGTYPE": 2},
                                            "cache_lookups_1m": 10, "cache_hit_ratio": "y"}]}])"));
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_FALSE(rows[0].has_db);
    EXPECT_TRUE(rows[1].has_db);
    EXPECT_EQ(rows[1].db_requests_total, 0u);
    EXPECT_FALSE(rows[1].cache_hit_ratio);
    const auto endpoints = parse_endpoints(nlohmann::json::parse(
        R"(["not an object", {"operation": "GET", "errors": "x", "peers": "y"},
            {"operation": "SET", "errors": {"ERR": "x", "WRONGTYPE": 2}}])"));
    EXPECT_EQ(endpoints.routes.size(), 1u);  // the string: an empty HTTP row, as before
    ASSERT_EQ(endpoints.databases.size(), 2u);
    EXPECT_EQ(endpoints.databases[0].error_mix, "");
    EXPECT_TRUE(endpoints.databases[0].peers.empty());
    EXPECT_EQ(endpoints.databases[1].error_mix, "WRONGTYPE:2");
    EXPECT_EQ(endpoints.databases[1].system, "");
}

TEST(TopColumns, DatabaseColumnsShowMarkAndSort) {
    Snapshot snap;
    snap.services = parse_services(nlohmann::json::parse(kDatabaseServices));
    snap.services[0].db_rps = 17.0;
    snap.services[1].db_rps = 250.0;
    // The database server has no process left but had database traffic: still shown.
    EXPECT_EQ(filter_services(snap.services, "").size(), 3u);
    auto options = plain_options();
    options.sort_column = column_index("db p95");
    ASSERT_GE(options.sort_column, 0);
    const std::string table = render_plain(snap, options);
    const std::string header = table.substr(table.find("SERVICE"));
    EXPECT_LT(header.find("P99"), header.find("DB/S")) << table;
    EXPECT_LT(header.find("DB/S"), header.find("DB ERR")) << table;
    EXPECT_LT(header.find("DB ERR"), header.find("DB P95")) << table;
    EXPECT_LT(header.find("DB P95"), header.find("HIT%")) << table;
    EXPECT_LT(header.find("HIT%"), header.find("CPU%")) << table;
    // checkout: 17 ops/s, 3 % errors (over the 1 % budget), p95 80 ms (over the 50 ms database
    // SLO), 70 % hits.
    const auto line_of = [&](const std::string& name) {
        const auto at = table.find("\n" + name + " ");
        return table.substr(at + 1, table.find('\n', at + 1) - at - 1);
    };
    const std::string checkout = line_of("checkout");
    EXPECT_NE(checkout.find(" 17.0 "), std::string::npos) << checkout;
    EXPECT_NE(checkout.find(" 3.0%! "), std::string::npos) << checkout;
    EXPECT_NE(checkout.find(" 80.0ms! "), std::string::npos) << checkout;
    EXPECT_NE(checkout.find(" 70.0% "), std::string::npos) << checkout;
    const std::string redis = line_of("redis-server");
    EXPECT_NE(redis.find(" 250 "), std::string::npos) << redis;
    // nginx calls no database: dashes, not zeros.
    const std::string nginx = line_of("nginx");
    const auto cells = [](const std::string& line) {
        std::vector<std::string> out;
        std::size_t at = 0;
        while ((at = line.find_first_not_of(' ', at)) != std::string::npos) {
            const auto end = line.find(' ', at);
            out.push_back(line.substr(at, end - at));
            at = end;
        }
        return out;
    };
    const auto nginx_cells = cells(nginx);
    ASSERT_GE(nginx_cells.size(), 11u) << nginx;
    for (int i = 7; i <= 10; ++i)
        EXPECT_EQ(nginx_cells[static_cast<std::size_t>(i)], "-") << nginx;
    // Sorted by DB P95, descending: checkout (80 ms), then the two without.
    EXPECT_LT(table.find("\ncheckout "), table.find("\nnginx ")) << table;
    EXPECT_LT(table.find("\ncheckout "), table.find("\nredis-server ")) << table;
    auto rows = snap.services;
    sort_services(rows, column_index("DB/S"), true);
    EXPECT_EQ(rows[0].name, "redis-server");
    sort_services(rows, column_index("HIT%"), true);
    EXPECT_EQ(rows[0].name, "checkout");
    // The database SLO is its own threshold.
    options.thresholds.db_p95_seconds = 0.1;
    EXPECT_EQ(render_plain(snap, options).find("80.0ms!"), std::string::npos);
}

TEST(TopColumns, DatabaseFormatting) {
    EXPECT_EQ(format_ratio(std::nullopt), "-");
    EXPECT_EQ(format_ratio(0.0), "0.0%");
    EXPECT_EQ(format_ratio(0.875), "87.5%");
}

// --- current rates ---

using Clock = RateTracker::Clock;
const Clock::time_point kT0{std::chrono::seconds(1000)};

Clock::time_point at(double seconds) {
    return kT0 +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

TEST(TopRates, FirstSampleHasNoRateThenDeltaOverTime) {
    RateTracker rates(std::chrono::seconds(3));
    EXPECT_FALSE(rates.update("a", 1000, at(0)));
    const auto r = rates.update("a", 1500, at(0.5));
    ASSERT_TRUE(r);
    EXPECT_DOUBLE_EQ(*r, 1000.0);
    EXPECT_DOUBLE_EQ(rates.last_span_seconds(), 0.5);
}

TEST(TopRates, LooksBackOverTheSpanNotTheMinute) {
    // 26.7k req/s starting at t=0 after an idle minute: the API's 1-minute figure would be a
    // twelfth of it 5 s in; the current rate is the rate.
    RateTracker rates(std::chrono::seconds(3));
    std::uint64_t total = 0;
    std::optional<double> r;
    for (int t = 0; t <= 5; ++t) {
        r = rates.update("nginx", total, at(t));
        total += 26700;
    }
    ASSERT_TRUE(r);
    EXPECT_DOUBLE_EQ(*r, 26700.0);
    EXPECT_DOUBLE_EQ(rates.last_span_seconds(), 3.0);
    // The load stops: within the span the rate falls, after it the rate is 0.
    total -= 26700;
    r = rates.update("nginx", total, at(6));
    EXPECT_NEAR(*r, 26700.0 * 2 / 3, 1e-6);
    rates.update("nginx", total, at(7));
    r = rates.update("nginx", total, at(8));
    EXPECT_DOUBLE_EQ(*r, 0.0);
}

TEST(TopRates, SmoothsOverTheSpanWithFastRefreshes) {
    RateTracker rates(std::chrono::seconds(3));
    // 100 requests in one burst at t=1, refreshes every 0.5 s: the rate is spread over ~3 s
    // instead of jumping to 200/s and back to 0.
    std::optional<double> r;
    for (int i = 0; i <= 6; ++i)
        r = rates.update("a", i >= 2 ? 100 : 0, at(i * 0.5));
    EXPECT_NEAR(*r, 100 / 3.0, 1e-6);
    EXPECT_DOUBLE_EQ(rates.last_span_seconds(), 3.0);
}

TEST(TopRates, SlowRefreshesUseTheLastInterval) {
    RateTracker rates(std::chrono::seconds(3));
    rates.update("a", 0, at(0));
    rates.update("a", 1000, at(10));
    const auto r = rates.update("a", 1500, at(20));
    EXPECT_DOUBLE_EQ(*r, 50.0);
    EXPECT_DOUBLE_EQ(rates.last_span_seconds(), 10.0);
}

TEST(TopRates, CounterResetStartsOver) {
    RateTracker rates(std::chrono::seconds(3));
    rates.update("a", 5000, at(0));
    EXPECT_FALSE(rates.update("a", 10, at(1)));  // the series was evicted, or a new agent
    EXPECT_DOUBLE_EQ(*rates.update("a", 30, at(2)), 20.0);
    EXPECT_FALSE(rates.update("a", 40, at(2)));  // no time passed: no division by zero
}

TEST(TopRates, SpanIsTheLongestOfTheSnapshot) {
    RateTracker rates(std::chrono::seconds(3));
    for (int t = 0; t <= 4; ++t)
        rates.update("old", 0, at(t));
    rates.update("new", 0, at(4));
    EXPECT_DOUBLE_EQ(rates.last_span_seconds(), 3.0);
    rates.update("old", 0, at(5));
    rates.update("new", 0, at(5));  // looks back 1 s only: the snapshot's span is still 3 s
    EXPECT_DOUBLE_EQ(rates.last_span_seconds(), 3.0);
    rates.update("newer", 0, at(6));  // a snapshot without any rate
    EXPECT_DOUBLE_EQ(rates.last_span_seconds(), 0.0);
}

TEST(TopRates, KeysAreIndependentAndGoneOnesForgotten) {
    RateTracker rates(std::chrono::seconds(3));
    rates.update("a", 0, at(0));
    rates.update("b", 0, at(0));
    EXPECT_DOUBLE_EQ(*rates.update("a", 10, at(1)), 10.0);
    rates.forget_older_than(at(1));  // "b" was not in the last snapshot
    EXPECT_FALSE(rates.update("b", 100, at(2)));
}

TEST(TopRates, ApplyRatesToServiceRows) {
    RateTracker rates;
    auto rows = parse_services(nlohmann::json::parse(kServices));
    apply_rates(rows, rates, at(0));
    EXPECT_FALSE(rows[0].rps);
    rows = parse_services(nlohmann::json::parse(kServices));
    rows[0].requests_total = 150;
    apply_rates(rows, rates, at(1));
    ASSERT_TRUE(rows[0].rps);
    EXPECT_DOUBLE_EQ(*rows[0].rps, 50.0);
    EXPECT_FALSE(rows[2].rps);  // no HTTP: no rate
    // A client side and a server side of the same name are different counters.
    auto swapped = parse_services(nlohmann::json::parse(kServices));
    swapped[0].side = "client";
    swapped[0].requests_total = 200;
    apply_rates(swapped, rates, at(2));
    EXPECT_FALSE(swapped[0].rps);
}

TEST(TopRates, ApplyRatesToRoutes) {
    RateTracker rates;
    auto routes =
        parse_endpoints(nlohmann::json::parse(
                            R"([{"side":"server","method":"GET","route":"/a","requests_total":10},
            {"side":"server","method":"POST","route":"/a","requests_total":10}])"))
            .routes;
    apply_rates(routes, rates, at(0));
    routes[0].requests_total = 40;
    apply_rates(routes, rates, at(2));
    EXPECT_DOUBLE_EQ(*routes[0].rps, 15.0);
    EXPECT_DOUBLE_EQ(*routes[1].rps, 0.0);
}

TEST(TopRates, ApplyRatesToServiceDatabaseOperations) {
    RateTracker rates;
    auto rows = parse_services(nlohmann::json::parse(kDatabaseServices));
    apply_rates(rows, rates, at(0));
    EXPECT_FALSE(rows[0].db_rps);
    rows = parse_services(nlohmann::json::parse(kDatabaseServices));
    rows[0].db_requests_total += 3000;  // 1,500 operations/s over 2 s
    rows[0].requests_total += 20;       // and 10 HTTP requests/s: its own counter
    apply_rates(rows, rates, at(2));
    ASSERT_TRUE(rows[0].db_rps);
    EXPECT_DOUBLE_EQ(*rows[0].db_rps, 1500.0);
    EXPECT_DOUBLE_EQ(*rows[0].rps, 10.0);
    EXPECT_DOUBLE_EQ(*rows[1].db_rps, 0.0);
    EXPECT_FALSE(rows[1].rps);     // no HTTP
    EXPECT_FALSE(rows[2].db_rps);  // no database
}

TEST(TopRates, ApplyRatesToDatabaseOperations) {
    RateTracker rates;
    auto ops = parse_databases(nlohmann::json::parse(
        R"([{"system":"redis","side":"client","operation":"GET","requests_total":100},
            {"system":"redis","side":"server","operation":"GET","requests_total":100},
            {"system":"redis","side":"client","operation":"SET","requests_total":100}])"));
    apply_rates(ops, rates, at(0));
    ops[0].requests_total = 400;
    ops[1].requests_total = 200;
    apply_rates(ops, rates, at(2));
    EXPECT_DOUBLE_EQ(*ops[0].rps, 150.0);
    EXPECT_DOUBLE_EQ(*ops[1].rps, 50.0);  // the same operation on the other side: its own
    EXPECT_DOUBLE_EQ(*ops[2].rps, 0.0);
}

// --- selection ---

std::vector<ServiceRow> rows_named(std::initializer_list<const char*> names) {
    std::vector<ServiceRow> rows;
    for (const char* name : names) {
        ServiceRow row;
        row.name = name;
        rows.push_back(row);
    }
    return rows;
}

TEST(TopSelection, FollowsTheServiceAcrossResorts) {
    Selection selection;
    auto rows = rows_named({"api", "db", "web"});
    EXPECT_EQ(selection.place(rows), 0);
    selection.move(rows, 1);
    EXPECT_EQ(selection.service(), "db");
    // The next refresh sorts "db" to the top and "web" where "db" was: the cursor goes with db.
    rows = rows_named({"db", "web", "api"});
    EXPECT_EQ(selection.place(rows), 0);
    EXPECT_EQ(selection.service(), "db");
    selection.move(rows, 1);
    EXPECT_EQ(selection.service(), "web");
    rows = rows_named({"api", "db", "cache", "web"});
    EXPECT_EQ(selection.place(rows), 3);
}

TEST(TopSelection, ResortUnderTheCursorThroughTheSortAndFilterCode) {
    // As the view does it: sort by RPS, select the second row, then RPS changes re-sort.
    auto rows = parse_services(nlohmann::json::parse(kServices));  // nginx, curl, sleep
    rows[0].rps = 50;
    rows[1].rps = 1;
    Selection selection;
    auto visible = filter_services(rows, "");
    sort_services(visible, column_index("RPS"), true);
    selection.place(visible);
    selection.move(visible, 1);
    ASSERT_EQ(selection.service(), "curl");
    rows[1].rps = 500;  // curl now leads
    visible = filter_services(rows, "");
    sort_services(visible, column_index("RPS"), true);
    const int index = selection.place(visible);
    EXPECT_EQ(index, 0);
    EXPECT_EQ(visible[static_cast<std::size_t>(index)].name, "curl");  // what Enter opens
}

TEST(TopSelection, GoneServiceHandsTheCursorToTheRowInItsPlace) {
    Selection selection;
    auto rows = rows_named({"a", "b", "c"});
    selection.select_index(rows, 2);
    EXPECT_EQ(selection.service(), "c");
    rows = rows_named({"a", "b"});  // c exited
    EXPECT_EQ(selection.place(rows), 1);
    EXPECT_EQ(selection.service(), "b");
    EXPECT_EQ(selection.place({}), -1);  // a filter that matches nothing
    rows = rows_named({"x", "y"});
    EXPECT_EQ(selection.place(rows), 0);
    EXPECT_EQ(selection.service(), "x");
}

TEST(TopSelection, MovesAreClamped) {
    Selection selection;
    const auto rows = rows_named({"a", "b", "c"});
    selection.move(rows, -5);
    EXPECT_EQ(selection.service(), "a");
    selection.move(rows, 100);
    EXPECT_EQ(selection.service(), "c");
    selection.select_index(rows, -1);
    EXPECT_EQ(selection.service(), "a");
}

}  // namespace
}  // namespace loupe::top
