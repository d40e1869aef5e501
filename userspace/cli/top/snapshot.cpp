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

// j[key], or null when j is not an object or lacks it (json::value() throws on a non-object).
const nlohmann::json& member(const nlohmann::json& j, const char* key) {
    static const nlohmann::json kNull;
    const auto it = j.find(key);
    return it != j.end() ? *it : kNull;
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

// Errors by type, most frequent first: "WRONGTYPE:12 ERR:3".
std::string error_mix(const nlohmann::json& errors) {
    if (!errors.is_object()) return {};
    std::vector<std::pair<std::uint64_t, std::string>> parts;
    for (const auto& [type, count] : errors.items())
        if (count.is_number_unsigned()) parts.emplace_back(count.get<std::uint64_t>(), type);
    std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::string out;
    for (const auto& [count, type] : parts) {
        if (!out.empty()) out += " ";
        out += fmt::format("{}:{}", type, count);
    }
    return out;
}

std::vector<std::string> peers(const nlohmann::json& row) {
    std::vector<std::string> out;
    if (const auto p = row.find("peers"); p != row.end() && p->is_array())
        for (const auto& peer : *p)
            if (peer.is_string()) out.push_back(peer.get<std::string>());
    return out;
}

// The API names the system "system" in a service's "databases", "protocol" in /endpoints.
DbRow parse_db_row(const nlohmann::json& d) {
    DbRow row;
    row.system = text(d, "system");
    if (row.system.empty()) row.system = text(d, "protocol");
    row.side = text(d, "side");
    row.operation = text(d, "operation");
    row.requests_total = counter(d, "requests_total");
    row.rps_1m = number(d, "rps");
    row.error_ratio = number(d, "error_ratio");
    row.p50 = maybe(d, "p50_seconds");
    row.p95 = maybe(d, "p95_seconds");
    row.p99 = maybe(d, "p99_seconds");
    row.error_mix = error_mix(member(d, "errors"));
    row.cache_lookups_1m = counter(d, "cache_lookups_1m");
    row.cache_hit_ratio = maybe(d, "cache_hit_ratio");
    row.peers = peers(d);
    return row;
}

// An endpoint row is a database operation when it names an operation and no HTTP method or
// route (agents from before database protocols send neither "protocol" nor "operation").
bool is_database_row(const nlohmann::json& e) {
    return e.is_object() && e.contains("operation") && !e.contains("method") &&
           !e.contains("route");
}

// The service's database figures, from its operations' rows: errors and cache hits weighted by
// the minute's counts the ratios were computed from, so that the combined ratios are exact.
void add_databases(ServiceRow& row, const nlohmann::json& databases) {
    if (!databases.is_array()) return;
    double window_requests = 0, window_errors = 0, lookups = 0, hits = 0;
    for (const auto& d : databases) {
        if (!d.is_object()) continue;
        const DbRow op = parse_db_row(d);
        row.has_db = true;
        row.db_requests_total += op.requests_total;
        const double requests_1m = static_cast<double>(counter(d, "requests_1m"));
        window_requests += requests_1m;
        window_errors += op.error_ratio * requests_1m;
        if (op.p95 && (!row.db_p95 || *op.p95 > *row.db_p95)) row.db_p95 = op.p95;
        if (op.cache_hit_ratio && op.cache_lookups_1m > 0) {
            lookups += static_cast<double>(op.cache_lookups_1m);
            hits += *op.cache_hit_ratio * static_cast<double>(op.cache_lookups_1m);
        }
    }
    row.db_error_ratio = window_requests > 0 ? window_errors / window_requests : 0.0;
    if (lookups > 0) row.cache_hit_ratio = hits / lookups;
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
        if (const auto d = s.find("databases"); d != s.end()) add_databases(row, *d);
        rows.push_back(std::move(row));
    }
    return rows;
}

std::vector<DbRow> parse_databases(const nlohmann::json& databases) {
    std::vector<DbRow> rows;
    if (!databases.is_array()) return rows;
    for (const auto& d : databases)
        if (d.is_object()) rows.push_back(parse_db_row(d));
    return rows;
}

Endpoints parse_endpoints(const nlohmann::json& endpoints) {
    Endpoints out;
    if (!endpoints.is_array()) return out;
    for (const auto& e : endpoints) {
        if (is_database_row(e)) {
            out.databases.push_back(parse_db_row(e));
            continue;
        }
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
        row.status_mix = status_mix(member(e, "statuses"));
        row.peers = peers(e);
        out.routes.push_back(std::move(row));
    }
    return out;
}

std::vector<ProcessRow> parse_processes(const nlohmann::json& processes) {
    std::vector<ProcessRow> rows;
    if (!processes.is_array()) return rows;
    for (const auto& p : processes)
        rows.push_back({static_cast<std::uint32_t>(counter(p, "pid")),
                        number(p, "cpu_seconds_total"), number(p, "rss_bytes")});
    return rows;
}

std::vector<SlowRow> parse_slow(const nlohmann::json& slow_operations) {
    std::vector<SlowRow> rows;
    if (!slow_operations.is_array()) return rows;
    for (const auto& e : slow_operations) {
        if (!e.is_object()) continue;
        SlowRow r;
        r.time = text(e, "time");
        r.side = text(e, "side");
        r.protocol = text(e, "protocol");
        r.operation = text(e, "operation");
        r.what = text(e, "statement");
        if (r.what.empty()) r.what = text(e, "target");
        r.peer = text(e, "peer");
        r.duration_seconds = number(e, "duration_seconds");
        r.status = text(e, "error");
        if (r.status.empty()) r.status = text(e, "status");
        rows.push_back(std::move(r));
    }
    return rows;
}

std::vector<HotFunction> parse_hot_functions(const nlohmann::json& functions) {
    std::vector<HotFunction> rows;
    if (!functions.is_array()) return rows;
    for (const auto& f : functions) {
        if (!f.is_object()) continue;
        HotFunction row;
        if (f.contains("function") && f["function"].is_string())
            row.function = f["function"].get<std::string>();
        if (f.contains("module") && f["module"].is_string())
            row.module = f["module"].get<std::string>();
        row.self_share = number(f, "self_share");
        row.total_share = number(f, "total_share");
        rows.push_back(std::move(row));
    }
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
