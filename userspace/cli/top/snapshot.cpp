#include "cli/top/snapshot.h"

#include <algorithm>
#include <fmt/format.h>

namespace loupe::top {
namespace {

double number(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::uint64_t counter(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

std::string text(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<double> maybe(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
}

std::string status_mix(const nlohmann::json& statuses) {
    if (!statuses.is_object()) return {};
    double total = 0;
    std::vector<std::pair<double, std::string>> parts;
    for (const auto& [status, count] : statuses.items()) {
        if (!count.is_number()) continue;
        total += count.get<double>();
        parts.emplace_back(count.get<double>(), status);
    }
    std::sort(parts.rbegin(), parts.rend());
    std::string out;
    for (const auto& [count, status] : parts) {
        if (!out.empty()) out += " ";
        out += fmt::format("{}:{:.0f}%", status, total > 0 ? 100.0 * count / total : 0.0);
    }
    return out;
}

}  // namespace

std::vector<ServiceRow> parse_services(const nlohmann::json& services) {
    std::vector<ServiceRow> rows;
    if (!services.is_array()) return rows;
    for (const auto& s : services) {
        ServiceRow row;
        row.name = text(s, "name");
        // A service that serves HTTP is judged by its server side; a pure client by its calls.
        const nlohmann::json* http = nullptr;
        if (s.contains("server") && s["server"].is_object()) {
            http = &s["server"];
            row.side = "server";
        } else if (s.contains("client") && s["client"].is_object()) {
            http = &s["client"];
            row.side = "client";
        }
        if (http) {
            row.has_http = true;
            row.requests_total = counter(*http, "requests_total");
            row.rps_1m = number(*http, "rps");
            row.error_ratio = number(*http, "error_ratio");
            row.p50 = maybe(*http, "p50_seconds");
            row.p95 = maybe(*http, "p95_seconds");
            row.p99 = maybe(*http, "p99_seconds");
        }
        if (s.contains("resources") && s["resources"].is_object()) {
            const auto& r = s["resources"];
            row.has_resources = true;
            row.processes = counter(r, "processes");
            row.cpu_cores = number(r, "cpu_cores");
            row.rss_bytes = number(r, "rss_bytes");
            row.disk_read_bps = number(r, "disk_read_bytes_per_second");
            row.disk_write_bps = number(r, "disk_write_bytes_per_second");
            row.net_rx_bps = number(r, "net_rx_bytes_per_second");
            row.net_tx_bps = number(r, "net_tx_bytes_per_second");
            row.retransmits = number(r, "tcp_retransmits_total");
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

std::vector<RouteRow> parse_endpoints(const nlohmann::json& endpoints) {
    std::vector<RouteRow> rows;
    if (!endpoints.is_array()) return rows;
    for (const auto& e : endpoints) {
        RouteRow row;
        row.side = text(e, "side");
        row.method = text(e, "method");
        row.route = text(e, "route");
        row.requests_total = counter(e, "requests_total");
        row.rps_1m = number(e, "rps");
        row.error_ratio = number(e, "error_ratio");
        row.p50 = maybe(e, "p50_seconds");
        row.p95 = maybe(e, "p95_seconds");
        row.p99 = maybe(e, "p99_seconds");
        row.status_mix = status_mix(e.value("statuses", nlohmann::json::object()));
        if (const auto p = e.find("peers"); p != e.end() && p->is_array())
            for (const auto& peer : *p)
                if (peer.is_string()) row.peers.push_back(peer.get<std::string>());
        rows.push_back(std::move(row));
    }
    return rows;
}

std::vector<ProcessRow> parse_processes(const nlohmann::json& processes) {
    std::vector<ProcessRow> rows;
    if (!processes.is_array()) return rows;
    for (const auto& p : processes)
        rows.push_back({static_cast<std::uint32_t>(counter(p, "pid")),
                        number(p, "cpu_seconds_total"), number(p, "rss_bytes")});
    return rows;
}

NodeInfo parse_node(const nlohmann::json& node) {
    NodeInfo n;
    n.cpu_utilization = number(node, "cpu_utilization");
    n.memory_utilization = number(node, "memory_utilization");
    n.cpus = static_cast<unsigned>(number(node, "cpus"));
    return n;
}

}  // namespace loupe::top
