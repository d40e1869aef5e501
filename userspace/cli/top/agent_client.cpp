#include "cli/top/agent_client.h"

#include <httplib.h>

namespace loupe::top {

AgentClient::AgentClient(const std::string& base_url)
    : base_url_(base_url), client_(std::make_unique<httplib::Client>(base_url)) {
    // A stuck agent must not freeze the view: short timeouts, then "disconnected, retrying".
    client_->set_connection_timeout(std::chrono::milliseconds(500));
    client_->set_read_timeout(std::chrono::seconds(2));
}

AgentClient::~AgentClient() = default;

std::optional<nlohmann::json> AgentClient::get(const std::string& path, std::string& error) {
    const auto res = client_->Get(path);
    if (!res) {
        error = "cannot reach " + base_url_ + " (" + httplib::to_string(res.error()) + ")";
        return std::nullopt;
    }
    if (res->status != 200) {
        error = base_url_ + path + " answered " + std::to_string(res->status);
        return std::nullopt;
    }
    auto doc = nlohmann::json::parse(res->body, nullptr, false);
    if (doc.is_discarded()) {
        error = base_url_ + path + " did not answer JSON";
        return std::nullopt;
    }
    return doc;
}

bool AgentClient::alive() {
    const auto res = client_->Get("/health/live");
    return res && res->status == 200;
}

std::optional<Snapshot> AgentClient::snapshot(std::string& error) {
    auto services = get("/api/v1/services", error);
    if (!services) return std::nullopt;
    auto node = get("/api/v1/node", error);
    auto agent = get("/api/v1/agent", error);
    if (!node || !agent) return std::nullopt;
    Snapshot snap;
    snap.services = parse_services((*services)["services"]);
    snap.node = parse_node(*node);
    snap.agent.events_total = agent->value("events_total", std::uint64_t{0});
    snap.agent.alerts_firing = agent->value("alerts_firing", std::uint64_t{0});
    if (const auto drops = agent->find("kernel_drops"); drops != agent->end() && drops->is_object())
        for (const auto& [_, v] : drops->items())
            snap.agent.drops += v.get<std::uint64_t>();
    const auto at = std::chrono::steady_clock::now();
    if (last_at_.time_since_epoch().count() != 0 && snap.agent.events_total >= last_events_) {
        const double dt = std::chrono::duration<double>(at - last_at_).count();
        if (dt > 0)
            snap.agent.events_per_second =
                static_cast<double>(snap.agent.events_total - last_events_) / dt;
    }
    last_events_ = snap.agent.events_total;
    last_at_ = at;
    snap.raw = {{"services", (*services)["services"]}, {"node", *node}, {"agent", *agent}};
    return snap;
}

}  // namespace loupe::top
