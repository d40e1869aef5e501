#include "alerts/alert_rules.h"

#include <charconv>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "util/url.h"

namespace loupe::alerts {
namespace {

constexpr std::pair<const char*, Signal> kSignals[] = {
    {"latency_p50", Signal::kLatencyP50},
    {"latency_p95", Signal::kLatencyP95},
    {"latency_p99", Signal::kLatencyP99},
    {"error_ratio", Signal::kErrorRatio},
    {"request_rate", Signal::kRequestRate},
    {"cpu_utilization", Signal::kCpuUtilization},
    {"memory_utilization", Signal::kMemoryUtilization},
    {"disk_io_bytes_rate", Signal::kDiskIoBytesRate},
    {"db_latency_p50", Signal::kDbLatencyP50},
    {"db_latency_p95", Signal::kDbLatencyP95},
    {"db_latency_p99", Signal::kDbLatencyP99},
    {"db_error_ratio", Signal::kDbErrorRatio},
    {"cache_hit_ratio", Signal::kCacheHitRatio},
};

Rule make(const char* name, std::optional<std::string> service, Signal signal, double above,
          const char* severity, const char* summary, const char* description) {
    Rule r;
    r.name = name;
    r.service = std::move(service);
    r.signal = signal;
    r.window = std::chrono::minutes(5);
    r.above = above;
    r.for_duration = std::chrono::minutes(5);
    r.severity = severity;
    r.summary = summary;
    r.description = description;
    return r;
}

// What a field's value must be, for a value that does not convert.
const char* expected_value(const std::string& field) {
    if (field == "above" || field == "below" || field == "hysteresis") return "a number";
    if (field == "enabled" || field == "default_rules") return "true or false";
    if (field == "labels") return "a mapping of label names to values";
    if (field == "window" || field == "for" || field.ends_with("_interval"))
        return "a duration such as 30s, 5m or 1h";
    return "text";
}

}  // namespace

std::optional<Signal> parse_signal(std::string_view name) {
    for (const auto& [text, signal] : kSignals)
        if (name == text) return signal;
    return std::nullopt;
}

const char* signal_name(Signal signal) {
    for (const auto& [text, s] : kSignals)
        if (s == signal) return text;
    return "?";
}

std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
    if (text.empty()) return std::nullopt;
    long value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || value <= 0) return std::nullopt;
    const std::string_view unit(ptr, static_cast<std::size_t>(text.data() + text.size() - ptr));
    if (unit.empty() || unit == "s") return std::chrono::seconds(value);
    if (unit == "m") return std::chrono::minutes(value);
    if (unit == "h") return std::chrono::hours(value);
    return std::nullopt;
}

std::vector<Rule> default_rules() {
    return {
        make("LoupeHighCpu", std::nullopt, Signal::kCpuUtilization, 0.75, "warning",
             "{{ $labels.service_name }} uses {{ $value }} of its CPU capacity",
             "CPU utilization of {{ $labels.service_name }} has been above {{ $threshold }} for 5 "
             "minutes."),
        make("LoupeHighMemory", std::nullopt, Signal::kMemoryUtilization, 0.80, "warning",
             "{{ $labels.service_name }} uses {{ $value }} of its memory",
             "Memory utilization of {{ $labels.service_name }} has been above {{ $threshold }} for "
             "5 minutes."),
        make("LoupeHighLatencyP95", std::nullopt, Signal::kLatencyP95, 0.2, "warning",
             "p95 latency of {{ $labels.service_name }} is {{ $value }}s",
             "p95 request latency over 5 minutes has been above {{ $threshold }}s for 5 minutes."),
        make("LoupeHighErrorRate", std::nullopt, Signal::kErrorRatio, 0.01, "critical",
             "{{ $labels.service_name }} fails {{ $value }} of its requests",
             "The error ratio over 5 minutes has been above {{ $threshold }} for 5 minutes."),
        make("LoupeHighDiskIo", std::nullopt, Signal::kDiskIoBytesRate, 100.0 * 1024 * 1024,
             "warning", "{{ $labels.service_name }} does {{ $value }} bytes/s of disk I/O",
             "Disk I/O of {{ $labels.service_name }} has been above {{ $threshold }} bytes/s for 5 "
             "minutes."),
        make("LoupeHighDbLatencyP95", std::nullopt, Signal::kDbLatencyP95, 0.05, "warning",
             "p95 of the database operations of {{ $labels.service_name }} is {{ $value }}s",
             "p95 database operation latency over 5 minutes has been above {{ $threshold }}s for "
             "5 minutes."),
        make("LoupeHighDbErrorRate", std::nullopt, Signal::kDbErrorRatio, 0.01, "warning",
             "{{ $labels.service_name }}: {{ $value }} of its database operations fail",
             "The database error ratio over 5 minutes has been above {{ $threshold }} for 5 "
             "minutes."),
        make("LoupeNodeHighCpu", std::string(kNodeService), Signal::kCpuUtilization, 0.75,
             "warning", "node CPU utilization is {{ $value }}",
             "Node CPU utilization has been above {{ $threshold }} for 5 minutes."),
        make("LoupeNodeHighMemory", std::string(kNodeService), Signal::kMemoryUtilization, 0.80,
             "warning", "node memory utilization is {{ $value }}",
             "Node memory utilization has been above {{ $threshold }} for 5 minutes."),
    };
}

std::vector<Rule> effective_rules(const AlertingConfig& config) {
    std::vector<Rule> out;
    std::set<std::string> overridden;
    for (const auto& r : config.rules)
        overridden.insert(r.name);
    if (config.default_rules)
        for (auto& r : default_rules())
            if (!overridden.contains(r.name)) out.push_back(std::move(r));
    for (const auto& r : config.rules)
        if (r.enabled) out.push_back(r);
    return out;
}

std::optional<std::string> parse_alerting(const YAML::Node& node, const std::string& file,
                                          AlertingConfig& out) {
    auto where = [&](const YAML::Node& n) { return fmt::format("{}:{}", file, n.Mark().line + 1); };
    if (!node.IsMap()) return where(node) + ": 'alerting' must be a mapping";
    auto duration = [&](const YAML::Node& n, const char* field,
                        std::chrono::seconds& into) -> std::optional<std::string> {
        const auto d = parse_duration(n.as<std::string>());
        if (!d)
            return fmt::format("{}: invalid duration for '{}': '{}' (use e.g. 30s, 5m, 1h)",
                               where(n), field, n.as<std::string>());
        into = *d;
        return std::nullopt;
    };
    std::string reading;                    // the field being read: what a bad conversion expected
    std::map<std::string, int> rule_lines;  // name -> line of the rule
    auto url = [&](const YAML::Node& v, std::string& into) -> std::optional<std::string> {
        into = v.as<std::string>();
        if (auto problem = into.empty() ? std::nullopt : util::http_url_problem(into))
            return fmt::format("{}: invalid value for '{}': {}, got '{}'", where(v), reading,
                               *problem, into);
        return std::nullopt;
    };
    try {
        for (const auto& entry : node) {
            const auto key = entry.first.as<std::string>();
            const YAML::Node& v = entry.second;
            reading = key;
            if (key == "alertmanager_url") {
                if (auto e = url(v, out.alertmanager_url)) return e;
            } else if (key == "webhook_url") {
                if (auto e = url(v, out.webhook_url)) return e;
            } else if (key == "evaluation_interval") {
                if (auto e = duration(v, "evaluation_interval", out.evaluation_interval)) return e;
            } else if (key == "resend_interval") {
                if (auto e = duration(v, "resend_interval", out.resend_interval)) return e;
            } else if (key == "default_rules") {
                out.default_rules = v.as<bool>();
            } else if (key == "rules") {
                if (!v.IsSequence()) return where(v) + ": 'rules' must be a list";
                for (const auto& item : v) {
                    Rule rule;
                    bool resolve_after_given = false;
                    if (!item.IsMap()) return where(item) + ": a rule must be a mapping";
                    for (const auto& field : item) {
                        const auto f = field.first.as<std::string>();
                        const YAML::Node& fv = field.second;
                        reading = f;
                        if (f == "name")
                            rule.name = fv.as<std::string>();
                        else if (f == "service")
                            rule.service = fv.as<std::string>();
                        else if (f == "signal") {
                            const auto s = parse_signal(fv.as<std::string>());
                            if (!s)
                                return fmt::format(
                                    "{}: unknown signal '{}' (latency_p50, latency_p95, "
                                    "latency_p99, error_ratio, request_rate, cpu_utilization, "
                                    "memory_utilization, disk_io_bytes_rate, db_latency_p50, "
                                    "db_latency_p95, db_latency_p99, db_error_ratio, "
                                    "cache_hit_ratio)",
                                    where(fv), fv.as<std::string>());
                            rule.signal = *s;
                        } else if (f == "window") {
                            if (auto e = duration(fv, "window", rule.window)) return e;
                        } else if (f == "for") {
                            if (fv.as<std::string>() == "0" || fv.as<std::string>() == "0s")
                                rule.for_duration = std::chrono::seconds(0);
                            else if (auto e = duration(fv, "for", rule.for_duration))
                                return e;
                        } else if (f == "above")
                            rule.above = fv.as<double>();
                        else if (f == "below")
                            rule.below = fv.as<double>();
                        else if (f == "severity")
                            rule.severity = fv.as<std::string>();
                        else if (f == "summary")
                            rule.summary = fv.as<std::string>();
                        else if (f == "description")
                            rule.description = fv.as<std::string>();
                        else if (f == "labels")
                            rule.labels = fv.as<std::map<std::string, std::string>>();
                        else if (f == "hysteresis")
                            rule.hysteresis = fv.as<double>();
                        else if (f == "enabled")
                            rule.enabled = fv.as<bool>();
                        else if (f == "no_data") {
                            const auto mode = fv.as<std::string>();
                            if (mode == "keep")
                                rule.no_data = NoData::kKeep;
                            else if (mode == "resolve")
                                rule.no_data = NoData::kResolve;
                            else
                                return fmt::format(
                                    "{}: invalid 'no_data': '{}' (use keep or resolve)", where(fv),
                                    mode);
                        } else if (f == "no_data_resolve_after") {
                            if (auto e = duration(fv, "no_data_resolve_after",
                                                  rule.no_data_resolve_after))
                                return e;
                            resolve_after_given = true;
                        } else
                            return fmt::format("{}: unknown rule field '{}'", where(field.first),
                                               f);
                    }
                    if (rule.name.empty()) return where(item) + ": a rule needs a 'name'";
                    if (const auto [first, added] =
                            rule_lines.emplace(rule.name, item.Mark().line + 1);
                        !added)
                        return fmt::format("{}: a second rule named '{}' (the first is at line {})",
                                           where(item), rule.name, first->second);
                    const bool is_default_override = [&] {
                        for (const auto& d : default_rules())
                            if (d.name == rule.name) return true;
                        return false;
                    }();
                    if (!rule.enabled && is_default_override) {
                        out.rules.push_back(rule);  // disables the default of that name
                        continue;
                    }
                    if (rule.above.has_value() == rule.below.has_value())
                        return fmt::format("{}: rule '{}' needs exactly one of 'above' or 'below'",
                                           where(item), rule.name);
                    if (rule.hysteresis < 0 || rule.hysteresis >= 1)
                        return fmt::format("{}: rule '{}': 'hysteresis' must be in [0, 1)",
                                           where(item), rule.name);
                    if (resolve_after_given && rule.no_data == NoData::kResolve)
                        return fmt::format(
                            "{}: rule '{}': 'no_data_resolve_after' applies to 'no_data: keep' "
                            "only ('resolve' resolves at the first evaluation without data)",
                            where(item), rule.name);
                    if (rule.window > std::chrono::minutes(5))
                        return fmt::format("{}: rule '{}': 'window' can be at most 5m", where(item),
                                           rule.name);
                    out.rules.push_back(std::move(rule));
                }
            } else {
                return fmt::format("{}: unknown alerting field '{}'", where(entry.first), key);
            }
        }
    } catch (const YAML::BadConversion& e) {
        return fmt::format("{}:{}: invalid value for '{}': expected {}", file, e.mark.line + 1,
                           reading, expected_value(reading));
    } catch (const YAML::Exception& e) {
        return fmt::format("{}:{}: {}", file, e.mark.line + 1, e.msg);
    }
    return std::nullopt;
}

}  // namespace loupe::alerts
