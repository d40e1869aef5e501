// The alert engine with an injected clock and a fake signal source.
#include <chrono>
#include <map>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "agent/alert_signals.h"
#include "alerts/alert_engine.h"
#include "alerts/alert_rules.h"

namespace loupe::alerts {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

struct FakeSignals : SignalSource {
    std::map<std::string, double> values;  // service -> value (any signal)
    std::vector<std::string> services() const override {
        std::vector<std::string> out;
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
    AlertEngine engine({r});
    FakeSignals sig;
    Clock clock;
    EXPECT_TRUE(engine.evaluate(sig, clock.now).empty());  // no data: nothing fires
    sig.values["checkout"] = 0.5;
    EXPECT_EQ(engine.evaluate(sig, clock.now)[0].to, AlertState::kFiring);
    sig.values.erase("checkout");  // the data went away: resolves
    EXPECT_EQ(engine.evaluate(sig, clock.now)[0].to, AlertState::kInactive);
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
    const aggregate::HttpMetricsStore http;
    const agent::AgentSignals signals(http, services, node, history, std::chrono::seconds(250));
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kMemoryUtilization, "shop/checkout-1/app", minutes(5)),
                     0.5);
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kMemoryUtilization, "nginx", minutes(5)), 1.0 / 32);
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kCpuUtilization, "shop/checkout-1/app", minutes(5)),
                     0.4 / 0.5);
    EXPECT_DOUBLE_EQ(*signals.value(Signal::kCpuUtilization, "nginx", minutes(5)), 0.4 / 16);
}

}  // namespace
}  // namespace loupe::alerts
