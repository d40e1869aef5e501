// Per-service resource accounting: /proc samples of live processes, kernel counters per process,
// and the final totals of processes that exited, summed by service_name.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "loupe_abi.h"
#include "resources/procfs.h"
#include "stats/series_budget.h"

namespace loupe::resources {

using Log2Histogram = std::array<std::uint64_t, LOUPE_LOG2_BUCKETS>;

// Cumulative figures of a set of processes.
struct ResourceTotals {
    std::uint64_t cpu_ns = 0;
    std::uint64_t io_read_bytes = 0;  // /proc/PID/io
    std::uint64_t io_write_bytes = 0;
    std::uint64_t disk_read_ops = 0;  // block layer
    std::uint64_t disk_write_ops = 0;
    std::uint64_t net_tx_bytes = 0;
    std::uint64_t net_rx_bytes = 0;
    std::uint64_t tcp_opened = 0;
    std::uint64_t tcp_accepted = 0;
    std::uint64_t tcp_closed = 0;
    std::uint64_t tcp_failed = 0;
    std::uint64_t tcp_retransmits = 0;
    std::uint64_t tcp_resets_sent = 0;
    std::uint64_t tcp_resets_received = 0;
    Log2Histogram disk_latency{};
    Log2Histogram runqueue_latency{};
    Log2Histogram tcp_rtt{};
    Log2Histogram tcp_duration{};
    std::uint64_t disk_latency_sum_ns = 0;  // exact sums of the histograms
    std::uint64_t runqueue_latency_sum_ns = 0;
    std::uint64_t tcp_rtt_sum_ns = 0;
    std::uint64_t tcp_duration_sum_ns = 0;

    void add(const ResourceTotals& other);
    // What accumulated since `base` (each field, floored at 0).
    ResourceTotals since(const ResourceTotals& base) const;
    void add_kernel(const loupe_proc_stats& stats);
};

// Limits the service runs under (its container's cgroup); 0 = none known.
struct ResourceLimits {
    double cpu_cores = 0;
    std::uint64_t memory_bytes = 0;
};

struct ServiceResources {
    ResourceTotals totals;  // live processes + exited ones
    ResourceLimits limits;
    std::uint64_t exited = 0;     // processes that exited since the agent started
    std::uint64_t processes = 0;  // live now
    std::uint64_t rss_bytes = 0;  // live now
    std::uint64_t active_connections = 0;
    // Rates over the last sampling interval.
    double cpu_cores = 0;
    double disk_read_bytes_per_second = 0;
    double disk_write_bytes_per_second = 0;
    double net_tx_bytes_per_second = 0;
    double net_rx_bytes_per_second = 0;
    double tcp_retransmits_per_second = 0;
};

// Samples one service's resource series put in /metrics at most: CPU and memory (5), container
// limits (4), four directional pairs (disk bytes, disk operations, network bytes, TCP resets),
// four TCP connection events, active connections, retransmits, processes and exited processes,
// and four log2 histograms (31 bounds, +Inf, _sum, _count). tests/unit checks it against the
// exporter.
inline constexpr std::size_t kSamplesPerService =
    5 + 4 + 2 * 4 + 4 + 4 + 4 * (LOUPE_LOG2_BUCKETS - 1 + 3);

class ResourceTracker {
  public:
    // The service a process belongs to, from its pid and current name.
    using ServiceOf = std::function<std::string(std::uint32_t pid, const std::string& comm)>;
    using LimitsOf = std::function<ResourceLimits(const std::string& service)>;
    // A service none of whose processes has lived for `idle_expiry` is forgotten (its series end),
    // as HTTP series are: pods come and go, and each has its own service.
    //
    // Every service held, with live processes or only exited ones, counts against `max_services`
    // and takes kSamplesPerService from `budget` (its own, of max_services services, when null).
    // A service with live processes comes first: to make room for it, the services whose
    // processes all exited longest ago are evicted. A service that finds no room is refused (its
    // processes are still followed, and it is admitted as soon as room appears); an exited
    // process whose service finds no room loses its final totals. Both are counted.
    explicit ResourceTracker(ServiceOf service_of, std::size_t max_services = 5000,
                             LimitsOf limits_of = {},
                             std::chrono::nanoseconds idle_expiry = std::chrono::minutes(15),
                             stats::SeriesBudget* budget = nullptr);

    // A process's final totals (from the kernel, at the exit of its last thread).
    void on_exit(const loupe_proc_exit_event& exit);
    // One sampling round: /proc samples of live processes, the kernel's per-process counters
    // and live TCP connections per process. Exits must be fed after the /proc scan of the same
    // round (see the agent), so that a process is never counted both live and exited.
    void on_sample(const std::vector<ProcessSample>& processes,
                   const std::unordered_map<std::uint32_t, loupe_proc_stats>& kernel,
                   const std::unordered_map<std::uint32_t, std::uint64_t>& active_connections,
                   std::chrono::nanoseconds now);

    const std::map<std::string, ServiceResources>& services() const { return services_; }

    struct ProcessView {
        std::uint32_t pid = 0;
        ResourceTotals totals;
        std::uint64_t rss_bytes = 0;
    };
    // The live processes of a service (for /api/v1/services/{name}/processes).
    std::vector<ProcessView> processes_of(const std::string& service) const;
    std::size_t live_processes() const { return live_.size(); }
    // Live services refused for want of room (each time one goes from held or new to refused),
    // and exited processes whose totals found no room.
    std::uint64_t services_dropped() const { return services_dropped_; }
    // Services without live processes evicted before their expiry to make room.
    std::uint64_t services_evicted() const { return services_evicted_; }
    // Live services without series right now.
    std::size_t services_refused() const { return refused_.size(); }
    // Evicts the services whose processes all exited longest ago until `samples` are free in
    // the budget (the budget's reclaimer); whether that much was freed.
    bool evict_departed(std::size_t samples);

  private:
    struct LiveProcess {
        std::string service;
        ResourceTotals totals;    // cumulative for the process
        ResourceTotals baseline;  // totals already charged to the names it had before
        std::uint64_t rss_bytes = 0;
    };
    // The totals of a service's exited processes; null when the service has no room (counted).
    ResourceTotals* departed_of(const std::string& service);
    // Gives `service` its place (see the constructor); `live` may evict services without
    // processes to make room.
    bool admit(const std::string& service, bool live);
    void forget(const std::string& service);
    // A process whose name changed (exec after fork, prctl): what it did under the old name stays
    // with the old service, the rest goes to the new one.
    void rename(LiveProcess& process, const std::string& service);

    ServiceOf service_of_;
    std::size_t max_services_;
    LimitsOf limits_of_;
    std::unordered_map<std::uint32_t, LiveProcess> live_;
    std::unordered_set<std::uint32_t> exited_this_round_;
    std::map<std::string, ResourceTotals> departed_;
    std::map<std::string, std::uint64_t> exited_count_;
    std::map<std::string, std::chrono::nanoseconds> last_alive_;  // services with no live process
    std::chrono::nanoseconds idle_expiry_;
    std::map<std::string, ServiceResources> services_;
    std::chrono::nanoseconds last_sample_{0};
    std::unique_ptr<stats::SeriesBudget> own_budget_;
    stats::SeriesBudget* budget_;
    std::unordered_set<std::string> admitted_;  // services holding a place and budget
    std::unordered_set<std::string> refused_;   // live services without one
    std::uint64_t services_dropped_ = 0;
    std::uint64_t services_evicted_ = 0;
};

// Node-wide utilisation from two consecutive /proc samples.
struct NodeResources {
    unsigned cpus = 0;
    double cpu_utilization = 0;  // 0..1
    std::uint64_t mem_total_bytes = 0;
    std::uint64_t mem_used_bytes = 0;  // total - available
    double mem_utilization = 0;
    std::map<std::string, double> disk_busy;        // device -> 0..1
    std::map<std::string, NetCounters> interfaces;  // cumulative bytes
    std::uint64_t tcp_retransmits = 0;              // every retransmit on the node
    // Cumulative counters, for rates over any window.
    std::uint64_t cpu_busy_ticks = 0;
    std::uint64_t cpu_total_ticks = 0;
    std::uint64_t disk_bytes = 0;  // read + written, all disks
};

// CPU and memory capacity of a service: its limits, else the node's.
double cpu_capacity_cores(const ServiceResources& service, const NodeResources& node);
double memory_capacity_bytes(const ServiceResources& service, const NodeResources& node);

class NodeTracker {
  public:
    void on_sample(const NodeSample& sample, std::uint64_t tcp_retransmits,
                   std::chrono::nanoseconds now);
    const NodeResources& node() const { return node_; }

  private:
    NodeSample previous_;
    std::chrono::nanoseconds previous_at_{0};
    NodeResources node_;
};

}  // namespace loupe::resources
