#include "api/service_views.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace loupe::api {
namespace {

using protocols::Protocol;
using protocols::Side;

constexpr auto kWindow = std::chrono::minutes(1);

const char* side_name(Side side) {
    return side == Side::kServer ? "server" : "client";
}

// Everything a row needs, accumulated over the series it covers.
struct RowAccumulator {
    stats::LogSketch window;  // merged 1-minute sketches
    std::uint64_t window_errors = 0;
    std::uint64_t total = 0;
    std::map<std::string, std::uint64_t> statuses;   // over the window
    std::uint64_t cache_hits = 0, cache_misses = 0;  // over the window

    void add(const aggregate::SeriesKey& key, const aggregate::Series& series,
             std::chrono::nanoseconds now, stats::LogSketch& scratch) {
        series.window.window(kWindow, now, scratch);
        window.merge(scratch);
        if (aggregate::is_error(key)) window_errors += scratch.count();
        if (scratch.count() && !key.status.empty()) statuses[key.status] += scratch.count();
        total += series.count;
        if (series.cache_window) {
            const auto [hits, misses] = series.cache_window->window(kWindow, now);
            cache_hits += hits;
            cache_misses += misses;
        }
    }

    nlohmann::json to_json(double covered_seconds) const {
        auto seconds = [&](double q) -> nlohmann::json {
            return window.empty() ? nlohmann::json(nullptr)
                                  : nlohmann::json(window.quantile_ns(q) * 1e-9);
        };
        const double count = static_cast<double>(window.count());
        return {{"requests_total", total},
                {"requests_1m", window.count()},
                {"rps", covered_seconds > 0 ? count / covered_seconds : 0.0},
                {"error_ratio", count > 0 ? static_cast<double>(window_errors) / count : 0.0},
                {"p50_seconds", seconds(0.5)},
                {"p95_seconds", seconds(0.95)},
                {"p99_seconds", seconds(0.99)},
                {"statuses", statuses}};
    }

    // A database operation's row: errors by type instead of statuses, and the cache hit ratio.
    nlohmann::json to_db_json(double covered_seconds) const {
        nlohmann::json j = to_json(covered_seconds);
        j["errors"] = j["statuses"];
        j.erase("statuses");
        const std::uint64_t lookups = cache_hits + cache_misses;
        j["cache_lookups_1m"] = lookups;
        j["cache_hit_ratio"] =
            lookups ? nlohmann::json(static_cast<double>(cache_hits) / static_cast<double>(lookups))
                    : nlohmann::json(nullptr);
        return j;
    }
};

}  // namespace

double window_covered_seconds(std::chrono::nanoseconds span, std::chrono::nanoseconds slice,
                              std::chrono::nanoseconds now, std::chrono::nanoseconds started) {
    const auto full_slices = (span + slice - std::chrono::nanoseconds(1)) / slice - 1;
    const auto covered = full_slices * slice + now % slice;
    const auto running = now - started;
    return std::chrono::duration<double>(
               std::max(std::chrono::nanoseconds(0), std::min(covered, running)))
        .count();
}

nlohmann::json resources_json(const resources::ServiceResources& r) {
    auto limit = [](auto value) {
        return value > 0 ? nlohmann::json(value) : nlohmann::json(nullptr);
    };
    return {{"processes", r.processes},
            {"exited", r.exited},
            {"cpu_cores", r.cpu_cores},
            {"cpu_limit_cores", limit(r.limits.cpu_cores)},
            {"memory_limit_bytes", limit(r.limits.memory_bytes)},
            {"cpu_seconds_total", static_cast<double>(r.totals.cpu_ns) * 1e-9},
            {"rss_bytes", r.rss_bytes},
            {"disk_read_bytes_per_second", r.disk_read_bytes_per_second},
            {"disk_write_bytes_per_second", r.disk_write_bytes_per_second},
            {"net_tx_bytes_per_second", r.net_tx_bytes_per_second},
            {"net_rx_bytes_per_second", r.net_rx_bytes_per_second},
            {"tcp_active_connections", r.active_connections},
            {"tcp_retransmits_total", r.totals.tcp_retransmits},
            {"tcp_retransmits_per_second", r.tcp_retransmits_per_second}};
}

nlohmann::json services_view(const aggregate::RequestMetricsStore& store,
                             const std::map<std::string, resources::ServiceResources>* resources,
                             std::chrono::nanoseconds now, std::chrono::nanoseconds started) {
    std::map<std::pair<std::string, Side>, RowAccumulator> http;
    std::map<std::pair<std::string, Side>, std::size_t> series;
    // Database calls and the database servers' own view: per service, (system, side, operation).
    using DbId = std::tuple<std::string_view, Side, std::string>;
    std::map<std::string, std::map<DbId, RowAccumulator>> databases;
    std::set<std::string> names;
    stats::LogSketch scratch;
    for (const auto& [key, s] : store.series()) {
        names.insert(key.service);
        if (key.protocol == Protocol::kHttp1) {
            http[{key.service, key.side}].add(key, s, now, scratch);
            ++series[{key.service, key.side}];
        } else if (const auto* spec = aggregate::metric_spec(key.protocol);
                   spec && spec->database) {
            databases[key.service][{spec->system, key.side, key.operation}].add(key, s, now,
                                                                                scratch);
        }
    }
    if (resources)
        for (const auto& [name, _] : *resources)
            names.insert(name);
    const double covered = window_covered_seconds(kWindow, std::chrono::seconds(10), now, started);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& name : names) {
        nlohmann::json row = {{"name", name}};
        for (const Side side : {Side::kServer, Side::kClient}) {
            const auto it = http.find({name, side});
            if (it == http.end()) {
                row[side_name(side)] = nullptr;
                continue;
            }
            auto j = it->second.to_json(covered);
            j["series"] = series[{name, side}];
            row[side_name(side)] = std::move(j);
        }
        nlohmann::json db = nlohmann::json::array();
        if (const auto d = databases.find(name); d != databases.end())
            for (const auto& [id, acc] : d->second) {
                auto j = acc.to_db_json(covered);
                j["system"] = std::get<0>(id);
                j["side"] = side_name(std::get<1>(id));
                j["operation"] = std::get<2>(id);
                db.push_back(std::move(j));
            }
        row["databases"] = std::move(db);
        const auto r = resources ? resources->find(name) : decltype(resources->end()){};
        row["resources"] = resources && r != resources->end() ? resources_json(r->second)
                                                              : nlohmann::json(nullptr);
        out.push_back(std::move(row));
    }
    return out;
}

nlohmann::json endpoints_view(const aggregate::RequestMetricsStore& store,
                              const std::string& service, std::chrono::nanoseconds now,
                              std::chrono::nanoseconds started) {
    // (protocol, side, operation, target): HTTP (method, route); a database's operations.
    using Id = std::tuple<Protocol, Side, std::string, std::string>;
    std::map<Id, RowAccumulator> rows;
    std::map<Id, std::set<std::string>> peers;
    stats::LogSketch scratch;
    for (const auto& [key, series] : store.series()) {
        if (key.service != service) continue;
        const Id id{key.protocol, key.side, key.operation, key.target};
        rows[id].add(key, series, now, scratch);
        if (key.side == Side::kClient) peers[id].insert(key.server_address + ":" + key.server_port);
    }
    if (rows.empty()) return nullptr;
    const double covered = window_covered_seconds(kWindow, std::chrono::seconds(10), now, started);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [id, row] : rows) {
        const Protocol protocol = std::get<0>(id);
        const auto* spec = aggregate::metric_spec(protocol);
        const bool http = protocol == Protocol::kHttp1;
        auto j = http ? row.to_json(covered) : row.to_db_json(covered);
        j["protocol"] = spec ? spec->system : "unknown";
        j["side"] = side_name(std::get<1>(id));
        if (http) {
            j["method"] = std::get<2>(id);
            j["route"] = std::get<3>(id);
        } else {
            j["operation"] = std::get<2>(id);
        }
        // Client rows: the servers this service called ("address:port").
        if (const auto p = peers.find(id); p != peers.end()) j["peers"] = p->second;
        out.push_back(std::move(j));
    }
    return out;
}

}  // namespace loupe::api
