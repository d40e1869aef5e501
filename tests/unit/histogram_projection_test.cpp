#include "stats/histogram_projection.h"

#include <random>

#include <gtest/gtest.h>

namespace loupe::stats {
namespace {

TEST(HistogramProjection, CumulativeCountsAtBounds) {
    LogSketch s;
    for (int i = 0; i < 1000; ++i)
        s.insert(3'000'000);  // 3 ms
    for (int i = 0; i < 500; ++i)
        s.insert(30'000'000);  // 30 ms
    for (int i = 0; i < 10; ++i)
        s.insert(20'000'000'000);  // 20 s, above every bound
    const double bounds[] = {0.005, 0.025, 0.05, 10.0};
    const auto counts = project_cumulative(s, bounds);
    ASSERT_EQ(counts.size(), 5u);
    EXPECT_EQ(counts[0], 1000u);
    EXPECT_EQ(counts[1], 1000u);
    EXPECT_EQ(counts[2], 1500u);
    EXPECT_EQ(counts[3], 1500u);
    EXPECT_EQ(counts[4], 1510u);  // +Inf == count
}

TEST(HistogramProjection, MatchesExactCountsAwayFromBounds) {
    // Values never within 1 % of a bound must be counted exactly.
    std::mt19937_64 rng(11);
    std::lognormal_distribution<double> dist(std::log(0.05), 1.5);
    const auto bounds = default_duration_bounds_seconds();
    LogSketch s;
    std::vector<std::uint64_t> exact(bounds.size() + 1, 0);
    for (int i = 0; i < 100'000; ++i) {
        const double v = dist(rng);
        bool near_bound = false;
        for (double b : bounds)
            near_bound |= std::abs(v - b) / b < 0.01;
        if (near_bound) continue;
        s.insert_seconds(v);
        for (std::size_t b = 0; b < bounds.size(); ++b)
            if (v <= bounds[b]) ++exact[b];
        ++exact.back();
    }
    EXPECT_EQ(project_cumulative(s, bounds), exact);
}

TEST(HistogramProjection, EmptySketchAndNoBounds) {
    LogSketch s;
    EXPECT_EQ(project_cumulative(s, default_duration_bounds_seconds()),
              std::vector<std::uint64_t>(default_duration_bounds_seconds().size() + 1, 0));
    s.insert(1'000'000);
    EXPECT_EQ(project_cumulative(s, {}), std::vector<std::uint64_t>{1});
}

}  // namespace
}  // namespace loupe::stats
