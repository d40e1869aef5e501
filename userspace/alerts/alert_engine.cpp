#include "alerts/alert_engine.h"

#include <algorithm>
#include <ctime>
#include <set>

#include <fmt/format.h>

namespace loupe::alerts {
namespace {

std::string format_value(double v) {
    if (v != 0 && (std::abs(v) < 0.01 || std::abs(v) >= 1e6)) return fmt::format("{:.4g}", v);
    return fmt::format("{:.3f}", v);
}

}  // namespace

const char* state_name(AlertState state) {
    switch (state) {
        case AlertState::kInactive:
            return "inactive";
        case AlertState::kPending:
            return "pending";
        case AlertState::kFiring:
            return "firing";
    }
    return "?";
}

std::string expand_template(const std::string& text, const Alert& alert) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        const auto open = text.find("{{", pos);
        if (open == std::string::npos) break;
        const auto close = text.find("}}", open);
        if (close == std::string::npos) break;
        out += text.substr(pos, open - pos);
        std::string expr = text.substr(open + 2, close - open - 2);
        expr.erase(0, expr.find_first_not_of(' '));
        expr.erase(expr.find_last_not_of(' ') + 1);
        if (expr == "$value") {
            out += format_value(alert.value);
        } else if (expr == "$threshold") {
            out += format_value(alert.threshold);
        } else if (expr.rfind("$labels.", 0) == 0) {
            const auto it = alert.labels.find(expr.substr(8));
            if (it != alert.labels.end()) out += it->second;
        } else {
            out += text.substr(open, close + 2 - open);  // unknown: left as written
        }
        pos = close + 2;
    }
    return out + text.substr(pos);
}

AlertEngine::AlertEngine(std::vector<Rule> rules) : rules_(std::move(rules)) {}

void AlertEngine::replace_rules(std::vector<Rule> rules) {
    rules_ = std::move(rules);
}

std::vector<Transition> AlertEngine::evaluate(const SignalSource& source,
                                              WallClock::time_point now) {
    std::vector<Transition> transitions;
    std::set<std::string> rule_names;
    const auto services = source.services();
    for (const Rule& rule : rules_) {
        rule_names.insert(rule.name);
        std::set<std::string> targets;
        if (rule.service)
            targets.insert(*rule.service);
        else
            for (const auto& s : services)
                if (s != kNodeService) targets.insert(s);
        // An alert of a service the source no longer lists (its traffic and processes gone) is
        // evaluated too: without data, as the rule says.
        for (auto it = alerts_.lower_bound({rule.name, ""});
             it != alerts_.end() && it->first.first == rule.name; ++it)
            targets.insert(it->first.second);
        for (const auto& service : targets) {
            const auto key = std::make_pair(rule.name, service);
            const std::optional<double> value = source.value(rule.signal, service, rule.window);
            auto it = alerts_.find(key);
            if (it == alerts_.end()) {
                if (!value) continue;  // nothing to track until there is data
                Alert fresh;
                fresh.rule = rule.name;
                fresh.service = service;
                it = alerts_.emplace(key, std::move(fresh)).first;
            }
            Alert& a = it->second;
            a.threshold = rule.threshold();
            a.labels = rule.labels;
            a.labels["alertname"] = rule.name;
            a.labels["service_name"] = service;
            a.labels["severity"] = rule.severity;
            a.no_data = !value;
            if (value) {
                a.value = *value;
                a.last_data_at = now;
            }
            // Entering needs the threshold crossed; staying firing only needs the value short of
            // the hysteresis band on the way back.
            const double h = rule.hysteresis;
            const bool breach = value && (rule.above ? *value > *rule.above : *value < *rule.below);
            const bool holding = value && (rule.above ? *value > *rule.above * (1 - h)
                                                      : *value < *rule.below * (1 + h));
            const AlertState from = a.state;
            switch (a.state) {
                case AlertState::kInactive:
                    if (breach) {
                        a.active_since = now;
                        a.state = rule.for_duration.count() == 0 ? AlertState::kFiring
                                                                 : AlertState::kPending;
                    }
                    break;
                case AlertState::kPending:
                    // `for` needs the condition seen to hold at every evaluation.
                    if (!breach)
                        a.state = AlertState::kInactive;
                    else if (now - a.active_since >= rule.for_duration)
                        a.state = AlertState::kFiring;
                    break;
                case AlertState::kFiring:
                    if (value ? !holding
                              : rule.no_data == NoData::kResolve ||
                                    now - a.last_data_at >= rule.no_data_resolve_after) {
                        a.state = AlertState::kInactive;
                        a.resolved_at = now;
                    }
                    break;
            }
            if (a.state == AlertState::kFiring && from != AlertState::kFiring) a.fired_at = now;
            // Without data the annotations keep the last value they showed.
            if (value) {
                a.annotations["summary"] = expand_template(rule.summary, a);
                a.annotations["description"] = expand_template(rule.description, a);
            }
            if (a.state != from)
                transitions.push_back(
                    {a, from, a.state, value ? TransitionCause::kValue : TransitionCause::kNoData});
        }
    }
    // Inactive alerts are not kept; those of a rule that is gone resolve if firing.
    for (auto it = alerts_.begin(); it != alerts_.end();) {
        const bool rule_kept = rule_names.contains(it->first.first);
        if (rule_kept && it->second.state != AlertState::kInactive) {
            ++it;
            continue;
        }
        if (!rule_kept && it->second.state == AlertState::kFiring) {
            const AlertState from = it->second.state;
            it->second.state = AlertState::kInactive;
            it->second.resolved_at = now;
            transitions.push_back(
                {it->second, from, AlertState::kInactive, TransitionCause::kRuleRemoved});
        }
        it = alerts_.erase(it);
    }
    return transitions;
}

std::string describe(const Transition& t) {
    const bool resolved = t.from == AlertState::kFiring && t.to == AlertState::kInactive;
    std::string why;
    switch (t.cause) {
        case TransitionCause::kValue:
            why = fmt::format("value {:.4g}, threshold {:.4g}", t.alert.value, t.alert.threshold);
            break;
        case TransitionCause::kNoData:
            if (resolved)
                why = fmt::format("no data for {}s, threshold {:.4g}",
                                  std::chrono::duration_cast<std::chrono::seconds>(
                                      t.alert.resolved_at - t.alert.last_data_at)
                                      .count(),
                                  t.alert.threshold);
            else
                why = fmt::format("no data, threshold {:.4g}", t.alert.threshold);
            break;
        case TransitionCause::kRuleRemoved:
            why = "rule removed";
            break;
    }
    return fmt::format("alert {} for {}: {} -> {} ({})", t.alert.rule, t.alert.service,
                       state_name(t.from), resolved ? "resolved" : state_name(t.to), why);
}

std::vector<Alert> AlertEngine::active() const {
    std::vector<Alert> out;
    for (const auto& [_, a] : alerts_)
        if (a.state != AlertState::kInactive) out.push_back(a);
    return out;
}

std::size_t AlertEngine::firing_count() const {
    return static_cast<std::size_t>(
        std::count_if(alerts_.begin(), alerts_.end(),
                      [](const auto& kv) { return kv.second.state == AlertState::kFiring; }));
}

std::size_t AlertEngine::pending_count() const {
    return static_cast<std::size_t>(
        std::count_if(alerts_.begin(), alerts_.end(),
                      [](const auto& kv) { return kv.second.state == AlertState::kPending; }));
}

std::string iso8601(WallClock::time_point t) {
    const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs).count();
    const std::time_t tt = WallClock::to_time_t(secs);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:03d}Z", buf, millis);
}

nlohmann::json alertmanager_payload(const std::vector<Alert>& alerts, WallClock::time_point now,
                                    std::chrono::seconds valid_for,
                                    const std::string& generator_url) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& a : alerts) {
        const bool resolved = a.state != AlertState::kFiring;
        out.push_back({{"labels", a.labels},
                       {"annotations", a.annotations},
                       {"startsAt", iso8601(a.fired_at)},
                       {"endsAt", iso8601(resolved ? a.resolved_at : now + valid_for)},
                       {"generatorURL", generator_url}});
    }
    return out;
}

}  // namespace loupe::alerts
