// JSON views over the HTTP metrics store for /api/v1 (and `loupe top`, which reads the same API).
#pragma once

#include <chrono>

#include <nlohmann/json.hpp>

#include "aggregate/request_metrics.h"
#include "resources/resource_tracker.h"

namespace loupe::api {

// Seconds of data a window of `span` covers at `now` (10-second slices: 50-60 s for 1 minute),
// never more than the agent has been running.
double window_covered_seconds(std::chrono::nanoseconds span, std::chrono::nanoseconds slice,
                              std::chrono::nanoseconds now, std::chrono::nanoseconds started);

// One row per service: "server" and "client" (HTTP: requests, rate, error ratio and p50/p95/p99
// over the last minute, status mix; null when the service has no such traffic), "databases" (one
// row per database system, side and operation: the same figures, errors by type and the cache
// hit ratio over the last minute) and "resources" (CPU,
// memory, disk and network rates, TCP; null when not sampled), ready for `loupe top`.
nlohmann::json services_view(const aggregate::RequestMetricsStore& store,
                             const std::map<std::string, resources::ServiceResources>* resources,
                             std::chrono::nanoseconds now, std::chrono::nanoseconds started);
nlohmann::json resources_json(const resources::ServiceResources& r);
// One row per (protocol, side, method and route or operation) of a service, with its status mix
// (errors for databases) and, for calls it makes (client side), the servers it called ("peers":
// ["10.0.0.5:5432", ...]). Null when unknown.
nlohmann::json endpoints_view(const aggregate::RequestMetricsStore& store,
                              const std::string& service, std::chrono::nanoseconds now,
                              std::chrono::nanoseconds started);

}  // namespace loupe::api
