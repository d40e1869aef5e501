// The alert engine with an injected clock and a fake signal source.
#include <chrono>
#include <map>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include "agent/alert_signals.h"
#include "alerts/alert_engine.h"
#include "alerts/alert_rules.h"
#include "alerts/notifier.h"

namespace loupe::alerts {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

struct FakeSignals : SignalSource {
    std::map<std::string, double> values;          // service -> value (any signal)
    std::vector<std::string> listed_without_data;  // services listed, with no value
    std::vector<std::string> services() const override {
        std::vector<std::string> out = listed_without_data;
        for (const auto& [s, _] : values)
            out.push_back(s);
        return out;
    }
    std::optional<double> value(Signal, const std::string& service, seconds) const override {
        const auto it = values.find(service);
        if (it == values.end()) return std::nullopt;
        return it->second;
    }
};

Rule latency_rule(std::chrono::seconds for_duration = minutes(5)) {
    Rule r;
    r.name = "HighLatencyP95";
    r.signal = Signal::kLatencyP95;
    r.above = 0.2;
    r.for_duration = for_duration;
    r.summary = "p95 of {{ $labels.service_name }} is {{ $value }}s (over {{ $threshold }})";
    return r;
}

struct Clock {
    WallClock::time_point now = WallClock::time_point(seconds(1'800'000'000));
    void advance(seconds s) { now += s; }
};

TEST(AlertEngine, PendingThenFiringAfterExactlyFor) {
    AlertEngine engine({latency_rule()});
    FakeSignals sig;
    Clock clock;
    sig.values["checkout"] = 0.5;
    auto t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].to, AlertState::kPending);
    clock.advance(seconds(299));
    EXPECT_TRUE(engine.evaluate(sig, clock.now).empty());
    EXPECT_EQ(engine.firing_count(), 0u);
    clock.advance(seconds(1));  // exactly 5 minutes
    t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].from, AlertState::kPending);
    EXPECT_EQ(t[0].to, AlertState::kFiring);
    EXPECT_EQ(t[0].alert.labels.at("service_name"), "checkout");
    EXPECT_EQ(t[0].alert.labels.at("alertname"), "HighLatencyP95");
    EXPECT_EQ(t[0].alert.annotations.at("summary"), "p95 of checkout is 0.500s (over 0.200)");
}

TEST(AlertEngine, PendingDropsWhenConditionStops) {
    AlertEngine engine({latency_rule()});
    FakeSignals sig;
    Clock clock;
    sig.values["a"] = 0.5;
    engine.evaluate(sig, clock.now);
    clock.advance(minutes(4));
    sig.values["a"] = 0.1;
    auto t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].to, AlertState::kInactive);
    sig.values["a"] = 0.5;  // the `for` clock starts again
    engine.evaluate(sig, clock.now);
    clock.advance(minutes(4));
    engine.evaluate(sig, clock.now);
    EXPECT_EQ(engine.firing_count(), 0u);
}

TEST(AlertEngine, ResolvesAndHysteresisPreventsFlapping) {
    AlertEngine engine({latency_rule(seconds(0))});
    FakeSignals sig;
    Clock clock;
    sig.values["a"] = 0.25;
    ASSERT_EQ(engine.evaluate(sig, clock.now)[0].to, AlertState::kFiring);  // for: 0
    // Hovering just under the threshold but inside the 5 % band: stays firing.
    for (double v : {0.199, 0.201, 0.195, 0.2, 0.191}) {
        clock.advance(seconds(5));
        sig.values["a"] = v;
        EXPECT_TRUE(engine.evaluate(sig, clock.now).empty()) << v;
    }
    EXPECT_EQ(engine.firing_count(), 1u);
    clock.advance(seconds(5));
    sig.values["a"] = 0.18;  // out of the band: resolves
    auto t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].from, AlertState::kFiring);
    EXPECT_EQ(t[0].to, AlertState::kInactive);
    EXPECT_EQ(t[0].alert.resolved_at, clock.now);
}

TEST(AlertEngine, FlappingInputNeverFiresWithFor) {
    AlertEngine engine({latency_rule(minutes(1))});
    FakeSignals sig;
    Clock clock;
    int transitions_to_firing = 0;
    for (int i = 0; i < 200; ++i) {  // above for 30 s, below for 30 s, forever
        sig.values["a"] = (i / 6) % 2 ? 0.1 : 0.5;
        for (const auto& t : engine.evaluate(sig, clock.now))
            transitions_to_firing += t.to == AlertState::kFiring;
        clock.advance(seconds(5));
    }
    EXPECT_EQ(transitions_to_firing, 0);
}

TEST(AlertEngine, BelowRulesAndMissingData) {
    Rule r;
    r.name = "TooQuiet";
    r.signal = Signal::kRequestRate;
    r.below = 1.0;
    r.service = "checkout";
    r.no_data = NoData::kResolve;
    AlertEngine engine({r});
    FakeSignals sig;
    Clock clock;
    EXPECT_TRUE(engine.evaluate(sig, clock.now).empty());  // no data: nothing fires
    sig.values["checkout"] = 0.5;
    EXPECT_EQ(engine.evaluate(sig, clock.now)[0].to, AlertState::kFiring);
    sig.values.erase("checkout");  // the data went away: `no_data: resolve` resolves at once
    const auto t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].to, AlertState::kInactive);
    EXPECT_EQ(t[0].cause, TransitionCause::kNoData);
}

// The issue's case: a firing alert whose service stops sending traffic. By default it stays
// firing for no_data_resolve_after, then resolves saying "no data", never the stale value.
TEST(AlertEngine, NoDataKeepsAFiringAlertThenResolvesAfterTheConfiguredTime) {
    Rule r = latency_rule(seconds(0));
    r.no_data_resolve_after = minutes(10);
    AlertEngine engine({r});
    FakeSignals sig;
    Clock clock;
    sig.values["checkout"] = 0.5;
    ASSERT_EQ(engine.evaluate(sig, clock.now)[0].to, AlertState::kFiring);
    const auto last_data = clock.now;
    // The service is still listed (its processes run) but no request is in the window.
    sig.values.erase("checkout");
    sig.listed_without_data = {"checkout"};
    for (int i = 0; i < 119; ++i) {  // 9 min 55 s without data: still firing, no transition
        clock.advance(seconds(5));
        ASSERT_TRUE(engine.evaluate(sig, clock.now).empty()) << i;
    }
    ASSERT_EQ(engine.firing_count(), 1u);
    const auto kept = engine.active();
    ASSERT_EQ(kept.size(), 1u);
    EXPECT_TRUE(kept[0].no_data);
    EXPECT_EQ(kept[0].last_data_at, last_data);
    EXPECT_EQ(kept[0].annotations.at("summary"), "p95 of checkout is 0.500s (over 0.200)");
    clock.advance(seconds(5));  // 10 minutes since the last evaluation with data
    const auto t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].from, AlertState::kFiring);
    EXPECT_EQ(t[0].to, AlertState::kInactive);
    EXPECT_EQ(t[0].cause, TransitionCause::kNoData);
    EXPECT_EQ(t[0].alert.resolved_at, clock.now);
    EXPECT_EQ(describe(t[0]),
              "alert HighLatencyP95 for checkout: firing -> resolved (no data for 600s, "
              "threshold 0.2)");
    EXPECT_EQ(engine.firing_count(), 0u);
    EXPECT_TRUE(engine.active().empty());
}

TEST(AlertEngine, NoDataAlsoCoversAServiceTheSourceNoLongerLists) {
    Rule r = latency_rule(seconds(0));
    r.no_data_resolve_after = minutes(1);
    AlertEngine engine({r});
    FakeSignals sig;
    Clock clock;
    sig.values["gone"] = 0.5;
    engine.evaluate(sig, clock.now);
    sig.values.clear();  // not even listed: its processes exited, its series expired
    clock.advance(seconds(30));
    EXPECT_TRUE(engine.evaluate(sig, clock.now).empty());
    EXPECT_EQ(engine.firing_count(), 1u);
    clock.advance(seconds(30));
    const auto t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].cause, TransitionCause::kNoData);
    EXPECT_EQ(t[0].alert.service, "gone");
}

TEST(AlertEngine, DataComingBackDuringNoDataDecidesAsUsual) {
    AlertEngine engine({latency_rule(seconds(0))});
    FakeSignals sig;
    Clock clock;
    sig.values["a"] = 0.5;
    engine.evaluate(sig, clock.now);
    sig.values.erase("a");
    clock.advance(minutes(3));
    EXPECT_TRUE(engine.evaluate(sig, clock.now).empty());
    sig.values["a"] = 0.18;  // back, and below the band: resolves with this value
    clock.advance(seconds(5));
    const auto t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].cause, TransitionCause::kValue);
    EXPECT_FALSE(t[0].alert.no_data);
    EXPECT_EQ(describe(t[0]),
              "alert HighLatencyP95 for a: firing -> resolved (value 0.18, threshold 0.2)");
}

TEST(AlertEngine, PendingWithoutDataGoesBackToInactive) {
    AlertEngine engine({latency_rule(minutes(5))});
    FakeSignals sig;
    Clock clock;
    sig.values["a"] = 0.5;
    ASSERT_EQ(engine.evaluate(sig, clock.now)[0].to, AlertState::kPending);
    sig.values.erase("a");
    clock.advance(seconds(5));
    const auto t = engine.evaluate(sig, clock.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].to, AlertState::kInactive);
    EXPECT_EQ(describe(t[0]),
              "alert HighLatencyP95 for a: pending -> inactive (no data, threshold 0.2)");
    // Data again: the `for` clock starts over.
    sig.values["a"] = 0.5;
    clock.advance(seconds(5));
    engine.evaluate(sig, clock.now);
    clock.advance(minutes(4));
    EXPECT_TRUE(engine.evaluate(sig, clock.now).empty());
    EXPECT_EQ(engine.pending_count(), 1u);
}

TEST(AlertEngine, TransitionsLogTheValueAtTheTransition) {
    AlertEngine engine({latency_rule(seconds(10))});
    FakeSignals sig;
    Clock clock;
    sig.values["a"] = 0.3;
    EXPECT_EQ(describe(engine.evaluate(sig, clock.now)[0]),
              "alert HighLatencyP95 for a: inactive -> pending (value 0.3, threshold 0.2)");
    sig.values["a"] = 0.45;
    clock.advance(seconds(10));
    EXPECT_EQ(describe(engine.evaluate(sig, clock.now)[0]),
              "alert HighLatencyP95 for a: pending -> firing (value 0.45, threshold 0.2)");
    engine.replace_rules({});
    EXPECT_EQ(describe(engine.evaluate(sig, clock.now)[0]),
              "alert HighLatencyP95 for a: firing -> resolved (rule removed)");
}

TEST(AlertEngine, HundredsOfRulesAndServices) {
    std::vector<Rule> rules;
    for (int i = 0; i < 300; ++i) {
        Rule r = latency_rule(seconds(0));
        r.name = "Rule" + std::to_string(i);
        r.above = i / 1000.0;
        rules.push_back(r);
    }
    AlertEngine engine(rules);
    FakeSignals sig;
    for (int s = 0; s < 20; ++s)
        sig.values["svc" + std::to_string(s)] = 0.1505;
    engine.evaluate(sig, Clock{}.now);
    EXPECT_EQ(engine.firing_count(), 151u * 20u);  // thresholds 0.000 .. 0.150 are below 0.1505
}

TEST(AlertEngine, ReplacedRulesResolveTheirAlerts) {
    AlertEngine engine({latency_rule(seconds(0))});
    FakeSignals sig;
    sig.values["a"] = 1;
    engine.evaluate(sig, Clock{}.now);
    engine.replace_rules({});
    const auto t = engine.evaluate(sig, Clock{}.now);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].to, AlertState::kInactive);
    EXPECT_EQ(engine.firing_count(), 0u);
}

TEST(AlertEngine, AlertmanagerPayload) {
    Alert a;
    a.rule = "X";
    a.state = AlertState::kFiring;
    a.labels = {{"alertname", "X"}, {"service_name", "s"}};
    a.fired_at = WallClock::time_point(seconds(1'800'000'000));
    const auto doc = alertmanager_payload({a}, a.fired_at, seconds(120), "http://h/api/v1/alerts");
    ASSERT_EQ(doc.size(), 1u);
    EXPECT_EQ(doc[0]["startsAt"], "2027-01-15T08:00:00.000Z");
    EXPECT_EQ(doc[0]["endsAt"], "2027-01-15T08:02:00.000Z");
    EXPECT_EQ(doc[0]["labels"]["service_name"], "s");
}

TEST(AlertRules, ParsesTheIssueExample) {
    const auto node = YAML::Load(R"(
alerting:
  alertmanager_url: http://127.0.0.1:9093
  rules:
    - name: HighLatencyP95
      service: checkout        # optional; omitted = each service separately
      signal: latency_p95
      window: 1m
      above: 0.2
      for: 5m
      severity: warning
      labels: {team: payments}
      summary: "p95 {{ $value }}"
)");
    AlertingConfig c;
    ASSERT_FALSE(parse_alerting(node["alerting"], "f.yaml", c));
    EXPECT_EQ(c.alertmanager_url, "http://127.0.0.1:9093");
    ASSERT_EQ(c.rules.size(), 1u);
    EXPECT_EQ(*c.rules[0].service, "checkout");
    EXPECT_EQ(c.rules[0].window, minutes(1));
    EXPECT_EQ(c.rules[0].for_duration, minutes(5));
    EXPECT_EQ(c.rules[0].labels.at("team"), "payments");
    // Defaults are there too; the user's rule of another name adds to them.
    EXPECT_EQ(effective_rules(c).size(), default_rules().size() + 1);
}

TEST(AlertRules, DefaultsCanBeDisabledOrOverridden) {
    AlertingConfig c;
    ASSERT_FALSE(parse_alerting(YAML::Load(R"(
rules:
  - {name: LoupeHighCpu, enabled: false}
  - {name: LoupeHighMemory, signal: memory_utilization, above: 0.9, for: 10m}
)"),
                                "f", c));
    const auto rules = effective_rules(c);
    EXPECT_EQ(rules.size(), default_rules().size() - 1);
    for (const auto& r : rules) {
        EXPECT_NE(r.name, "LoupeHighCpu");
        if (r.name == "LoupeHighMemory") {
            EXPECT_EQ(*r.above, 0.9);
        }
    }
    AlertingConfig none;
    ASSERT_FALSE(parse_alerting(YAML::Load("default_rules: false"), "f", none));
    EXPECT_TRUE(effective_rules(none).empty());
}

TEST(AlertRules, BadConfigNamesFileLineAndField) {
    auto error_of = [](const char* yaml) {
        AlertingConfig c;
        auto e = parse_alerting(YAML::Load(yaml), "alerts.yaml", c);
        return e.value_or("");
    };
    EXPECT_EQ(
        error_of(
            "rules:\n  - name: A\n    signal: latency_p95\n    above: 1\n    for: 5 minutes\n"),
        "alerts.yaml:5: invalid duration for 'for': '5 minutes' (use e.g. 30s, 5m, 1h)");
    EXPECT_NE(error_of("rules:\n  - name: A\n    signal: nope\n    above: 1\n")
                  .find("alerts.yaml:3: unknown signal 'nope'"),
              std::string::npos);
    EXPECT_NE(error_of("rules:\n  - name: A\n    signal: latency_p95\n")
                  .find("exactly one of 'above' or 'below'"),
              std::string::npos);
    EXPECT_NE(error_of("rules:\n  - name: A\n    abov: 1\n")
                  .find("alerts.yaml:3: unknown rule field 'abov'"),
              std::string::npos);
    EXPECT_NE(error_of("evaluation_intervall: 5s\n").find("unknown alerting field"),
              std::string::npos);
    EXPECT_NE(error_of("rules:\n  - name: A\n    signal: latency_p95\n    above: x\n")
                  .find("alerts.yaml:4"),
              std::string::npos);
}

TEST(AlertRules, NoDataOptions) {
    AlertingConfig c;
    ASSERT_FALSE(parse_alerting(YAML::Load(R"(
rules:
  - {name: A, signal: latency_p95, above: 1, no_data: resolve}
  - {name: B, signal: latency_p95, above: 1, no_data: keep, no_data_resolve_after: 30m}
  - {name: C, signal: latency_p95, above: 1}
)"),
                                "f", c));
    ASSERT_EQ(c.rules.size(), 3u);
    EXPECT_EQ(c.rules[0].no_data, NoData::kResolve);
    EXPECT_EQ(c.rules[1].no_data, NoData::kKeep);
    EXPECT_EQ(c.rules[1].no_data_resolve_after, minutes(30));
    EXPECT_EQ(c.rules[2].no_data, NoData::kKeep);  // the default: keep for 10 minutes
    EXPECT_EQ(c.rules[2].no_data_resolve_after, minutes(10));
    auto error_of = [](const char* yaml) {
        AlertingConfig bad;
        return parse_alerting(YAML::Load(yaml), "alerts.yaml", bad).value_or("");
    };
    EXPECT_EQ(error_of("rules:\n  - name: A\n    signal: latency_p95\n    above: 1\n"
                       "    no_data: forget\n"),
              "alerts.yaml:5: invalid 'no_data': 'forget' (use keep or resolve)");
    EXPECT_EQ(error_of("rules:\n  - name: A\n    signal: latency_p95\n    above: 1\n"
                       "    no_data_resolve_after: soon\n"),
              "alerts.yaml:5: invalid duration for 'no_data_resolve_after': 'soon' (use e.g. "
              "30s, 5m, 1h)");
    EXPECT_NE(error_of("rules:\n  - name: A\n    signal: latency_p95\n    above: 1\n"
                       "    no_data: resolve\n    no_data_resolve_after: 5m\n")
                  .find("alerts.yaml:2: rule 'A': 'no_data_resolve_after' applies to 'no_data: "
                        "keep' only"),
              std::string::npos);
}

TEST(AlertRules, Durations) {
    EXPECT_EQ(parse_duration("30s"), seconds(30));
    EXPECT_EQ(parse_duration("5m"), minutes(5));
    EXPECT_EQ(parse_duration("2h"), std::chrono::hours(2));
    EXPECT_EQ(parse_duration("45"), seconds(45));
    EXPECT_FALSE(parse_duration("0s"));
    EXPECT_FALSE(parse_duration("-5m"));
    EXPECT_FALSE(parse_duration("5d"));
    EXPECT_FALSE(parse_duration(""));
}

TEST(AgentSignals, UtilizationIsOfTheContainerLimitsElseOfTheNode) {
    resources::NodeResources node;
    node.cpus = 16;
    node.mem_total_bytes = 16ull << 30;
    std::map<std::string, resources::ServiceResources> services;
    auto& pod = services["shop/checkout-1/app"];
    pod.processes = 1;
    pod.rss_bytes = 512ull << 20;
    pod.limits = {0.5, 1ull << 30};
    auto& host = services["nginx"];
    host.processes = 1;
    host.rss_bytes = 512ull << 20;
    agent::ResourceHistory history;
    history.record(services, node, std::chrono::seconds(100));
    pod.totals.cpu_ns = 60'000'000'000;  // 0.4 cores over 150 s
    host.totals.cpu_ns = 60'000'000'000;
    history.record(services, node, std::chrono::seconds(250));
    const aggregate::RequestMetricsStore http;
    const agent::AgentSignals signals(http, services, node, history, std::chrono::seconds(250));
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kMemoryUtilization, "shop/checkout-1/app", minutes(5)),
                     0.5);
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kMemoryUtilization, "nginx", minutes(5)), 1.0 / 32);
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kCpuUtilization, "shop/checkout-1/app", minutes(5)),
                     0.4 / 0.5);
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kCpuUtilization, "nginx", minutes(5)), 0.4 / 16);
}

// "No data" is told apart from a value: no request in the window is no latency and no error
// ratio, but a request rate of 0 for a service that serves HTTP; a service with no process left
// has no CPU or memory utilization.
TEST(AgentSignals, NoDataIsToldApartFromAValue) {
    resources::NodeResources node;
    node.cpus = 4;
    node.mem_total_bytes = 16ull << 30;
    std::map<std::string, resources::ServiceResources> services;
    services["web"].processes = 1;
    services["exited"].processes = 0;
    agent::ResourceHistory history;
    history.record(services, node, std::chrono::seconds(100));
    services["exited"].totals.cpu_ns = 1'000'000'000;
    history.record(services, node, std::chrono::seconds(160));
    aggregate::RequestMetricsStore http;
    protocols::Request r;
    r.protocol = protocols::Protocol::kHttp1;
    r.side = protocols::Side::kServer;
    r.operation = "GET";
    r.target = "/";
    r.status = 200;
    r.end_ns = 1'000'000;
    http.record(r, {"web"}, std::chrono::seconds(100));
    // 60 s later: the request is in a 5m window, not in a 30s one.
    const agent::AgentSignals signals(http, services, node, history, std::chrono::seconds(160));
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kRequestRate, "web", minutes(5)), 1.0 / 300);
    EXPECT_NEAR(*signals.value(Signal::kLatencyP95, "web", minutes(5)), 1e-3, 1e-5);
    EXPECT_EQ(signals.value(Signal::kRequestRate, "web", seconds(30)), 0.0);
    EXPECT_FALSE(signals.value(Signal::kLatencyP95, "web", seconds(30)));
    EXPECT_FALSE(signals.value(Signal::kErrorRatio, "web", seconds(30)));
    EXPECT_FALSE(signals.value(Signal::kRequestRate, "never-served", seconds(30)));
    EXPECT_FALSE(signals.value(Signal::kCpuUtilization, "exited", minutes(1)));
    EXPECT_FALSE(signals.value(Signal::kMemoryUtilization, "exited", minutes(1)));
    EXPECT_EQ(signals.value(Signal::kCpuUtilization, "web", minutes(1)), 0.0);
}

// A webhook that accepts connections (the kernel completes them: a listen backlog nobody reads)
// and never answers must not delay Alertmanager, a real HTTP server here: it gets every document
// at once, while the stuck receiver's failures and drops are counted on its own.
TEST(Notifier, AStuckReceiverDoesNotDelayTheOther) {
    const int stuck = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(stuck, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(::bind(stuck, reinterpret_cast<sockaddr*>(&addr), len), 0);
    ASSERT_EQ(::listen(stuck, 64), 0);
    ASSERT_EQ(::getsockname(stuck, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    const int stuck_port = ntohs(addr.sin_port);

    httplib::Server alertmanager;
    std::atomic<int> received{0};
    alertmanager.Post("/api/v2/alerts", [&](const httplib::Request& req, httplib::Response& res) {
        if (nlohmann::json::parse(req.body).size() == 1) ++received;
        res.status = 200;
    });
    const int am_port = alertmanager.bind_to_any_port("127.0.0.1");
    std::thread server([&] { alertmanager.listen_after_bind(); });
    while (!alertmanager.is_running())
        std::this_thread::sleep_for(std::chrono::milliseconds(1));

    Notifier::Options options;
    options.alertmanager_url = "http://127.0.0.1:" + std::to_string(am_port);
    options.webhook_url = "http://127.0.0.1:" + std::to_string(stuck_port) + "/hook?token=x";
    options.max_queue = 4;
    options.max_attempts = 2;
    options.first_backoff = std::chrono::milliseconds(50);
    options.io_timeout = std::chrono::milliseconds(1000);
    auto notifier = std::make_unique<Notifier>(options);
    const auto started = std::chrono::steady_clock::now();
    constexpr int kDocuments = 12;
    for (int i = 0; i < kDocuments; ++i) {
        notifier->enqueue(nlohmann::json::array({{{"labels", {{"n", i}}}}}));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    while (received < kDocuments &&
           std::chrono::steady_clock::now() - started < std::chrono::seconds(5))
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // Every document reached Alertmanager as it was queued, not behind the stuck receiver's
    // 1 s timeouts.
    EXPECT_EQ(received, kDocuments);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
    while (notifier->counters()[1].failed_attempts == 0 &&
           std::chrono::steady_clock::now() - started < std::chrono::seconds(5))
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a stuck attempt times out
    const auto counters = notifier->counters();
    ASSERT_EQ(counters.size(), 2u);
    EXPECT_EQ(counters[0].receiver, "alertmanager");
    EXPECT_EQ(counters[0].sent, static_cast<std::uint64_t>(kDocuments));
    EXPECT_EQ(counters[0].failed_attempts, 0u);
    EXPECT_EQ(counters[0].dropped, 0u);
    EXPECT_EQ(counters[1].receiver, "webhook");
    EXPECT_EQ(counters[1].sent, 0u);
    EXPECT_GE(counters[1].failed_attempts, 1u);
    // 12 documents, one in flight, at most 4 waiting: the oldest of the others were dropped.
    EXPECT_GE(counters[1].dropped, static_cast<std::uint64_t>(kDocuments - 1 - 4));
    EXPECT_LE(counters[1].queued, 4u);
    // Stopping does not wait for the stuck request's timeout.
    const auto stopping = std::chrono::steady_clock::now();
    notifier.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - stopping, std::chrono::milliseconds(500));
    alertmanager.stop();
    server.join();
    ::close(stuck);
}

TEST(Notifier, CountersOfBothReceiversExistEvenUnconfigured) {
    Notifier::Options options;
    options.webhook_url = "http://127.0.0.1:1/hook";
    const Notifier notifier(options);
    const auto counters = notifier.counters();
    ASSERT_EQ(counters.size(), 2u);
    EXPECT_EQ(counters[0].receiver, "alertmanager");
    EXPECT_EQ(counters[1].receiver, "webhook");
    EXPECT_EQ(counters[0].sent + counters[0].failed_attempts + counters[0].dropped, 0u);
    EXPECT_TRUE(Notifier(Notifier::Options{}).counters().size() == 2u);
}

// A receiver's URL may carry credentials or a token: its failures are logged with the receiver's
// name and scheme://host:port only.
TEST(Notifier, FailuresAreLoggedWithoutTheUrlsSecrets) {
    std::ostringstream captured;
    const auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
    {
        Notifier::Options options;
        options.alertmanager_url = "http://am:s3cr3t-password@127.0.0.1:1/s3cr3t-prefix";
        options.webhook_url = "http://127.0.0.1:1/hook/s3cr3t-path?token=s3cr3t-query";
        options.max_attempts = 2;
        options.first_backoff = std::chrono::milliseconds(1);
        Notifier notifier(options);
        notifier.enqueue(nlohmann::json::array({{{"labels", {{"alertname", "X"}}}}}));
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while ((notifier.counters()[0].dropped == 0 || notifier.counters()[1].dropped == 0) &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        for (const auto& receiver : notifier.counters()) {
            EXPECT_EQ(receiver.dropped, 1u) << receiver.receiver;
            EXPECT_EQ(receiver.failed_attempts, 2u) << receiver.receiver;
        }
    }
    spdlog::set_default_logger(previous);
    const std::string logged = captured.str();
    EXPECT_NE(logged.find("alert delivery to webhook (http://127.0.0.1:1) failed (attempt 1/2)"),
              std::string::npos)
        << logged;
    EXPECT_NE(logged.find("alert delivery to alertmanager (http://127.0.0.1:1) failed 2 times: "
                          "document dropped"),
              std::string::npos)
        << logged;
    EXPECT_EQ(logged.find("s3cr3t"), std::string::npos) << logged;
}

}  // namespace
}  // namespace loupe::alerts
