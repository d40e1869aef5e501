// The agent's aggregates as alert signals: windowed HTTP percentiles and ratios from the sketches,
// and resource rates over the rule's window from a one-second history of cumulative counters.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <string>

#include "aggregate/http_metrics.h"
#include "alerts/alert_engine.h"
#include "resources/resource_tracker.h"

namespace loupe::agent {

// Cumulative counters sampled once a second, kept for the longest window (5 minutes).
class ResourceHistory {
  public:
    struct Point {
        std::chrono::nanoseconds at{0};
        std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>
            services;  // cpu_ns, disk bytes
        std::uint64_t node_busy_ticks = 0, node_total_ticks = 0, node_disk_bytes = 0;
    };
    void record(const std::map<std::string, resources::ServiceResources>& services,
                const resources::NodeResources& node, std::chrono::nanoseconds at);
    // The newest point and the oldest one within `window` of it; null when fewer than two.
    std::pair<const Point*, const Point*> span(std::chrono::seconds window) const;

  private:
    std::deque<Point> points_;
};

class AgentSignals final : public alerts::SignalSource {
  public:
    AgentSignals(const aggregate::HttpMetricsStore& http,
                 const std::map<std::string, resources::ServiceResources>& services,
                 const resources::NodeResources& node, const ResourceHistory& history,
                 std::chrono::nanoseconds now);

    std::vector<std::string> services() const override;
    std::optional<double> value(alerts::Signal signal, const std::string& service,
                                std::chrono::seconds window) const override;

  private:
    const aggregate::HttpMetricsStore& http_;
    const std::map<std::string, resources::ServiceResources>& services_;
    const resources::NodeResources& node_;
    const ResourceHistory& history_;
    std::chrono::nanoseconds now_;
};

}  // namespace loupe::agent
