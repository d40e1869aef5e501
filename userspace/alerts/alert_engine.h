// Evaluates alert rules off the hot path: inactive -> pending -> firing -> resolved, with a `for`
// duration and hysteresis. Time is passed in, so tests drive it with a fake clock.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "alerts/alert_rules.h"

namespace loupe::alerts {

// Where the engine reads signal values from (the agent's aggregates; a fake in tests).
class SignalSource {
  public:
    virtual ~SignalSource() = default;
    virtual std::vector<std::string> services() const = 0;
    // The signal for `service` ("node" for the node) over `window`; nullopt when there is no data
    // (no request in the window, no process left, unknown service): a missing value never fires,
    // and a firing alert without data follows its rule's `no_data`.
    virtual std::optional<double> value(Signal signal, const std::string& service,
                                        std::chrono::seconds window) const = 0;
};

enum class AlertState { kInactive, kPending, kFiring };
const char* state_name(AlertState state);

using WallClock = std::chrono::system_clock;

struct Alert {
    std::string rule;
    std::string service;
    AlertState state = AlertState::kInactive;
    double value = 0;
    double threshold = 0;
    WallClock::time_point active_since{};  // when the condition started to hold (pending)
    WallClock::time_point fired_at{};
    WallClock::time_point resolved_at{};
    // The last evaluation had no data: `value` is then the last value seen, at last_data_at.
    bool no_data = false;
    WallClock::time_point last_data_at{};
    std::map<std::string, std::string> labels;       // alertname, service_name, severity, extra
    std::map<std::string, std::string> annotations;  // summary, description (templated)
};

// What made a transition: the value (alert.value is the value at the transition), no data (the
// value is stale: show "no data", never it), or the alert's rule went away (a config reload).
enum class TransitionCause { kValue, kNoData, kRuleRemoved };

struct Transition {
    Alert alert;  // after the transition
    AlertState from;
    AlertState to;  // kInactive with a resolved_at: the alert resolved
    TransitionCause cause = TransitionCause::kValue;
};

// The log line of a transition: "alert NAME for SERVICE: firing -> resolved (value 0.18,
// threshold 0.2)", "(no data for 600s, threshold 0.2)" or "(rule removed)".
std::string describe(const Transition& transition);

class AlertEngine {
  public:
    explicit AlertEngine(std::vector<Rule> rules);

    // One evaluation round; returns the state changes of this round.
    std::vector<Transition> evaluate(const SignalSource& source, WallClock::time_point now);
    // Pending and firing alerts.
    std::vector<Alert> active() const;
    std::size_t firing_count() const;
    std::size_t pending_count() const;
    // New rules (a config reload): alerts of rules that stay keep their state; the others resolve
    // at the next evaluation. An alert stays tracked after its service leaves the source's list:
    // it is then evaluated as having no data (the rule's no_data behaviour).
    void replace_rules(std::vector<Rule> rules);
    const std::vector<Rule>& rules() const { return rules_; }

  private:
    std::vector<Rule> rules_;
    std::map<std::pair<std::string, std::string>, Alert> alerts_;  // (rule, service)
};

// Expands {{ $value }}, {{ $threshold }} and {{ $labels.NAME }}.
std::string expand_template(const std::string& text, const Alert& alert);

// The Alertmanager API v2 document for these alerts (resolved ones carry endsAt = resolved_at;
// firing ones an endsAt `valid_for` ahead, renewed by re-sending).
nlohmann::json alertmanager_payload(const std::vector<Alert>& alerts, WallClock::time_point now,
                                    std::chrono::seconds valid_for,
                                    const std::string& generator_url);
std::string iso8601(WallClock::time_point t);

}  // namespace loupe::alerts
