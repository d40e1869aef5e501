#include "agent/alert_signals.h"

#include <set>

namespace loupe::agent {

namespace {

constexpr auto kHistory = std::chrono::minutes(5) + std::chrono::seconds(2);

void append(std::deque<ResourceHistory::Point>& points, const ResourceHistory::Point& point) {
    points.push_back(point);
    while (point.at - points.front().at > kHistory)
        points.pop_front();
}

}  // namespace

void ResourceHistory::record(const std::map<std::string, resources::ServiceResources>& services,
                             const resources::NodeResources& node, std::chrono::nanoseconds at) {
    // A service the tracker no longer holds has no current value: its history goes too.
    std::erase_if(services_, [&](const auto& entry) { return !services.contains(entry.first); });
    for (const auto& [name, r] : services)
        append(services_[name],
               {at, r.totals.cpu_ns, r.totals.io_read_bytes + r.totals.io_write_bytes, 0});
    append(node_, {at, node.cpu_busy_ticks, node.disk_bytes, node.cpu_total_ticks});
}

std::pair<const ResourceHistory::Point*, const ResourceHistory::Point*> ResourceHistory::span(
    const std::string& service, std::chrono::seconds window) const {
    const std::deque<Point>* points = &node_;
    if (service != alerts::kNodeService) {
        const auto it = services_.find(service);
        if (it == services_.end()) return {nullptr, nullptr};
        points = &it->second;
    }
    if (points->size() < 2) return {nullptr, nullptr};
    const Point& newest = points->back();
    const Point* oldest = &points->front();
    for (const auto& p : *points)
        if (newest.at - p.at <= window) {
            oldest = &p;
            break;
        }
    if (oldest == &newest) oldest = &(*points)[points->size() - 2];
    return {&newest, oldest};
}

AgentSignals::AgentSignals(const aggregate::RequestMetricsStore& requests,
                           const std::map<std::string, resources::ServiceResources>& services,
                           const resources::NodeResources& node, const ResourceHistory& history,
                           std::chrono::nanoseconds now)
    : requests_(requests), services_(services), node_(node), history_(history), now_(now) {}

std::vector<std::string> AgentSignals::services() const {
    std::set<std::string> names;
    for (const auto& [key, _] : requests_.series())
        names.insert(key.service);
    for (const auto& [name, r] : services_)
        if (r.processes > 0) names.insert(name);
    return {names.begin(), names.end()};
}

std::optional<double> AgentSignals::value(alerts::Signal signal, const std::string& service,
                                          std::chrono::seconds window) const {
    using alerts::Signal;
    const bool node = service == alerts::kNodeService;
    switch (signal) {
        case Signal::kLatencyP50:
        case Signal::kLatencyP95:
        case Signal::kLatencyP99:
        case Signal::kErrorRatio:
        case Signal::kRequestRate: {
            // HTTP, server side: how the service answers its callers.
            stats::LogSketch merged, scratch;
            std::uint64_t errors = 0;
            bool serves_http = false;
            for (const auto& [key, series] : requests_.series()) {
                if (key.protocol != protocols::Protocol::kHttp1 ||
                    key.side != protocols::Side::kServer || (!node && key.service != service))
                    continue;
                serves_http = true;
                series.window.window(window, now_, scratch);
                merged.merge(scratch);
                if (aggregate::is_error(key)) errors += scratch.count();
            }
            // No request in the window: no latency or error ratio to speak of (no data), but a
            // rate of 0 for a service that has served HTTP (its series are kept 15 minutes).
            if (merged.empty())
                return signal == Signal::kRequestRate && serves_http ? std::optional(0.0)
                                                                     : std::nullopt;
            if (signal == Signal::kErrorRatio)
                return static_cast<double>(errors) / static_cast<double>(merged.count());
            if (signal == Signal::kRequestRate)
                return static_cast<double>(merged.count()) /
                       std::chrono::duration<double>(window).count();
            const double q = signal == Signal::kLatencyP50   ? 0.5
                             : signal == Signal::kLatencyP95 ? 0.95
                                                             : 0.99;
            return merged.quantile_ns(q) * 1e-9;
        }
        case Signal::kDbLatencyP50:
        case Signal::kDbLatencyP95:
        case Signal::kDbLatencyP99:
        case Signal::kDbErrorRatio:
        case Signal::kCacheHitRatio: {
            // Every database protocol, both sides: an application's calls, a database server's
            // own operations.
            stats::LogSketch merged, scratch;
            std::uint64_t errors = 0, hits = 0, misses = 0;
            for (const auto& [key, series] : requests_.series()) {
                const auto* spec = aggregate::metric_spec(key.protocol);
                if (!spec || !spec->database || (!node && key.service != service)) continue;
                series.window.window(window, now_, scratch);
                merged.merge(scratch);
                if (aggregate::is_error(key)) errors += scratch.count();
                if (series.cache_window) {
                    const auto [h, m] = series.cache_window->window(window, now_);
                    hits += h;
                    misses += m;
                }
            }
            if (signal == Signal::kCacheHitRatio)
                return hits + misses ? std::optional(static_cast<double>(hits) /
                                                     static_cast<double>(hits + misses))
                                     : std::nullopt;
            if (merged.empty()) return std::nullopt;
            if (signal == Signal::kDbErrorRatio)
                return static_cast<double>(errors) / static_cast<double>(merged.count());
            const double q = signal == Signal::kDbLatencyP50   ? 0.5
                             : signal == Signal::kDbLatencyP95 ? 0.95
                                                               : 0.99;
            return merged.quantile_ns(q) * 1e-9;
        }
        case Signal::kMemoryUtilization: {
            if (!node_.mem_total_bytes) return std::nullopt;
            if (node) return node_.mem_utilization;
            const auto it = services_.find(service);
            if (it == services_.end() || it->second.processes == 0) return std::nullopt;
            // Share of its container's memory limit, else of the node's memory.
            return static_cast<double>(it->second.rss_bytes) /
                   resources::memory_capacity_bytes(it->second, node_);
        }
        case Signal::kCpuUtilization:
        case Signal::kDiskIoBytesRate: {
            const auto [newest, oldest] = history_.span(service, window);
            if (!newest) return std::nullopt;
            const double dt = std::chrono::duration<double>(newest->at - oldest->at).count();
            if (dt <= 0) return std::nullopt;
            const auto delta = [](std::uint64_t after, std::uint64_t before) {
                return static_cast<double>(after - std::min(before, after));
            };
            if (node) {
                if (signal == Signal::kDiskIoBytesRate)
                    return delta(newest->disk_bytes, oldest->disk_bytes) / dt;
                const auto total = newest->total_ticks - oldest->total_ticks;
                if (!total) return std::nullopt;  // /proc/stat did not move: nothing measured
                return delta(newest->cpu_ns, oldest->cpu_ns) / static_cast<double>(total);
            }
            // A service with no process left has no utilization (no data), not one of 0.
            const auto current = services_.find(service);
            if (current == services_.end() || current->second.processes == 0) return std::nullopt;
            if (signal == Signal::kDiskIoBytesRate)
                return delta(newest->disk_bytes, oldest->disk_bytes) / dt;
            const double cores = delta(newest->cpu_ns, oldest->cpu_ns) / 1e9 / dt;
            // Share of its container's CPU quota, else of the node's CPUs.
            const double capacity = resources::cpu_capacity_cores(current->second, node_);
            return capacity > 0 ? cores / capacity : std::optional<double>{};
        }
    }
    return std::nullopt;
}

}  // namespace loupe::agent
