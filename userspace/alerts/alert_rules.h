// Alert rules as users write them in the agent's YAML config (`alerting:`), and the defaults
// loupe ships (CPU > 75 % for 5 min, memory > 80 %, p95 > 200 ms, errors > 1 %, disk I/O).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace YAML {
class Node;
}

namespace loupe::alerts {

enum class Signal {
    kLatencyP50,
    kLatencyP95,
    kLatencyP99,
    kErrorRatio,
    kRequestRate,
    kCpuUtilization,
    kMemoryUtilization,
    kDiskIoBytesRate,
    // A service's database and cache calls (client side) or, for a database server, the
    // operations it serves: every protocol whose MetricSpec says `database`.
    kDbLatencyP50,
    kDbLatencyP95,
    kDbLatencyP99,
    kDbErrorRatio,
    kCacheHitRatio,  // hits / (hits + misses) of cache lookups (Redis read commands)
};

std::optional<Signal> parse_signal(std::string_view name);
const char* signal_name(Signal signal);

enum class NoData { kKeep, kResolve };

// The reserved service name for node-wide rules.
inline constexpr const char* kNodeService = "node";

struct Rule {
    std::string name;
    std::optional<std::string> service;  // none: every service separately; "node": the node
    Signal signal = Signal::kLatencyP95;
    std::chrono::seconds window{60};
    std::optional<double> above;
    std::optional<double> below;
    std::chrono::seconds for_duration{0};
    std::string severity = "warning";
    std::string summary;
    std::string description;
    std::map<std::string, std::string> labels;
    // A firing alert resolves only once the value is back past threshold * (1 -/+ hysteresis),
    // so a value hovering at the threshold does not flap.
    double hysteresis = 0.05;
    bool enabled = true;
    // A firing alert whose signal has no data (no request in the window, no process left): kept
    // firing for no_data_resolve_after since the last evaluation with data, then resolved; or
    // resolved at once. A pending alert without data goes back to inactive either way.
    NoData no_data = NoData::kKeep;
    std::chrono::seconds no_data_resolve_after{600};

    double threshold() const { return above ? *above : below.value_or(0); }
};

struct AlertingConfig {
    std::string alertmanager_url;  // e.g. http://127.0.0.1:9093 (POST /api/v2/alerts)
    std::string webhook_url;       // generic JSON webhook, optional
    std::chrono::seconds evaluation_interval{5};
    std::chrono::seconds resend_interval{30};
    bool default_rules = true;
    std::vector<Rule> rules;  // user rules; a rule named like a default replaces it
};

std::vector<Rule> default_rules();
// The rules the engine runs: defaults (unless disabled) overridden by name, plus user rules,
// without the disabled ones.
std::vector<Rule> effective_rules(const AlertingConfig& config);

// Parses the `alerting:` mapping. Errors name the file, line and field.
std::optional<std::string> parse_alerting(const YAML::Node& node, const std::string& file,
                                          AlertingConfig& out);

// "30s", "5m", "1h" (also plain seconds). nullopt when malformed or not positive.
std::optional<std::chrono::seconds> parse_duration(std::string_view text);

}  // namespace loupe::alerts
