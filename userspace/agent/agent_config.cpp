#include "agent/agent_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <functional>

namespace loupe::agent {
namespace {

template <typename T>
std::vector<T> as_list(const YAML::Node& node) {
    std::vector<T> out;
    if (node.IsSequence()) {
        for (const auto& item : node)
            out.push_back(item.as<T>());
    } else {
        out.push_back(node.as<T>());
    }
    return out;
}

}  // namespace

std::optional<std::string> load_config_file(const std::string& path, AgentConfig& config) {
    YAML::Node root;
    try {
        root = YAML::LoadFile(path);
    } catch (const YAML::BadFile&) {
        return fmt::format("{}: cannot read the config file", path);
    } catch (const YAML::Exception& e) {
        return fmt::format("{}:{}: {}", path, e.mark.line + 1, e.msg);
    }
    if (root.IsNull()) return std::nullopt;
    if (!root.IsMap())
        return fmt::format("{}:1: the config must be a mapping of keys to values", path);

    using Setter = std::function<void(const YAML::Node&)>;
    const std::map<std::string, Setter> setters = {
        {"listen", [&](const YAML::Node& n) { config.listen = n.as<std::string>(); }},
        {"log_format", [&](const YAML::Node& n) { config.log_format = n.as<std::string>(); }},
        {"log_level", [&](const YAML::Node& n) { config.log_level = n.as<std::string>(); }},
        {"pid", [&](const YAML::Node& n) { config.pids = as_list<std::uint32_t>(n); }},
        {"comm", [&](const YAML::Node& n) { config.comms = as_list<std::string>(n); }},
        {"port", [&](const YAML::Node& n) { config.ports = as_list<std::uint16_t>(n); }},
        {"disable_hooks",
         [&](const YAML::Node& n) { config.disabled_hooks = as_list<std::string>(n); }},
        {"ring_buffer_bytes",
         [&](const YAML::Node& n) { config.ring_buffer_bytes = n.as<std::uint32_t>(); }},
        {"max_series", [&](const YAML::Node& n) { config.max_series = n.as<std::size_t>(); }},
        {"max_routes_per_service",
         [&](const YAML::Node& n) { config.max_routes_per_service = n.as<std::size_t>(); }},
        {"max_connections",
         [&](const YAML::Node& n) { config.max_connections = n.as<std::size_t>(); }},
        {"service_names",
         [&](const YAML::Node& n) {
             config.service_names = n.as<std::map<std::string, std::string>>();
         }},
        {"kubernetes",
         [&](const YAML::Node& n) {
             const auto mode = n.as<std::string>();
             if (mode != "auto" && mode != "on" && mode != "off")
                 throw YAML::Exception(n.Mark(), "expected auto, on or off");
             config.kubernetes.mode = mode;
         }},
        {"k8s_node_name",
         [&](const YAML::Node& n) { config.kubernetes.node_name = n.as<std::string>(); }},
        {"k8s_pods_url",
         [&](const YAML::Node& n) { config.kubernetes.pods_url = n.as<std::string>(); }},
        {"k8s_token_file",
         [&](const YAML::Node& n) { config.kubernetes.token_file = n.as<std::string>(); }},
        {"k8s_ca_file",
         [&](const YAML::Node& n) { config.kubernetes.ca_file = n.as<std::string>(); }},
        {"k8s_refresh_seconds",
         [&](const YAML::Node& n) { config.kubernetes.refresh_seconds = n.as<std::uint32_t>(); }},
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
        const auto it = setters.find(key);
        if (it == setters.end())
            return fmt::format("{}:{}: unknown key '{}'", path, entry.first.Mark().line + 1, key);
        try {
            it->second(entry.second);
        } catch (const YAML::Exception& e) {
            return fmt::format("{}:{}: invalid value for '{}': {}", path,
                               entry.second.Mark().line + 1, key, e.msg);
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
