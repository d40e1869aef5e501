// JSON views over the HTTP metrics store for /api/v1 (and `loupe top`, which reads the same API).
#pragma once

#include <chrono>

#include <nlohmann/json.hpp>

#include "aggregate/http_metrics.h"
#include "resources/resource_tracker.h"

namespace loupe::api {

// Seconds of data a window of `span` covers at `now` (10-second slices: 50-60 s for 1 minute),
// never more than the agent has been running.
double window_covered_seconds(std::chrono::nanoseconds span, std::chrono::nanoseconds slice,
                              std::chrono::nanoseconds now, std::chrono::nanoseconds started);

// One row per service: "server" and "client" (requests, rate, error ratio and p50/p95/p99 over
// the last minute, status mix; null when the service has no such traffic) and "resources" (CPU,
// memory, disk and network rates, TCP; null when not sampled), ready for `loupe top`.
nlohmann::json services_view(const aggregate::HttpMetricsStore& store,
                             const std::map<std::string, resources::ServiceResources>* resources,
                             std::chrono::nanoseconds now, std::chrono::nanoseconds started);
nlohmann::json resources_json(const resources::ServiceResources& r);
// One row per (side, method, route) of a service, with its status mix and, for calls it makes
// (client side), the servers it called ("peers": ["10.0.0.5:5432", ...]). Null when unknown.
nlohmann::json endpoints_view(const aggregate::HttpMetricsStore& store, const std::string& service,
                              std::chrono::nanoseconds now, std::chrono::nanoseconds started);

}  // namespace loupe::api
