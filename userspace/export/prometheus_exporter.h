// Renders loupe's state in the Prometheus text exposition format.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "aggregate/request_metrics.h"
#include "aggregate/slow_operations.h"
#include "capture/socket_capture.h"
#include "alerts/alert_engine.h"
#include "alerts/notifier.h"
#include "attribution/pod_metadata_client.h"
#include "attribution/service_identities.h"
#include "capture/resource_capture.h"
#include "pipeline/connection_tracker.h"
#include "resources/resource_tracker.h"
#include "stats/series_budget.h"

namespace loupe::exporter {

// The agent's continuous CPU profiling counters (profile/continuous_profiler.h).
struct ProfileCounters {
    std::uint64_t samples = 0;
    std::uint64_t lost_kernel_map_full = 0;
    std::uint64_t lost_no_stack = 0;
    std::uint64_t lost_bounds = 0;
    std::uint64_t lost_dwarf_ring = 0;
    std::uint64_t lost_dwarf_copy = 0;
    // Unwind quality by mode (fp, dwarf): samples with a user stack, those of <= 2 user frames.
    std::uint64_t user_stacks_fp = 0;
    std::uint64_t shallow_stacks_fp = 0;
    std::uint64_t user_stacks_dwarf = 0;
    std::uint64_t shallow_stacks_dwarf = 0;
};

// A consistent view of everything exported, taken under the agent's lock.
struct MetricsView {
    const aggregate::RequestMetricsStore& requests;
    const pipeline::PipelineCounters& pipeline;
    std::size_t live_connections = 0;
    capture::DropCounters kernel_drops{};
    std::chrono::nanoseconds now{0};  // CLOCK_MONOTONIC, for the windows
    double uptime_seconds = 0;
    double resident_memory_bytes = 0;
    // Resources (null when resource capture is unavailable or not sampled yet).
    const std::map<std::string, resources::ServiceResources>* services = nullptr;
    const resources::NodeResources* node = nullptr;
    capture::NodeKernelCounters kernel_counters{};
    std::size_t proc_stats_entries = 0;
    // Alerts (null when not evaluated).
    const alerts::AlertEngine* alerts = nullptr;
    alerts::NotifierCounters notifications{};
    // Container and pod labels of service keys (null: every key is a plain service_name).
    const attribution::ServiceIdentities* identities = nullptr;
    // The pod list source, when running in Kubernetes.
    std::optional<attribution::PodMetadataStatus> pod_metadata{};
    bool hooks_paused = false;       // SIGUSR1: hooks detached until SIGUSR2
    std::size_t expected_bytes = 0;  // the previous exposition's size: reserved up front
    const stats::SeriesBudget* series_budget = nullptr;
    // Per-service tables (see resources::ResourceTracker): live services refused a place, and
    // places taken from services whose processes had all exited.
    std::uint64_t services_dropped = 0;
    std::uint64_t services_evicted = 0;
    std::size_t services_refused = 0;
    const aggregate::SlowOperationLog* slow_log = nullptr;
    capture::TlsCounters tls{};
    std::optional<ProfileCounters> profile{};  // when the agent profiles
};

std::string render_prometheus(const MetricsView& view);

}  // namespace loupe::exporter
