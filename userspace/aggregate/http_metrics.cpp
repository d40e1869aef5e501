#include "aggregate/http_metrics.h"

#include <algorithm>
#include <charconv>

namespace loupe::aggregate {

std::string_view status_label(int status, std::array<char, 3>& digits) {
    if (status < 100 || status > 999) return "none";
    digits = {static_cast<char>('0' + status / 100), static_cast<char>('0' + status / 10 % 10),
              static_cast<char>('0' + status % 10)};
    return {digits.data(), digits.size()};
}

bool is_error_status(HttpSide side, const std::string& status) {
    if (status == "none") return true;
    if (status.empty()) return false;
    return side == HttpSide::kServer ? status[0] == '5' : (status[0] == '4' || status[0] == '5');
}

HttpMetricsStore::HttpMetricsStore(HttpStoreLimits limits, stats::SeriesBudget* budget)
    : limits_(limits),
      own_budget_(budget ? nullptr
                         : std::make_unique<stats::SeriesBudget>(limits.max_series *
                                                                 kSamplesPerHttpSeries)),
      budget_(budget ? budget : own_budget_.get()) {}

void HttpMetricsStore::record(const HttpObservation& obs, std::chrono::nanoseconds now) {
    // Runs for every exchange: an existing series is found from views, with no string built but
    // the route.
    const std::string route = normalizer_.normalize(obs.path);
    std::array<char, 3> status_digits{};
    std::array<char, 5> port_digits{};
    std::string_view port;
    if (obs.server_port) {
        const auto end = std::to_chars(port_digits.data(), port_digits.data() + port_digits.size(),
                                       obs.server_port)
                             .ptr;
        port = {port_digits.data(), static_cast<std::size_t>(end - port_digits.data())};
    }
    const HttpSeriesKeyView key{
        obs.side,           obs.service, obs.method, route, status_label(obs.status, status_digits),
        obs.server_address, port};
    auto it = series_.find(key);
    if (it == series_.end()) {
        it = add_series(key);
        if (it == series_.end()) return;
    }
    HttpSeries& s = it->second;
    s.window.insert(obs.duration_ns, now);
    const auto bucket =
        std::lower_bound(kDurationBoundsNs.begin(), kDurationBoundsNs.end(), obs.duration_ns);
    if (bucket != kDurationBoundsNs.end())
        ++s.buckets[static_cast<std::size_t>(bucket - kDurationBoundsNs.begin())];
    ++s.count;
    s.sum_ns += obs.duration_ns;
    s.last_update = now;
}

bool HttpMetricsStore::seen_before(std::string_view service, std::string_view route,
                                   std::size_t routes_admitted) {
    const std::size_t admitted_at_once =
        limits_.max_routes_per_service - limits_.max_routes_per_service / 2;
    if (routes_admitted < admitted_at_once) return true;
    auto& seen = routes_seen_once_[std::string(service)];
    const std::size_t hash = std::hash<std::string_view>{}(route);
    if (seen.erase(hash)) return true;
    if (seen.size() >= limits_.max_routes_per_service) seen.clear();
    seen.insert(hash);
    return false;
}

HttpSeriesMap::iterator HttpMetricsStore::add_series(HttpSeriesKeyView key) {
    // Per-service route cap: the routes beyond it share one overflow route. (A series that
    // exists has a route admitted when it was created: record() found it without this check.)
    auto& routes = routes_by_service_[std::string(key.service)];
    if (!routes.contains(std::string(key.route))) {
        if (routes.size() >= limits_.max_routes_per_service ||
            !seen_before(key.service, key.route, routes.size())) {
            key.route = kOverflowRoute;
            ++routes_overflowed_;
            if (const auto it = series_.find(key); it != series_.end()) return it;
        } else {
            routes.emplace(key.route);
        }
    }
    if (!budget_->try_take(kSamplesPerHttpSeries)) {
        ++series_dropped_;
        return series_.end();
    }
    return series_.try_emplace(key.owned()).first;
}

std::size_t HttpMetricsStore::expire_idle(std::chrono::nanoseconds now) {
    std::size_t removed = 0;
    for (auto it = series_.begin(); it != series_.end();) {
        if (now - it->second.last_update > limits_.idle_expiry) {
            it = series_.erase(it);
            budget_->give_back(kSamplesPerHttpSeries);
            ++removed;
        } else {
            ++it;
        }
    }
    if (removed) {
        // Rebuild the route sets so expired routes free their slot under the cap.
        routes_by_service_.clear();
        routes_seen_once_.clear();
        for (const auto& [key, _] : series_)
            if (key.route != kOverflowRoute) routes_by_service_[key.service].insert(key.route);
    }
    return removed;
}

std::size_t HttpMetricsStore::memory_bytes() const {
    std::size_t bytes = sizeof(*this);
    for (const auto& [key, s] : series_)
        bytes += sizeof(key) + key.service.capacity() + key.route.capacity() +
                 s.window.memory_bytes() + sizeof(HttpSeries) - sizeof(stats::WindowedSketch) +
                 64;  // 64: map node overhead
    return bytes;
}

}  // namespace loupe::aggregate
