#include "stats/log_sketch.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

namespace loupe::stats {
namespace {

constexpr std::size_t kSamples = 1'000'000;
constexpr double kQuantiles[] = {0.5, 0.9, 0.95, 0.99, 0.999};

// Exact quantile with the sketch's rank definition: the sample of rank floor(q*(n-1)).
std::uint64_t exact_quantile(const std::vector<std::uint64_t>& sorted, double q) {
    const auto rank = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1));
    return sorted[rank];
}

std::uint64_t to_ns(double seconds) {
    return static_cast<std::uint64_t>(std::llround(std::max(seconds, 0.0) * 1e9));
}

void expect_accurate(std::vector<std::uint64_t> data, const std::string& name) {
    LogSketch sketch;
    for (auto v : data)
        sketch.insert(v);
    std::sort(data.begin(), data.end());
    ASSERT_EQ(sketch.count(), data.size());
    for (double q : kQuantiles) {
        const double exact = static_cast<double>(exact_quantile(data, q));
        const double estimate = sketch.quantile_ns(q);
        const double relative = std::abs(estimate - exact) / exact;
        EXPECT_LE(relative, 0.01) << name << " q=" << q << " exact=" << exact
                                  << " estimate=" << estimate;
        // The sketch's own, tighter bound (plus rounding slack).
        EXPECT_LE(relative, LogSketch::relative_error() + 1e-9) << name << " q=" << q;
    }
    EXPECT_EQ(sketch.min_ns(), data.front());
    EXPECT_EQ(sketch.max_ns(), data.back());
    std::uint64_t sum = 0;
    for (auto v : data)
        sum += v;
    EXPECT_EQ(sketch.sum_ns(), sum);
}

TEST(LogSketchAccuracy, Uniform) {
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> dist(0.001, 1.0);
    std::vector<std::uint64_t> data(kSamples);
    for (auto& v : data)
        v = to_ns(dist(rng));
    expect_accurate(std::move(data), "uniform 1ms-1s");
}

TEST(LogSketchAccuracy, LogNormal) {
    std::mt19937_64 rng(2);
    std::lognormal_distribution<double> dist(std::log(0.020), 1.0);  // median 20 ms
    std::vector<std::uint64_t> data(kSamples);
    for (auto& v : data)
        v = to_ns(dist(rng));
    expect_accurate(std::move(data), "lognormal");
}

TEST(LogSketchAccuracy, ParetoHeavyTail) {
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    const double xm = 0.001, alpha = 1.2;  // 1 ms scale; the 0.999 quantile is ~300 ms
    std::vector<std::uint64_t> data(kSamples);
    for (auto& v : data)
        v = to_ns(xm / std::pow(1.0 - u(rng), 1.0 / alpha));
    expect_accurate(std::move(data), "pareto");
}

TEST(LogSketchAccuracy, Bimodal) {
    std::mt19937_64 rng(4);
    std::normal_distribution<double> fast(0.005, 0.0005), slow(0.200, 0.020);
    std::bernoulli_distribution coin(0.5);
    std::vector<std::uint64_t> data(kSamples);
    for (auto& v : data)
        v = to_ns(coin(rng) ? fast(rng) : slow(rng));
    expect_accurate(std::move(data), "bimodal");
}

TEST(LogSketchAccuracy, Constant) {
    std::vector<std::uint64_t> data(kSamples, 42'000'000);
    LogSketch sketch;
    for (auto v : data)
        sketch.insert(v);
    for (double q : kQuantiles)
        EXPECT_EQ(sketch.quantile_ns(q), 42'000'000.0) << q;
    expect_accurate(std::move(data), "constant");
}

TEST(LogSketchAccuracy, SpansWholeClampRange) {
    // Log-uniform over 1 us .. 1 h: every bucket of the range is used.
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> exponent(std::log(1e-6), std::log(3600.0));
    std::vector<std::uint64_t> data(kSamples);
    for (auto& v : data)
        v = std::clamp<std::uint64_t>(to_ns(std::exp(exponent(rng))), 1'000, 3'600'000'000'000);
    expect_accurate(std::move(data), "log-uniform 1us-1h");
}

TEST(LogSketchBuckets, IndexMatchesLogarithm) {
    std::mt19937_64 rng(6);
    std::uniform_int_distribution<int> shift(0, 62);
    for (int i = 0; i < 200'000; ++i) {
        const std::uint64_t v = (rng() >> shift(rng)) | 1;
        const int index = LogSketch::bucket_index(v);
        const long double exact =
            std::log2(static_cast<long double>(v)) * LogSketch::kBucketsPerOctave;
        // Exactly floor(log2(v) * 64), except within rounding distance of an edge.
        if (std::abs(exact - std::round(exact)) > 1e-9L) {
            ASSERT_EQ(index, static_cast<int>(std::floor(exact))) << v;
        }
    }
    EXPECT_EQ(LogSketch::bucket_index(1), 0);
    EXPECT_EQ(LogSketch::bucket_index(2), 64);
    EXPECT_EQ(LogSketch::bucket_index(1024), 640);
    EXPECT_EQ(LogSketch::bucket_index(std::numeric_limits<std::uint64_t>::max()), 63 * 64 + 63);
}

TEST(LogSketchBuckets, RepresentativeWithinBoundOfEdges) {
    for (int index = LogSketch::kMinIndex; index <= LogSketch::kMaxIndex; ++index) {
        const double lo = LogSketch::bucket_lower_bound(index);
        const double hi = LogSketch::bucket_lower_bound(index + 1);
        const double rep = LogSketch::bucket_representative(index);
        ASSERT_LE((rep - lo) / lo, LogSketch::relative_error() + 1e-12);
        ASSERT_LE((hi - rep) / hi, LogSketch::relative_error() + 1e-12);
    }
    EXPECT_LT(LogSketch::relative_error(), 0.0055);
}

std::vector<std::pair<int, std::uint32_t>> buckets_of(const LogSketch& s) {
    std::vector<std::pair<int, std::uint32_t>> out;
    s.for_each_bucket([&](int i, std::uint32_t c) { out.emplace_back(i, c); });
    return out;
}

TEST(LogSketchMerge, EqualsInsertAll) {
    std::mt19937_64 rng(7);
    std::lognormal_distribution<double> dist(std::log(0.050), 1.5);
    LogSketch all;
    std::vector<LogSketch> parts(8);
    for (std::size_t i = 0; i < 200'000; ++i) {
        // Shift part 3 far up and part 5 far down so ranges must grow both ways when merged.
        double s = dist(rng);
        if (i % 8 == 3) s *= 1000;
        if (i % 8 == 5) s /= 1000;
        const std::uint64_t v = to_ns(s);
        all.insert(v);
        parts[i % 8].insert(v);
    }
    LogSketch merged;
    for (const auto& p : parts)
        merged.merge(p);
    EXPECT_EQ(buckets_of(merged), buckets_of(all));
    EXPECT_EQ(merged.count(), all.count());
    EXPECT_EQ(merged.sum_ns(), all.sum_ns());
    EXPECT_EQ(merged.min_ns(), all.min_ns());
    EXPECT_EQ(merged.max_ns(), all.max_ns());
    EXPECT_EQ(merged.underflow_count(), all.underflow_count());
    EXPECT_EQ(merged.overflow_count(), all.overflow_count());
    for (double q : kQuantiles)
        EXPECT_EQ(merged.quantile_ns(q), all.quantile_ns(q)) << q;
}

TEST(LogSketchMerge, WithEmptyIsIdentity) {
    LogSketch a, empty;
    a.insert(5'000'000);
    a.merge(empty);
    EXPECT_EQ(a.count(), 1u);
    empty.merge(a);
    EXPECT_EQ(buckets_of(empty), buckets_of(a));
    EXPECT_EQ(empty.min_ns(), 5'000'000u);
}

TEST(LogSketchEdges, Empty) {
    LogSketch s;
    EXPECT_TRUE(s.empty());
    EXPECT_TRUE(std::isnan(s.quantile_ns(0.5)));
    EXPECT_EQ(s.count(), 0u);
    EXPECT_EQ(s.min_ns(), 0u);
    EXPECT_EQ(s.max_ns(), 0u);
}

TEST(LogSketchEdges, ZeroIsClampedAndCounted) {
    LogSketch s;
    s.insert(0);
    EXPECT_EQ(s.count(), 1u);
    EXPECT_EQ(s.underflow_count(), 1u);
    EXPECT_EQ(s.quantile_ns(0.5), 0.0);  // clamped into [min, max]
}

TEST(LogSketchEdges, NegativeAndNaNSecondsAreRejected) {
    LogSketch s;
    s.insert_seconds(-1.0);
    s.insert_seconds(std::numeric_limits<double>::quiet_NaN());
    s.insert_seconds(-std::numeric_limits<double>::infinity());
    EXPECT_EQ(s.count(), 0u);
    EXPECT_EQ(s.rejected_count(), 3u);
    s.insert_seconds(0.25);
    EXPECT_EQ(s.count(), 1u);
    EXPECT_EQ(s.sum_ns(), 250'000'000u);
}

TEST(LogSketchEdges, HugeValuesAreClampedAndSumSaturates) {
    LogSketch s;
    s.insert(std::numeric_limits<std::uint64_t>::max());
    s.insert(std::numeric_limits<std::uint64_t>::max());
    s.insert_seconds(std::numeric_limits<double>::infinity());
    s.insert_seconds(1e300);
    EXPECT_EQ(s.count(), 4u);
    EXPECT_EQ(s.overflow_count(), 4u);
    EXPECT_EQ(s.sum_ns(), std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(s.max_ns(), std::numeric_limits<std::uint64_t>::max());
    // All samples sit in the top clamp bucket; the estimate is clamped into [min, max].
    EXPECT_EQ(s.quantile_ns(0.5), static_cast<double>(std::numeric_limits<std::uint64_t>::max()));
    s.insert(1'000'000);
    EXPECT_EQ(s.quantile_ns(0.0), 1'000'000.0);
    EXPECT_NEAR(s.quantile_ns(0.5), 3.6e12, 3.6e12 * LogSketch::relative_error());
}

TEST(LogSketchEdges, QuantileArgumentOutOfRange) {
    LogSketch s;
    for (std::uint64_t v = 1; v <= 100; ++v)
        s.insert(v * 1'000'000);
    EXPECT_EQ(s.quantile_ns(-3), 1'000'000.0);
    EXPECT_EQ(s.quantile_ns(0), 1'000'000.0);
    EXPECT_EQ(s.quantile_ns(1), 100'000'000.0);
    EXPECT_EQ(s.quantile_ns(7), 100'000'000.0);
    EXPECT_TRUE(std::isnan(s.quantile_ns(std::numeric_limits<double>::quiet_NaN())));
}

TEST(LogSketchEdges, ClearKeepsNothingButAllocation) {
    LogSketch s;
    for (int i = 0; i < 1000; ++i)
        s.insert(1'000'000 + i * 1000);
    const auto bytes = s.memory_bytes();
    s.clear();
    EXPECT_TRUE(s.empty());
    EXPECT_TRUE(buckets_of(s).empty());
    EXPECT_EQ(s.memory_bytes(), bytes);
    s.insert(7'000);
    EXPECT_EQ(s.min_ns(), 7'000u);
    EXPECT_EQ(s.max_ns(), 7'000u);
}

TEST(LogSketchMemory, TypicalSpanFitsInEightKilobytes) {
    // 100 us .. 10 s, log-uniform, inserted in an adversarial order (alternating extremes).
    std::mt19937_64 rng(8);
    std::uniform_real_distribution<double> exponent(std::log(1e-4), std::log(10.0));
    LogSketch s;
    s.insert(100'000);
    s.insert(10'000'000'000);
    for (int i = 0; i < 100'000; ++i)
        s.insert(to_ns(std::exp(exponent(rng))));
    EXPECT_LE(s.memory_bytes(), 8u * 1024u);
}

TEST(LogSketchMemory, BoundedWhateverTheInput) {
    LogSketch s;
    std::mt19937_64 rng(9);
    for (int i = 0; i < 100'000; ++i)
        s.insert(rng() >> (rng() % 64));
    EXPECT_LE(s.memory_bytes(), sizeof(LogSketch) + LogSketch::kMaxBuckets * sizeof(std::uint32_t));
    EXPECT_LE(LogSketch::kMaxBuckets * sizeof(std::uint32_t), 8192u);
}

// A capped sketch lowers its scale as its values spread, never holds more than its cap, and
// keeps to the bound of the scale it ends at.
TEST(LogSketchCapped, StaysWithinItsCapAndTheBoundOfItsScale) {
    for (const auto& [low, high, want_scale] :
         {std::tuple{1e-4, 4e-4, 6}, std::tuple{1e-4, 2e-3, 5}, std::tuple{1e-4, 5e-2, 4},
          std::tuple{2e-5, 4.0, 3}, std::tuple{1e-7, 1e5, 2}}) {
        std::mt19937_64 rng(10);
        std::uniform_real_distribution<double> exponent(std::log(low), std::log(high));
        LogSketch s(160);
        std::vector<std::uint64_t> data;
        for (int i = 0; i < 200'000; ++i) {
            data.push_back(to_ns(std::exp(exponent(rng))));
            s.insert(data.back());
        }
        EXPECT_LE(s.memory_bytes(), sizeof(LogSketch) + 160 * sizeof(std::uint32_t)) << high;
        EXPECT_EQ(s.scale(), want_scale) << low << " " << high;
        std::sort(data.begin(), data.end());
        for (double q : kQuantiles) {
            // Clamped values (outside 1 us - 1 h) are only promised as clamped.
            const double exact = std::clamp(static_cast<double>(exact_quantile(data, q)),
                                            static_cast<double>(LogSketch::kMinValueNs),
                                            static_cast<double>(LogSketch::kMaxValueNs));
            const double estimate =
                std::clamp(s.quantile_ns(q), static_cast<double>(LogSketch::kMinValueNs),
                           static_cast<double>(LogSketch::kMaxValueNs));
            EXPECT_LE(std::abs(estimate - exact) / exact, s.error_bound() + 1e-9)
                << high << " q=" << q;
        }
        EXPECT_EQ(s.count(), data.size());
    }
}

TEST(LogSketchCapped, MergeTakesTheCoarserScaleAndLosesNothing) {
    LogSketch narrow(160), wide(160), all(160);
    for (std::uint64_t v = 100'000; v < 300'000; v += 1'000) {
        narrow.insert(v);
        all.insert(v);
    }
    for (std::uint64_t v = 10'000; v < 2'000'000'000; v = v * 11 / 10) {
        wide.insert(v);
        all.insert(v);
    }
    ASSERT_EQ(narrow.scale(), 6);
    ASSERT_LT(wide.scale(), 6);
    LogSketch merged(160);
    merged.merge(narrow);
    merged.merge(wide);
    EXPECT_EQ(merged.scale(), wide.scale());
    EXPECT_EQ(merged.count(), all.count());
    EXPECT_EQ(merged.sum_ns(), all.sum_ns());
    // Same scale, same buckets: the same sketch as inserting everything into one.
    for (double q : kQuantiles)
        EXPECT_EQ(merged.quantile_ns(q), all.quantile_ns(q)) << q;
    // A finer sketch merged into a coarse one maps its buckets down.
    LogSketch coarse_first(160);
    coarse_first.merge(wide);
    coarse_first.merge(narrow);
    for (double q : kQuantiles)
        EXPECT_EQ(coarse_first.quantile_ns(q), all.quantile_ns(q)) << q;
}

TEST(LogSketchCapped, ClearReturnsToTheFinestScale) {
    LogSketch s(160);
    s.insert(1'000);
    s.insert(1'000'000'000);
    ASSERT_LT(s.scale(), 6);
    s.clear();
    EXPECT_EQ(s.scale(), 6);
    s.insert(5'000'000);
    EXPECT_NEAR(s.quantile_ns(0.5), 5e6, 5e6 * LogSketch::relative_error());
    EXPECT_LE(s.memory_bytes(), sizeof(LogSketch) + 160 * sizeof(std::uint32_t));
}

}  // namespace
}  // namespace loupe::stats
