// Projection of a LogSketch onto the fixed buckets of a classic Prometheus histogram.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "stats/log_sketch.h"

namespace loupe::stats {

// Bucket bounds (seconds) of the OpenTelemetry semantic conventions for
// http.server.request.duration and friends.
std::span<const double> default_duration_bounds_seconds();

// Cumulative `le` counts: result[i] counts the values <= upper_bounds_seconds[i]; one more entry at
// the end is the +Inf bucket, equal to sketch.count(). Bounds must be ascending.
// A sketch bucket that straddles a bound is counted on the side of its representative value, so
// only values within the sketch's error_bound() of a bound can land one bucket off.
std::vector<std::uint64_t> project_cumulative(const LogSketch& sketch,
                                              std::span<const double> upper_bounds_seconds);

}  // namespace loupe::stats
