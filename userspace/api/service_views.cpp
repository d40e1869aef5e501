#include "api/service_views.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace loupe::api {
namespace {

using aggregate::HttpSide;

constexpr auto kWindow = std::chrono::minutes(1);

const char* side_name(HttpSide side) {
    return side == HttpSide::kServer ? "server" : "client";
}

// Everything a row needs, accumulated over the series it covers.
struct RowAccumulator {
    stats::LogSketch window;  // merged 1-minute sketches
    std::uint64_t window_errors = 0;
    std::uint64_t total = 0;
    std::map<std::string, std::uint64_t> statuses;  // over the window

    void add(const aggregate::HttpSeriesKey& key, const aggregate::HttpSeries& series,
             std::chrono::nanoseconds now, stats::LogSketch& scratch) {
        series.window.window(kWindow, now, scratch);
        window.merge(scratch);
        if (aggregate::is_error_status(key.side, key.status)) window_errors += scratch.count();
        if (scratch.count()) statuses[key.status] += scratch.count();
        total += series.count;
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

nlohmann::json services_view(const aggregate::HttpMetricsStore& store,
                             const std::map<std::string, resources::ServiceResources>* resources,
                             std::chrono::nanoseconds now, std::chrono::nanoseconds started) {
    std::map<std::pair<std::string, HttpSide>, RowAccumulator> http;
    std::map<std::pair<std::string, HttpSide>, std::size_t> series;
    std::set<std::string> names;
    stats::LogSketch scratch;
    for (const auto& [key, s] : store.series()) {
        http[{key.service, key.side}].add(key, s, now, scratch);
        ++series[{key.service, key.side}];
        names.insert(key.service);
    }
    if (resources)
        for (const auto& [name, _] : *resources)
            names.insert(name);
    const double covered = window_covered_seconds(kWindow, std::chrono::seconds(10), now, started);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& name : names) {
        nlohmann::json row = {{"name", name}};
        for (const HttpSide side : {HttpSide::kServer, HttpSide::kClient}) {
            const auto it = http.find({name, side});
            if (it == http.end()) {
                row[side_name(side)] = nullptr;
                continue;
            }
            auto j = it->second.to_json(covered);
            j["series"] = series[{name, side}];
            row[side_name(side)] = std::move(j);
        }
        const auto r = resources ? resources->find(name) : decltype(resources->end()){};
        row["resources"] = resources && r != resources->end() ? resources_json(r->second)
                                                              : nlohmann::json(nullptr);
        out.push_back(std::move(row));
    }
    return out;
}

nlohmann::json endpoints_view(const aggregate::HttpMetricsStore& store, const std::string& service,
                              std::chrono::nanoseconds now, std::chrono::nanoseconds started) {
    std::map<std::tuple<HttpSide, std::string, std::string>, RowAccumulator> rows;
    std::map<std::tuple<HttpSide, std::string, std::string>, std::set<std::string>> peers;
    stats::LogSketch scratch;
    for (const auto& [key, series] : store.series()) {
        if (key.service != service) continue;
        rows[{key.side, key.method, key.route}].add(key, series, now, scratch);
        if (key.side == HttpSide::kClient)
            peers[{key.side, key.method, key.route}].insert(key.server_address + ":" +
                                                            key.server_port);
    }
    if (rows.empty()) return nullptr;
    const double covered = window_covered_seconds(kWindow, std::chrono::seconds(10), now, started);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [id, row] : rows) {
        auto j = row.to_json(covered);
        j["side"] = side_name(std::get<0>(id));
        j["method"] = std::get<1>(id);
        j["route"] = std::get<2>(id);
        // Client rows: the servers this service called on that route ("address:port").
        if (const auto p = peers.find(id); p != peers.end()) j["peers"] = p->second;
        out.push_back(std::move(j));
    }
    return out;
}

}  // namespace loupe::api
