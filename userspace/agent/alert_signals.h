// The agent's aggregates as alert signals: windowed HTTP percentiles and ratios from the sketches,
// and resource rates over the rule's window from a one-second history of cumulative counters.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>

#include "aggregate/request_metrics.h"
#include "alerts/alert_engine.h"
#include "resources/resource_tracker.h"

namespace loupe::agent {

// Cumulative counters sampled once a second, kept for the longest window (5 minutes): per service
// a queue of compact points (24 bytes each, ~7 KiB a service), only for the services the tracker
// holds, so the history is bounded as they are.
class ResourceHistory {
  public:
    struct Point {
        std::chrono::nanoseconds at{0};
        std::uint64_t cpu_ns = 0, disk_bytes = 0;  // a service's; the node's busy ticks, bytes
        std::uint64_t total_ticks = 0;             // the node's only
    };
    void record(const std::map<std::string, resources::ServiceResources>& services,
                const resources::NodeResources& node, std::chrono::nanoseconds at);
    // The newest point of a service (or of the node: kNodeService) and the oldest one within
    // `window` of it; nulls when there are fewer than two.
    std::pair<const Point*, const Point*> span(const std::string& service,
                                               std::chrono::seconds window) const;
    std::size_t services() const { return services_.size(); }

  private:
    std::unordered_map<std::string, std::deque<Point>> services_;
    std::deque<Point> node_;
};

class AgentSignals final : public alerts::SignalSource {
  public:
    AgentSignals(const aggregate::RequestMetricsStore& requests,
                 const std::map<std::string, resources::ServiceResources>& services,
                 const resources::NodeResources& node, const ResourceHistory& history,
                 std::chrono::nanoseconds now);

    std::vector<std::string> services() const override;
    std::optional<double> value(alerts::Signal signal, const std::string& service,
                                std::chrono::seconds window) const override;

  private:
    const aggregate::RequestMetricsStore& requests_;
    const std::map<std::string, resources::ServiceResources>& services_;
    const resources::NodeResources& node_;
    const ResourceHistory& history_;
    std::chrono::nanoseconds now_;
};

}  // namespace loupe::agent
