// What `loupe top` shows, read from an agent's /api/v1 (the same API users can script against).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loupe::top {

struct ServiceRow {
    std::string name;
    bool has_http = false;  // server or client traffic seen
    std::string side;       // "server" when it serves HTTP, else "client"
    std::uint64_t requests_total = 0;
    std::optional<double> rps;  // current: over the last few seconds (none on the first snapshot)
    double rps_1m = 0;          // the API's 1-minute average
    double error_ratio = 0;     // 1-minute window
    std::optional<double> p50, p95, p99;  // seconds, 1-minute window
    bool has_resources = false;
    std::uint64_t processes = 0;
    double cpu_cores = 0;
    double rss_bytes = 0;
    double disk_read_bps = 0, disk_write_bps = 0;
    double net_rx_bps = 0, net_tx_bps = 0;
    double retransmits = 0;  // total
};

struct RouteRow {
    std::string side, method, route;
    std::uint64_t requests_total = 0;
    std::optional<double> rps;  // current, as ServiceRow's
    double rps_1m = 0;
    double error_ratio = 0;
    std::optional<double> p50, p95, p99;
    std::string status_mix;          // "200:97% 404:3%"
    std::vector<std::string> peers;  // client side: servers called
};

struct ProcessRow {
    std::uint32_t pid = 0;
    double cpu_seconds = 0;
    double rss_bytes = 0;
};

struct NodeInfo {
    double cpu_utilization = 0;
    double memory_utilization = 0;
    unsigned cpus = 0;
};

struct AgentInfo {
    double events_per_second = 0;
    std::uint64_t events_total = 0;
    std::uint64_t drops = 0;
    std::uint64_t alerts_firing = 0;
};

struct Snapshot {
    NodeInfo node;
    AgentInfo agent;
    std::vector<ServiceRow> services;
    nlohmann::json raw;  // the API documents it was built from (for --json)
};

std::vector<ServiceRow> parse_services(const nlohmann::json& services);
std::vector<RouteRow> parse_endpoints(const nlohmann::json& endpoints);
std::vector<ProcessRow> parse_processes(const nlohmann::json& processes);
NodeInfo parse_node(const nlohmann::json& node);

}  // namespace loupe::top
