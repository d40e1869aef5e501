#include "stats/windowed_sketch.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include <gtest/gtest.h>

namespace loupe::stats {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using Nanos = std::chrono::nanoseconds;

// The injected clock: a plain value that the test moves.
struct FakeClock {
    Nanos now{0};
    void advance(Nanos d) { now += d; }
};

// The exact sample of rank floor(q*(n-1)), as LogSketch::quantile_ns promises to approximate.
double exact_quantile(std::vector<std::uint64_t> values, double q) {
    std::sort(values.begin(), values.end());
    return static_cast<double>(
        values[static_cast<std::size_t>(q * static_cast<double>(values.size() - 1))]);
}

TEST(WindowedSketch, WindowsMergeTheSlicesTheyCover) {
    WindowedSketch w(seconds(10), 30);
    FakeClock clock;
    clock.now = seconds(1000);  // epoch 100
    std::vector<std::uint64_t> last_minute, last_five;
    // One value per second for 5 minutes, each second a different latency (1-97 ms).
    for (int s = 0; s < 300; ++s) {
        const std::uint64_t value = 1'000'000ull * (1 + s % 97);
        w.insert(value, clock.now);
        // At the end (t = 1299 s, epoch 129) the 1m window holds epochs 124..129 (seconds
        // 240..299 of the loop) in 10-second slices, and the 5m window adds the whole minutes
        // older than those within 5 minutes: epochs 102..123 (seconds 20..239). Epochs 100 and
        // 101 belong to a minute that started more than 5 minutes ago.
        if (s >= 240) last_minute.push_back(value);
        if (s >= 20) last_five.push_back(value);
        clock.advance(seconds(1));
    }
    clock.now -= seconds(1);
    const LogSketch one = w.window(minutes(1), clock.now);
    const LogSketch five = w.window(minutes(5), clock.now);
    ASSERT_EQ(one.count(), 60u);
    ASSERT_EQ(five.count(), 280u);
    for (double q : {0.5, 0.95, 0.99}) {
        EXPECT_NEAR(one.quantile_ns(q), exact_quantile(last_minute, q),
                    exact_quantile(last_minute, q) * one.error_bound())
            << q;
        EXPECT_NEAR(five.quantile_ns(q), exact_quantile(last_five, q),
                    exact_quantile(last_five, q) * five.error_bound())
            << q;
    }
}

TEST(WindowedSketch, NarrowSeriesKeepTheFinestScale) {
    // 80-400 us (a spread of 5x) fits 160 buckets at scale 6: the window is the very sketch
    // that inserting every value gives.
    WindowedSketch w(seconds(10), 30);
    LogSketch expected;
    FakeClock clock;
    for (int s = 0; s < 60; ++s) {
        const std::uint64_t value = 80'000 + 5'333ull * static_cast<std::uint64_t>(s);
        w.insert(value, clock.now);
        expected.insert(value);
        clock.advance(seconds(1));
    }
    clock.now -= seconds(1);
    const LogSketch one = w.window(minutes(1), clock.now);
    EXPECT_EQ(one.scale(), LogSketch::kScale);
    for (double q : {0.0, 0.5, 0.95, 0.99, 1.0})
        EXPECT_EQ(one.quantile_ns(q), expected.quantile_ns(q)) << q;
}

TEST(WindowedSketch, FiveMinuteWindowCoversBetween250And300Seconds) {
    WindowedSketch w(seconds(10), 30);
    // One value per 10-second slice, from epoch 0 to 59; the 5m window at epoch c must count
    // between 25 and 30 of them, and never one older than 30 slices.
    for (std::int64_t c = 0; c < 60; ++c) {
        w.insert(1'000'000, seconds(10 * c));
        const auto n = w.window(minutes(5), seconds(10 * c + 5)).count();
        const std::uint64_t available =
            static_cast<std::uint64_t>(std::min<std::int64_t>(c + 1, 30));
        EXPECT_LE(n, available) << c;
        EXPECT_GE(n, std::min<std::uint64_t>(available, 25)) << c;
    }
}

TEST(WindowedSketch, UnderEightKibibytesWhateverTheInput) {
    // The worst case: every slice of the 5 minutes full of values spread over the whole clamp
    // range (and beyond it), so every slice's sketch reaches its cap.
    WindowedSketch w(seconds(10), 30);
    std::uint64_t value = 1;
    for (int s = 0; s < 400; ++s)
        for (int i = 0; i < 2'000; ++i) {
            value = value * 6364136223846793005ull + 1442695040888963407ull;
            // log-uniform between 100 ns and ~5 h
            const std::uint64_t v = 100ull << ((value >> 33) % 38);
            w.insert(v + (value >> 50), seconds(s));
        }
    EXPECT_LE(w.memory_bytes(), 8192u);
    const LogSketch five = w.window(minutes(5), seconds(399));
    EXPECT_GT(five.count(), 0u);
    EXPECT_LE(five.memory_bytes(), LogSketch().memory_bytes() + 4 * LogSketch::kMaxBuckets);
}

TEST(WindowedSketch, OldSlicesLeaveTheWindow) {
    WindowedSketch w(seconds(10), 30);
    FakeClock clock;
    for (int i = 0; i < 100; ++i)
        w.insert(5'000'000, clock.now + seconds(i % 10));  // epoch 0
    EXPECT_EQ(w.window(minutes(1), seconds(5)).count(), 100u);
    EXPECT_EQ(w.window(minutes(1), seconds(59)).count(), 100u);  // epochs 0..5
    EXPECT_EQ(w.window(minutes(1), seconds(60)).count(), 0u);    // epochs 1..6
    EXPECT_EQ(w.window(minutes(5), seconds(299)).count(), 100u);
    EXPECT_EQ(w.window(minutes(5), seconds(300)).count(), 0u);
    EXPECT_FALSE(w.idle(seconds(299)));
    EXPECT_TRUE(w.idle(seconds(300)));
}

TEST(WindowedSketch, RecycledSlotStartsEmpty) {
    WindowedSketch w(seconds(10), 6);
    w.insert(1'000'000, seconds(0));                           // epoch 0, slot 0
    w.insert(2'000'000, seconds(60));                          // epoch 6, slot 0 again
    const LogSketch one = w.window(seconds(60), seconds(60));  // epochs 1..6
    EXPECT_EQ(one.count(), 1u);
    EXPECT_EQ(one.min_ns(), 2'000'000u);
}

TEST(WindowedSketch, LateValuesAreCountedNotMisfiled) {
    WindowedSketch w(seconds(10), 6);
    w.insert(1'000'000, seconds(100));  // epoch 10
    w.insert(1'000'000, seconds(45));   // epoch 4: older than the ring (5..10)
    EXPECT_EQ(w.late_count(), 1u);
    w.insert(1'000'000, seconds(55));  // epoch 5: still in the ring
    EXPECT_EQ(w.late_count(), 1u);
    EXPECT_EQ(w.window(seconds(60), seconds(100)).count(), 2u);
    EXPECT_EQ(w.window(seconds(10), seconds(100)).count(), 1u);
}

TEST(WindowedSketch, SpanLongerThanRingIsClamped) {
    WindowedSketch w(seconds(10), 6);
    for (int s = 0; s < 120; s += 10)
        w.insert(3'000'000, seconds(s));
    EXPECT_EQ(w.window(minutes(60), seconds(119)).count(), 6u);
    EXPECT_EQ(w.window(Nanos(0), seconds(119)).count(), 1u);  // at least the current slice
}

TEST(WindowedSketch, DegenerateConstructionIsSafe) {
    WindowedSketch w(Nanos(0), 0);
    EXPECT_EQ(w.slice_count(), 1u);
    w.insert(1'000'000, Nanos(5));
    EXPECT_EQ(w.window(seconds(1), Nanos(5)).count(), 1u);
    w.insert(1'000'000, Nanos(-5));  // negative time: late, never UB
    EXPECT_EQ(w.late_count(), 1u);
}

}  // namespace
}  // namespace loupe::stats
