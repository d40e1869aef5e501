// The slow-operation log (aggregate/slow_operations.h), its file writer (export/slow_log_file.h)
// and its settings (agent/agent_config.h): thresholds, the token bucket, rotation, JSON escaping,
// and what an entry may hold: never a query string, a literal or a value.
#include "aggregate/slow_operations.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/agent_config.h"
#include "export/slow_log_file.h"
#include "protocols/registry.h"

namespace loupe::aggregate {
namespace {

using namespace std::chrono_literals;
using protocols::Protocol;
using protocols::Request;
using protocols::Side;

constexpr std::uint64_t kMs = 1'000'000;

// A fixed wall clock: 2026-12-03T13:45:01.250Z.
std::chrono::system_clock::time_point fixed_wall() {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(1796305501250));
}

Request http(std::string_view path, std::uint64_t duration_ms, int status = 200) {
    Request r;
    r.protocol = Protocol::kHttp1;
    r.side = Side::kServer;
    r.operation = "GET";
    r.target = path;
    r.status = status;
    r.start_ns = 1000 * kMs;
    r.end_ns = r.start_ns + duration_ms * kMs;
    return r;
}

Request redis(std::string_view command, std::uint64_t duration_us) {
    Request r;
    r.protocol = Protocol::kRedis;
    r.side = Side::kClient;
    r.operation = command;
    r.db_namespace = "0";
    r.start_ns = 1000 * kMs;
    r.end_ns = r.start_ns + duration_us * 1000;
    return r;
}

SlowOperationLog make_log(SlowLogSettings settings = {}) {
    return SlowOperationLog(std::move(settings), fixed_wall);
}

nlohmann::json parse(std::optional<std::string_view> line) {
    EXPECT_TRUE(line.has_value());
    return line ? nlohmann::json::parse(*line) : nlohmann::json();
}

TEST(SlowLog, DefaultThresholdsPerProtocol) {
    auto log = make_log();
    EXPECT_EQ(log.threshold(Protocol::kHttp1), 1s);
    EXPECT_EQ(log.threshold(Protocol::kRedis), 10ms);
    EXPECT_FALSE(log.is_slow(http("/a", 999)));
    EXPECT_TRUE(log.is_slow(http("/a", 1000)));
    EXPECT_FALSE(log.is_slow(redis("GET", 9'999)));
    EXPECT_TRUE(log.is_slow(redis("GET", 10'000)));
    Request backwards = http("/a", 0);
    backwards.start_ns = backwards.end_ns + 5 * kMs;
    EXPECT_FALSE(log.is_slow(backwards));
    SlowLogSettings off;
    off.thresholds["http"] = 0ns;
    EXPECT_FALSE(make_log(off).is_slow(http("/a", 100'000)));
}

TEST(SlowLog, EntryHoldsTheRouteNeverThePathOrQuery) {
    auto log = make_log();
    // The parser passes the path without the query string; the log shows its route only.
    Request r = http("/users/123456/orders/9f8e7d6c-1b2a-4c3d-9e8f-0a1b2c3d4e5f", 1500, 503);
    const IdentityLabels labels = {{"service_name", "checkout"}, {"k8s_pod_name", "checkout-7d"}};
    const auto now = std::chrono::nanoseconds(r.end_ns + 250 * kMs);  // drained 250 ms later
    const auto entry = parse(log.record(r, "checkout@abc", "", 0, &labels, now));
    EXPECT_EQ(entry["time"], "2026-12-03T13:45:01.000Z");
    EXPECT_EQ(entry["service"], "checkout@abc");
    EXPECT_EQ(entry["labels"]["k8s_pod_name"], "checkout-7d");
    EXPECT_EQ(entry["side"], "server");
    EXPECT_EQ(entry["protocol"], "http");
    EXPECT_EQ(entry["operation"], "GET");
    EXPECT_EQ(entry["target"], "/users/{id}/orders/{id}");
    EXPECT_DOUBLE_EQ(entry["duration_seconds"].get<double>(), 1.5);
    EXPECT_EQ(entry["status"], "503");
    EXPECT_FALSE(entry.contains("peer"));  // the server side has no peer to name
    EXPECT_FALSE(entry.contains("statement"));
    const std::string line = entry.dump();
    EXPECT_EQ(line.find("123456"), std::string::npos);
    EXPECT_EQ(line.find("9f8e7d6c"), std::string::npos);
}

TEST(SlowLog, RedisEntriesNameTheCommandAndThePeer) {
    auto log = make_log();
    Request r = redis("EVAL", 20'000);
    r.error = "ERR";
    const auto entry = parse(log.record(r, "api", "10.0.0.7", 6379, nullptr, 2000ms));
    EXPECT_EQ(entry["protocol"], "redis");
    EXPECT_EQ(entry["operation"], "EVAL");
    EXPECT_EQ(entry["peer"], "10.0.0.7:6379");
    EXPECT_EQ(entry["side"], "client");
    EXPECT_EQ(entry["namespace"], "0");
    EXPECT_EQ(entry["status"], "ERR");
    EXPECT_EQ(entry["error"], "ERR");
    EXPECT_FALSE(entry.contains("labels"));
    EXPECT_FALSE(entry.contains("target"));
    const auto v6 = parse(log.record(r, "api", "fd00::7", 6380, nullptr, 2000ms));
    EXPECT_EQ(v6["peer"], "[fd00::7]:6380");
}

TEST(SlowLog, SqlEntriesCarryTheNormalisedStatementAndSummary) {
    // The SQL protocols are registered by their own branches; the log takes any protocol the
    // registry knows, so this checks with a protocol whose spec has no target normaliser.
    auto log = make_log();
    Request r = redis("SELECT", 200'000);
    r.target = "SELECT accounts";
    r.statement = "SELECT * FROM accounts WHERE id = ?";
    r.system_name = "mariadb";
    const auto entry = parse(log.record(r, "api", "10.0.0.7", 6379, nullptr, 2000ms));
    EXPECT_EQ(entry["target"], "SELECT accounts");
    EXPECT_EQ(entry["statement"], "SELECT * FROM accounts WHERE id = ?");
    EXPECT_EQ(entry["system"], "mariadb");
}

TEST(SlowLog, JsonEscapesQuotesControlsAndBadUtf8) {
    auto log = make_log();
    const std::string service = "we\"ird\\svc\n\x01\xff";
    const std::string command = "GE\"T\t\xc3";
    Request r = redis(command, 50'000);
    const auto line = log.record(r, service, "", 0, nullptr, 2000ms);
    ASSERT_TRUE(line);
    EXPECT_EQ(line->find('\n'), std::string::npos);  // one line, whatever the names hold
    const auto entry = nlohmann::json::parse(*line);
    EXPECT_EQ(entry["service"], "we\"ird\\svc\n\x01\xef\xbf\xbd");  // U+FFFD for the bad byte
    EXPECT_EQ(entry["operation"], "GE\"T\t\xef\xbf\xbd");
    // The API's copy parses too.
    EXPECT_EQ(log.latest("", 10).size(), 1u);
}

TEST(SlowLog, TokenBucketLimitsTheRateAndCountsDrops) {
    SlowLogSettings settings;
    settings.rate_per_second = 2;
    settings.burst = 3;
    auto log = make_log(settings);
    Request r = redis("GET", 20'000);
    int logged = 0;
    for (int i = 0; i < 10; ++i)
        logged += log.record(r, "a", "", 0, nullptr, 10s).has_value();
    EXPECT_EQ(logged, 3);  // the burst
    EXPECT_EQ(log.dropped(SlowDrop::kRateLimit), 7u);
    EXPECT_EQ(log.slow(Protocol::kRedis), 10u);
    // Half a second later: one more token (2/s).
    logged = 0;
    for (int i = 0; i < 5; ++i)
        logged += log.record(r, "a", "", 0, nullptr, 10s + 500ms).has_value();
    EXPECT_EQ(logged, 1);
    // A long quiet spell refills up to the burst, no more.
    logged = 0;
    for (int i = 0; i < 10; ++i)
        logged += log.record(r, "a", "", 0, nullptr, 100s).has_value();
    EXPECT_EQ(logged, 3);
    EXPECT_EQ(log.dropped(SlowDrop::kRateLimit), 7u + 4u + 7u);
    // Fast operations are neither logged nor counted.
    EXPECT_FALSE(log.record(redis("GET", 10), "a", "", 0, nullptr, 200s));
    EXPECT_EQ(log.slow(Protocol::kRedis), 25u);
}

TEST(SlowLog, RingKeepsTheLatestNewestFirstByService) {
    SlowLogSettings settings;
    settings.keep = 3;
    auto log = make_log(settings);
    for (int i = 0; i < 5; ++i) {
        Request r = redis(i % 2 ? "SET" : "GET", 20'000 + static_cast<std::uint64_t>(i));
        log.record(r, i % 2 ? "b" : "a", "", 0, nullptr, 10s);
    }
    const auto all = log.latest("", 100);
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0]["duration_seconds"], 0.020004);
    EXPECT_EQ(all[2]["duration_seconds"], 0.020002);
    EXPECT_EQ(log.latest("b", 100).size(), 1u);
    EXPECT_EQ(log.latest("a", 1).size(), 1u);
    EXPECT_EQ(log.latest("nobody", 100).size(), 0u);
}

std::string read_all(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

TEST(SlowLogFile, RotatesAtTheSizeCapKeepingNFiles) {
    const std::string dir = "/tmp/loupe-slow-test-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const std::string path = dir + "/slow.log";
    exporter::SlowLogWriter writer({path, 100, 2, false});
    const std::string line(39, 'x');  // 40 bytes with its newline: two fit in 100
    for (int i = 0; i < 7; ++i)
        ASSERT_TRUE(writer.write(line.substr(0, 38) + std::to_string(i))) << writer.last_error();
    EXPECT_EQ(read_all(path), line.substr(0, 38) + "6\n");
    EXPECT_EQ(read_all(path + ".1"), line.substr(0, 38) + "4\n" + line.substr(0, 38) + "5\n");
    EXPECT_EQ(read_all(path + ".2"), line.substr(0, 38) + "2\n" + line.substr(0, 38) + "3\n");
    EXPECT_FALSE(std::filesystem::exists(path + ".3"));
    for (const auto& f : std::filesystem::directory_iterator(dir))
        EXPECT_LE(std::filesystem::file_size(f.path()), 100u);

    // No rotated files: the file starts over.
    exporter::SlowLogWriter truncating({dir + "/t.log", 100, 0, false});
    for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(truncating.write(line.substr(0, 38) + std::to_string(i)));
    EXPECT_EQ(read_all(dir + "/t.log"), line.substr(0, 38) + "2\n");
    EXPECT_FALSE(std::filesystem::exists(dir + "/t.log.1"));

    // An unwritable place: an error that says where, not a crash.
    exporter::SlowLogWriter nowhere({dir + "/missing/dir/slow.log", 100, 1, false});
    std::string problem;
    EXPECT_FALSE(nowhere.open(problem));
    EXPECT_EQ(problem, dir + "/missing/dir/slow.log: No such file or directory");
    EXPECT_FALSE(nowhere.write("x"));
    EXPECT_NE(nowhere.last_error().find("missing/dir/slow.log"), std::string::npos);
    std::filesystem::remove_all(dir);
}

TEST(SlowLogConfig, FileKeysAndErrorsWithFileAndLine) {
    const std::string path = "/tmp/loupe-slow-config-" + std::to_string(::getpid()) + ".yaml";
    auto load = [&](const std::string& yaml, agent::AgentConfig& c) {
        std::ofstream(path) << yaml;
        return agent::load_config_file(path, c).value_or("");
    };
    agent::AgentConfig c;
    EXPECT_EQ(load("slow_log:\n  thresholds: {http: 250ms, redis: off, default: 1.5s}\n"
                   "  file: /var/log/slow.log\n  stdout: true\n  max_file_bytes: 65536\n"
                   "  rotated_files: 3\n  rate: 0.5\n  burst: 7\n  keep: 9\n",
                   c),
              "");
    EXPECT_EQ(c.slow_log.thresholds["http"], 250ms);
    EXPECT_EQ(c.slow_log.thresholds["redis"], 0ns);
    EXPECT_EQ(c.slow_log.default_threshold, 1500ms);
    EXPECT_EQ(c.slow_log_output.path, "/var/log/slow.log");
    EXPECT_TRUE(c.slow_log_output.to_stdout);
    EXPECT_EQ(c.slow_log_output.max_bytes, 65536u);
    EXPECT_EQ(c.slow_log_output.rotated_files, 3u);
    EXPECT_EQ(c.slow_log.rate_per_second, 0.5);
    EXPECT_EQ(c.slow_log.burst, 7u);
    EXPECT_EQ(c.slow_log.keep, 9u);

    EXPECT_EQ(load("listen: 127.0.0.1:1\nslow_log:\n  thresholds:\n    http: 10\n", c),
              path +
                  ":4: invalid value for 'http' in 'slow_log.thresholds': expected a duration "
                  "with its unit, such as 500us, 100ms, 1.5s or 2m (at most 1 hour), or off, "
                  "got '10'");
    EXPECT_EQ(load("slow_log:\n  thresholds:\n    htp: 1s\n", c),
              path +
                  ":3: invalid protocol in 'slow_log.thresholds': unknown protocol 'htp' (did "
                  "you mean http?): expected one of http, redis, postgresql, mysql, default");
    EXPECT_EQ(load("slow_log:\n  rotated_file: 2\n", c),
              path + ":2: unknown key 'slow_log.rotated_file' (did you mean rotated_files?)");
    EXPECT_EQ(load("slow_log:\n  max_file_bytes: 10\n", c),
              path +
                  ":2: invalid value for 'slow_log.max_file_bytes': expected a number of bytes "
                  "of at least 4096, got '10'");
    EXPECT_EQ(load("slow_log:\n  rate: -1\n", c),
              path +
                  ":2: invalid value for 'slow_log.rate': expected entries per second, more "
                  "than 0 (such as 10 or 0.5), got '-1'");
    EXPECT_EQ(load("slow_log: yes\n", c),
              path +
                  ":1: invalid value for 'slow_log': expected a mapping such as 'slow_log: "
                  "{file: /var/log/loupe/slow.log}', got 'yes'");
    std::filesystem::remove(path);

    EXPECT_FALSE(agent::check_slow_threshold("redis=5ms"));
    EXPECT_FALSE(agent::check_slow_threshold("default=off"));
    EXPECT_TRUE(agent::check_slow_threshold("redis"));
    EXPECT_TRUE(agent::check_slow_threshold("redis=5"));
    EXPECT_TRUE(agent::check_slow_threshold("redis=2h"));
    EXPECT_EQ(agent::parse_duration("250us"), 250us);
    EXPECT_EQ(agent::parse_duration("2m"), 120s);
    EXPECT_FALSE(agent::parse_duration("ms"));
    EXPECT_FALSE(agent::parse_duration("1.2.3s"));
}

}  // namespace
}  // namespace loupe::aggregate
