#include "agent/agent_config.h"

#include <unistd.h>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

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
        {"k8s_refresh_seconds",
         {"a whole number of seconds, at least 1",
          [&](const YAML::Node& n) { config.kubernetes.refresh_seconds = n.as<std::uint32_t>(); },
          check_positive_count}},
    };
    config.config_path = path;
    for (const auto& entry : root) {
        const auto key = entry.first.as<std::string>();
        if (key == "alerting") {
            alerts::AlertingConfig alerting;
            if (auto error = alerts::parse_alerting(entry.second, path, alerting)) return error;
            config.alerting = std::move(alerting);
            continue;
        }
        const auto it = settings.find(key);
        if (it == settings.end()) {
            std::vector<std::string> keys = {"alerting"};
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
