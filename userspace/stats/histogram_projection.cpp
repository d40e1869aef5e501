#include "stats/histogram_projection.h"

#include <algorithm>
#include <array>

namespace loupe::stats {

std::span<const double> default_duration_bounds_seconds() {
    static constexpr std::array<double, 14> kBounds = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                                       0.5,   0.75, 1.0,   2.5,  5.0,   7.5, 10.0};
    return kBounds;
}

std::vector<std::uint64_t> project_cumulative(const LogSketch& sketch,
                                              std::span<const double> upper_bounds_seconds) {
    std::vector<std::uint64_t> cumulative(upper_bounds_seconds.size() + 1, 0);
    // Per-bucket counts first, then a prefix sum; buckets arrive in ascending order so the bound
    // pointer only moves forward.
    std::size_t bound = 0;
    sketch.for_each_bucket([&](int index, std::uint32_t count) {
        const double value_seconds = LogSketch::bucket_representative(index, sketch.scale()) * 1e-9;
        while (bound < upper_bounds_seconds.size() && upper_bounds_seconds[bound] < value_seconds)
            ++bound;
        cumulative[bound] += count;
    });
    for (std::size_t i = 1; i < cumulative.size(); ++i)
        cumulative[i] += cumulative[i - 1];
    // +Inf is the exact count even if a bucket counter ever saturated.
    cumulative.back() = sketch.count();
    return cumulative;
}

}  // namespace loupe::stats
