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
    // Database and cache operations (calls it makes, or serves as a database server), every
    // system and side together.
    bool has_db = false;
    std::uint64_t db_requests_total = 0;
    std::optional<double> db_rps;  // current, as rps
    double db_error_ratio = 0;     // 1-minute window
    // The highest p95 of its operations: an upper bound of the p95 of all of them together (the
    // API gives percentiles per operation, which cannot be merged).
    std::optional<double> db_p95;
    std::optional<double> cache_hit_ratio;  // over the minute's cache lookups; none without any
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

// One database operation of a service: its calls to a database or cache (side "client"), or the
// operations a database server serves (side "server").
struct DbRow {
    std::string system, side, operation;  // "redis", "client", "CONFIG GET"
    std::uint64_t requests_total = 0;
    std::optional<double> rps;  // current, as ServiceRow's
    double rps_1m = 0;
    double error_ratio = 0;
    std::optional<double> p50, p95, p99;
    std::string error_mix;  // errors of the last minute by type: "WRONGTYPE:12 ERR:3"
    std::uint64_t cache_lookups_1m = 0;
    std::optional<double> cache_hit_ratio;
    std::vector<std::string> peers;  // client side: servers called
};

// A service's /endpoints: HTTP routes and database operations (rows with "operation").
struct Endpoints {
    std::vector<RouteRow> routes;
    std::vector<DbRow> databases;
};

struct ProcessRow {
    std::uint32_t pid = 0;
    double cpu_seconds = 0;
    double rss_bytes = 0;
};

// One entry of the slow-operation log (/api/v1/slow), as the drill-down shows it.
struct SlowRow {
    std::string time;  // RFC 3339, UTC
    std::string side, protocol, operation;
    std::string what;  // the route, or the SQL statement (literals replaced), or empty
    std::string peer;
    double duration_seconds = 0;
    std::string status;
};

// One of a service's hottest functions (its CPU profile, last minute).
struct HotFunction {
    std::string function;
    std::string module;
    double self_share = 0;   // of the service's samples, with the function as the leaf
    double total_share = 0;  // with the function anywhere on the stack
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
// The "databases" array of a service row, or the database rows of /endpoints.
std::vector<DbRow> parse_databases(const nlohmann::json& databases);
Endpoints parse_endpoints(const nlohmann::json& endpoints);
std::vector<ProcessRow> parse_processes(const nlohmann::json& processes);
std::vector<SlowRow> parse_slow(const nlohmann::json& slow_operations);
std::vector<HotFunction> parse_hot_functions(const nlohmann::json& functions);
NodeInfo parse_node(const nlohmann::json& node);

}  // namespace loupe::top
