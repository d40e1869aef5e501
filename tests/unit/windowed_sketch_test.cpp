#include "stats/windowed_sketch.h"

#include <chrono>

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

TEST(WindowedSketch, WindowsAreExactMergesOfSlices) {
    WindowedSketch w(seconds(10), 30);
    FakeClock clock;
    clock.now = seconds(1000);  // epoch 100
    LogSketch expected_1m, expected_5m;
    // One value per second for 5 minutes, each second a different latency.
    for (int s = 0; s < 300; ++s) {
        const std::uint64_t value = 1'000'000ull * (1 + s % 97);
        w.insert(value, clock.now);
        // At the end (t = 1299 s, epoch 129) the 1m window holds epochs 124..129 and the 5m
        // window epochs 100..129: seconds 240..299 and 0..299 of the loop.
        if (s >= 240) expected_1m.insert(value);
        expected_5m.insert(value);
        clock.advance(seconds(1));
    }
    clock.now -= seconds(1);
    const LogSketch one = w.window(minutes(1), clock.now);
    const LogSketch five = w.window(minutes(5), clock.now);
    EXPECT_EQ(one.count(), 60u);
    EXPECT_EQ(five.count(), 300u);
    for (double q : {0.5, 0.95, 0.99}) {
        EXPECT_EQ(one.quantile_ns(q), expected_1m.quantile_ns(q)) << q;
        EXPECT_EQ(five.quantile_ns(q), expected_5m.quantile_ns(q)) << q;
    }
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
