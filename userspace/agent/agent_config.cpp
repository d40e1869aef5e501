#include "agent/agent_config.h"

#include <unistd.h>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "protocols/registry.h"
#include "util/logging.h"
#include "util/suggest.h"
#include "util/url.h"

namespace loupe::agent {
namespace {

// An item of a list that is not valid: reported on its own line, as itself.
struct BadListItem {
    YAML::Mark mark;
    std::string text;
};

// A scalar or a list of them; `check` (when given) applies to each item's text.
template <typename T>
std::vector<T> as_list(const YAML::Node& node,
                       std::optional<std::string> (*check)(const std::string&) = nullptr) {
    std::vector<T> out;
    auto add = [&](const YAML::Node& item) {
        if (!item.IsScalar() || (check && check(item.Scalar())))
            throw BadListItem{item.Mark(), item.IsScalar() ? item.Scalar() : "not a single value"};
        try {
            out.push_back(item.as<T>());
        } catch (const YAML::Exception&) {
            throw BadListItem{item.Mark(), item.Scalar()};
        }
    };
    if (node.IsSequence()) {
        for (const auto& item : node)
            add(item);
    } else {
        add(node);
    }
    return out;
}

std::optional<std::uint64_t> parse_unsigned(const std::string& text) {
    std::uint64_t value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
    return value;
}

// What the file had, for an error message: a scalar quoted and cut short, else its kind.
std::string got(const YAML::Node& node) {
    if (node.IsSequence()) return "a list";
    if (node.IsMap()) return "a mapping";
    if (!node.IsScalar()) return "nothing";
    const std::string& text = node.Scalar();
    return "'" + (text.size() > 60 ? text.substr(0, 60) + "..." : text) + "'";
}

// One top-level key of the file.
struct Setting {
    // What a valid value is, said when the value does not convert ("expected ...").
    std::string expected;
    // Stores the value; throws YAML::Exception when it does not convert.
    std::function<void(const YAML::Node&)> set;
    // Checks the scalar's text before it is stored.
    std::optional<std::string> (*check)(const std::string&) = nullptr;
};

}  // namespace

std::optional<std::string> check_listen(const std::string& text) {
    std::string host;
    int port = 0;
    if (parse_listen(text, host, port)) return std::nullopt;
    return "expected HOST:PORT such as 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464 (port 0-65535)";
}

std::optional<std::string> check_ring_buffer_bytes(const std::string& text) {
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const auto bytes = parse_unsigned(text);
    if (bytes && *bytes >= page && *bytes <= (std::uint64_t{1} << 31) &&
        (*bytes & (*bytes - 1)) == 0)
        return std::nullopt;
    return fmt::format(
        "expected a power of two from {} (the page size) to 2147483648 bytes, such as 4194304",
        page);
}

std::optional<std::string> check_pid(const std::string& text) {
    const auto value = parse_unsigned(text);
    if (value && *value >= 1 && *value <= 0xffffffffu) return std::nullopt;
    return "expected a process id (a whole number of at least 1)";
}

std::optional<std::string> check_port(const std::string& text) {
    const auto value = parse_unsigned(text);
    if (value && *value >= 1 && *value <= 65535) return std::nullopt;
    return "expected a port number from 1 to 65535";
}

std::optional<std::string> check_positive_count(const std::string& text) {
    const auto value = parse_unsigned(text);
    if (value && *value >= 1) return std::nullopt;
    return "expected a whole number of at least 1";
}

std::optional<std::string> check_profile_frequency(const std::string& text) {
    const auto value = parse_unsigned(text);
    if (value && *value <= 1000) return std::nullopt;
    return "expected samples per second from 0 (off) to 1000";
}

std::optional<std::string> check_url_or_empty(const std::string& text) {
    if (text.empty()) return std::nullopt;
    return util::http_url_problem(text);
}

std::optional<std::chrono::nanoseconds> parse_duration(const std::string& text) {
    if (text == "off" || text == "0") return std::chrono::nanoseconds(0);
    std::size_t digits = 0;
    while (digits < text.size() &&
           ((text[digits] >= '0' && text[digits] <= '9') || text[digits] == '.'))
        ++digits;
    if (digits == 0 || digits == text.size()) return std::nullopt;
    double value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, value);
    if (ec != std::errc() || ptr != text.data() + digits || !(value >= 0)) return std::nullopt;
    const std::string unit = text.substr(digits);
    double scale = 0;
    if (unit == "ns") scale = 1;
    if (unit == "us") scale = 1e3;
    if (unit == "ms") scale = 1e6;
    if (unit == "s") scale = 1e9;
    if (unit == "m") scale = 60e9;
    if (scale == 0 || value * scale > 3600e9) return std::nullopt;  // up to an hour
    return std::chrono::nanoseconds(static_cast<std::int64_t>(value * scale));
}

namespace {

std::vector<std::string> slow_log_protocols() {
    std::vector<std::string> names;
    for (const auto& protocol : protocols::all_protocols())
        names.emplace_back(protocol.metrics->system);
    names.emplace_back("default");
    return names;
}

std::string duration_expected() {
    return "expected a duration with its unit, such as 500us, 100ms, 1.5s or 2m (at most 1 hour), "
           "or off";
}

}  // namespace

std::optional<std::string> check_slow_threshold(const std::string& text) {
    const auto equals = text.find('=');
    const auto names = slow_log_protocols();
    std::string list;
    for (const auto& name : names)
        list += (list.empty() ? "" : ", ") + name;
    if (equals == std::string::npos)
        return "expected PROTOCOL=DURATION such as redis=5ms (PROTOCOL: " + list + ")";
    const std::string name = text.substr(0, equals);
    if (std::find(names.begin(), names.end(), name) == names.end())
        return "unknown protocol '" + name + "'" + util::did_you_mean(name, names) +
               ": expected one of " + list;
    if (!parse_duration(text.substr(equals + 1))) return duration_expected();
    return std::nullopt;
}

void apply_slow_threshold(const std::string& text, aggregate::SlowLogSettings& settings) {
    const auto equals = text.find('=');
    const std::string name = text.substr(0, equals);
    const auto duration =
        parse_duration(text.substr(equals + 1)).value_or(std::chrono::nanoseconds(0));
    if (name == "default")
        settings.default_threshold = duration;
    else
        settings.thresholds[name] = duration;
}

namespace {

// The `slow_log:` mapping of the config file.
std::optional<std::string> parse_slow_log(const YAML::Node& node, const std::string& path,
                                          AgentConfig& config) {
    auto at = [&](const YAML::Node& n) { return fmt::format("{}:{}", path, n.Mark().line + 1); };
    if (!node.IsMap())
        return fmt::format(
            "{}: invalid value for 'slow_log': expected a mapping such as "
            "'slow_log: {{file: /var/log/loupe/slow.log}}', got {}",
            at(node), got(node));
    const std::vector<std::string> keys = {"thresholds",    "file", "stdout", "max_file_bytes",
                                           "rotated_files", "rate", "burst",  "keep"};
    for (const auto& entry : node) {
        const auto key = entry.first.as<std::string>();
        const YAML::Node& value = entry.second;
        auto invalid = [&](const std::string& expected) {
            return fmt::format("{}: invalid value for 'slow_log.{}': {}, got {}", at(value), key,
                               expected, got(value));
        };
        auto count = [&](std::uint64_t min, std::uint64_t max) -> std::optional<std::uint64_t> {
            if (!value.IsScalar()) return std::nullopt;
            const auto n = parse_unsigned(value.Scalar());
            if (!n || *n < min || *n > max) return std::nullopt;
            return n;
        };
        if (key == "thresholds") {
            if (!value.IsMap())
                return invalid(
                    "expected a mapping of protocols to durations, such as "
                    "'{http: 1s, redis: 10ms, default: 100ms}'");
            for (const auto& threshold : value) {
                const auto name = threshold.first.as<std::string>();
                const std::string item =
                    name + "=" + (threshold.second.IsScalar() ? threshold.second.Scalar() : "");
                if (auto problem = check_slow_threshold(item)) {
                    const bool bad_name = problem->starts_with("unknown");
                    return fmt::format("{}: invalid {} in 'slow_log.thresholds': {}{}",
                                       at(bad_name ? threshold.first : threshold.second),
                                       bad_name ? "protocol" : "value for '" + name + "'", *problem,
                                       bad_name ? "" : ", got " + got(threshold.second));
                }
                apply_slow_threshold(item, config.slow_log);
            }
        } else if (key == "file") {
            if (!value.IsScalar()) return invalid("expected a file name");
            config.slow_log_output.path = value.Scalar();
        } else if (key == "stdout") {
            bool on = false;
            if (!value.IsScalar() || !YAML::convert<bool>::decode(value, on))
                return invalid("expected true or false");
            config.slow_log_output.to_stdout = on;
        } else if (key == "max_file_bytes") {
            const auto n = count(4096, std::uint64_t{1} << 40);
            if (!n) return invalid("expected a number of bytes of at least 4096");
            config.slow_log_output.max_bytes = *n;
        } else if (key == "rotated_files") {
            const auto n = count(0, 100);
            if (!n) return invalid("expected a number of files from 0 to 100");
            config.slow_log_output.rotated_files = static_cast<std::uint32_t>(*n);
        } else if (key == "rate") {
            double rate = 0;
            if (!value.IsScalar() || !YAML::convert<double>::decode(value, rate) || !(rate > 0) ||
                rate > 1e6)
                return invalid("expected entries per second, more than 0 (such as 10 or 0.5)");
            config.slow_log.rate_per_second = rate;
        } else if (key == "burst") {
            const auto n = count(1, 1'000'000);
            if (!n) return invalid("expected a whole number of at least 1");
            config.slow_log.burst = static_cast<std::uint32_t>(*n);
        } else if (key == "keep") {
            const auto n = count(1, 100'000);
            if (!n) return invalid("expected a whole number from 1 to 100000");
            config.slow_log.keep = static_cast<std::size_t>(*n);
        } else {
            return fmt::format("{}: unknown key 'slow_log.{}'{}", at(entry.first), key,
                               util::did_you_mean(key, keys));
        }
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::string> load_config_file(const std::string& path, AgentConfig& config) {
    if (std::error_code ec; std::filesystem::is_directory(path, ec))
        return fmt::format(
            "{}: cannot read the config file: it is a directory, expected a YAML "
            "file",
            path);
    std::ifstream in(path);
    if (!in) return fmt::format("{}: cannot read the config file: {}", path, std::strerror(errno));
    YAML::Node root;
    try {
        root = YAML::Load(in);
    } catch (const YAML::Exception& e) {
        return fmt::format("{}:{}: not valid YAML: {}", path, e.mark.line + 1, e.msg);
    }
    if (root.IsNull()) return std::nullopt;
    if (!root.IsMap())
        return fmt::format(
            "{}:1: the config must be a mapping of keys to values, such as "
            "'listen: 127.0.0.1:9464'",
            path);

    const std::string whole_number = "a whole number of at least 1";
    const std::map<std::string, Setting> settings = {
        {"listen",
         {"HOST:PORT", [&](const YAML::Node& n) { config.listen = n.as<std::string>(); },
          check_listen}},
        {"log_format",
         {"text or json",
          [&](const YAML::Node& n) {
              if (!util::parse_log_format(n.as<std::string>())) throw YAML::Exception(n.Mark(), "");
              config.log_format = n.as<std::string>();
          }}},
        {"log_level",
         {"trace, debug, info, warn, error, critical or off",
          [&](const YAML::Node& n) {
              if (!util::parse_log_level(n.as<std::string>())) throw YAML::Exception(n.Mark(), "");
              config.log_level = n.as<std::string>();
          }}},
        {"pid",
         {"a process id or a list of them",
          [&](const YAML::Node& n) { config.pids = as_list<std::uint32_t>(n, check_pid); }}},
        {"comm",
         {"a process name or a list of them",
          [&](const YAML::Node& n) { config.comms = as_list<std::string>(n); }}},
        {"port",
         {"a port number (1-65535) or a list of them",
          [&](const YAML::Node& n) { config.ports = as_list<std::uint16_t>(n, check_port); }}},
        {"disable_hooks",
         {"a hook name or a list of them",
          [&](const YAML::Node& n) { config.disabled_hooks = as_list<std::string>(n); }}},
        {"ring_buffer_bytes",
         {"a power of two",
          [&](const YAML::Node& n) { config.ring_buffer_bytes = n.as<std::uint32_t>(); },
          check_ring_buffer_bytes}},
        {"max_series",
         {whole_number, [&](const YAML::Node& n) { config.max_series = n.as<std::size_t>(); },
          check_positive_count}},
        {"max_routes_per_service",
         {whole_number,
          [&](const YAML::Node& n) { config.max_routes_per_service = n.as<std::size_t>(); },
          check_positive_count}},
        {"max_connections",
         {whole_number, [&](const YAML::Node& n) { config.max_connections = n.as<std::size_t>(); },
          check_positive_count}},
        {"profile_frequency",
         {"0 (off) to 1000",
          [&](const YAML::Node& n) { config.profile_frequency = n.as<unsigned>(); },
          check_profile_frequency}},
        {"profile_dwarf",
         {"a service or process name or a list of them",
          [&](const YAML::Node& n) { config.profile_dwarf = as_list<std::string>(n); }}},
        {"service_names",
         {"a mapping of process names to service names",
          [&](const YAML::Node& n) {
              config.service_names = n.as<std::map<std::string, std::string>>();
          }}},
        {"kubernetes",
         {"auto, on or off",
          [&](const YAML::Node& n) {
              const auto mode = n.as<std::string>();
              if (mode != "auto" && mode != "on" && mode != "off")
                  throw YAML::Exception(n.Mark(), "");
              config.kubernetes.mode = mode;
          }}},
        {"k8s_node_name",
         {"a node name",
          [&](const YAML::Node& n) { config.kubernetes.node_name = n.as<std::string>(); }}},
        {"k8s_pods_url",
         {"a URL", [&](const YAML::Node& n) { config.kubernetes.pods_url = n.as<std::string>(); },
          check_url_or_empty}},
        {"k8s_token_file",
         {"a file name",
          [&](const YAML::Node& n) { config.kubernetes.token_file = n.as<std::string>(); }}},
        {"k8s_ca_file",
         {"a file name",
          [&](const YAML::Node& n) { config.kubernetes.ca_file = n.as<std::string>(); }}},
        {"otlp_endpoint",
         {"an http:// or https:// base URL such as http://collector:4318",
          [&](const YAML::Node& n) { config.otlp.endpoint = n.as<std::string>(); },
          check_url_or_empty}},
        {"otlp_traces_endpoint",
         {"the full URL of the traces signal",
          [&](const YAML::Node& n) { config.otlp.traces_endpoint = n.as<std::string>(); },
          check_url_or_empty}},
        {"otlp_metrics_endpoint",
         {"the full URL of the metrics signal",
          [&](const YAML::Node& n) { config.otlp.metrics_endpoint = n.as<std::string>(); },
          check_url_or_empty}},
        {"otlp_headers",
         {"a mapping of header names to values",
          [&](const YAML::Node& n) {
              for (const auto& [k, v] : n.as<std::map<std::string, std::string>>())
                  config.otlp.headers.emplace_back(k, v);
          }}},
        {"otlp_resource_attributes",
         {"a mapping of attribute names to values",
          [&](const YAML::Node& n) {
              for (const auto& [k, v] : n.as<std::map<std::string, std::string>>())
                  config.otlp.resource_attributes.emplace_back(k, v);
          }}},
        {"otlp_traces",
         {"true or false", [&](const YAML::Node& n) { config.otlp.traces = n.as<bool>(); }}},
        {"otlp_metrics",
         {"true or false", [&](const YAML::Node& n) { config.otlp.metrics = n.as<bool>(); }}},
        {"otlp_compression",
         {"gzip or none",
          [&](const YAML::Node& n) {
              const auto v = n.as<std::string>();
              if (v != "gzip" && v != "none") throw YAML::Exception(n.Mark(), "");
              config.otlp.gzip = v == "gzip";
          }}},
        {"otlp_histograms",
         {"exponential or explicit",
          [&](const YAML::Node& n) {
              config.otlp.exponential_histograms = n.as<std::string>() == "exponential";
          },
          otlp::check_histogram_form}},
        {"otlp_certificate",
         {"a file path",
          [&](const YAML::Node& n) { config.otlp.certificate = n.as<std::string>(); }}},
        {"otlp_sampling_ratio",
         {"a ratio from 0 to 1",
          [&](const YAML::Node& n) { config.otlp.sampling_ratio = n.as<double>(); },
          otlp::check_sampling_ratio}},
        {"otlp_always_keep_over_ms",
         {whole_number,
          [&](const YAML::Node& n) {
              config.otlp.always_keep_over = std::chrono::milliseconds(n.as<std::uint32_t>());
          },
          check_positive_count}},
        {"otlp_metrics_interval_seconds",
         {whole_number,
          [&](const YAML::Node& n) {
              config.otlp.metrics_interval = std::chrono::seconds(n.as<std::uint32_t>());
          },
          check_positive_count}},
        {"otlp_max_queued_spans",
         {whole_number,
          [&](const YAML::Node& n) { config.otlp.max_queued_spans = n.as<std::size_t>(); },
          check_positive_count}},
        {"k8s_refresh_seconds",
         {"a whole number of seconds, at least 1",
          [&](const YAML::Node& n) { config.kubernetes.refresh_seconds = n.as<std::uint32_t>(); },
          check_positive_count}},
    };
    config.config_path = path;
    for (const auto& entry : root) {
        const auto key = entry.first.as<std::string>();
        if (key == "slow_log") {
            if (auto error = parse_slow_log(entry.second, path, config)) return error;
            continue;
        }
        if (key == "alerting") {
            alerts::AlertingConfig alerting;
            if (auto error = alerts::parse_alerting(entry.second, path, alerting)) return error;
            config.alerting = std::move(alerting);
            continue;
        }
        const auto it = settings.find(key);
        if (it == settings.end()) {
            std::vector<std::string> keys = {"alerting", "slow_log"};
            for (const auto& [name, _] : settings)
                keys.push_back(name);
            return fmt::format("{}:{}: unknown key '{}'{}", path, entry.first.Mark().line + 1, key,
                               util::did_you_mean(key, keys));
        }
        const Setting& setting = it->second;
        const YAML::Node& value = entry.second;
        auto invalid = [&](const std::string& expected) {
            return fmt::format("{}:{}: invalid value for '{}': {}, got {}", path,
                               value.Mark().line + 1, key, expected, got(value));
        };
        if (setting.check) {
            if (!value.IsScalar()) return invalid("expected " + setting.expected);
            if (auto problem = setting.check(value.Scalar())) return invalid(*problem);
        }
        try {
            setting.set(value);
        } catch (const YAML::Exception&) {
            return invalid("expected " + setting.expected);
        } catch (const BadListItem& bad) {
            return fmt::format("{}:{}: invalid value in '{}': expected {}, got '{}'", path,
                               bad.mark.line + 1, key, setting.expected, bad.text);
        }
    }
    return std::nullopt;
}

bool parse_listen(const std::string& listen, std::string& host, int& port) {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    host = listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    const std::string port_text = listen.substr(colon + 1);
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    return ec == std::errc() && ptr == port_text.data() + port_text.size() && port >= 0 &&
           port < 65536;
}

}  // namespace loupe::agent
