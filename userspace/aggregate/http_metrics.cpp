#include "aggregate/http_metrics.h"

#include <algorithm>

namespace loupe::aggregate {

std::string status_label(int status) {
    return status >= 100 && status <= 999 ? std::to_string(status) : std::string("none");
}

bool is_error_status(HttpSide side, const std::string& status) {
    if (status == "none") return true;
    if (status.empty()) return false;
    return side == HttpSide::kServer ? status[0] == '5' : (status[0] == '4' || status[0] == '5');
}

HttpMetricsStore::HttpMetricsStore(HttpStoreLimits limits) : limits_(limits) {}

void HttpMetricsStore::record(const HttpObservation& obs, std::chrono::nanoseconds now) {
    HttpSeriesKey key{obs.side,
                      obs.service,
                      obs.method,
                      normalizer_.normalize(obs.path),
                      status_label(obs.status),
                      obs.server_address,
                      obs.server_port ? std::to_string(obs.server_port) : std::string()};
    // Per-service route cap: the routes beyond it share one overflow route.
    auto& routes = routes_by_service_[key.service];
    if (!routes.contains(key.route)) {
        if (routes.size() >= limits_.max_routes_per_service) {
            key.route = kOverflowRoute;
            ++routes_overflowed_;
        } else {
            routes.insert(key.route);
        }
    }
    auto it = series_.find(key);
    if (it == series_.end()) {
        if (series_.size() >= limits_.max_series) {
            ++series_dropped_;
            return;
        }
        it = series_.try_emplace(std::move(key)).first;
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

std::size_t HttpMetricsStore::expire_idle(std::chrono::nanoseconds now) {
    std::size_t removed = 0;
    for (auto it = series_.begin(); it != series_.end();) {
        if (now - it->second.last_update > limits_.idle_expiry) {
            it = series_.erase(it);
            ++removed;
        } else {
            ++it;
        }
    }
    if (removed) {
        // Rebuild the route sets so expired routes free their slot under the cap.
        routes_by_service_.clear();
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
