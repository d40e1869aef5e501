// Hot paths of the quantile sketch. Run: build/tools/bench/loupe_benchmarks (see
// docs/BENCHMARKS.md).
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "stats/log_sketch.h"
#include "stats/windowed_sketch.h"

namespace {

using loupe::stats::LogSketch;

// Latencies like a web service's: lognormal around 20 ms, wide tail.
std::vector<std::uint64_t> latencies(std::size_t n) {
    std::mt19937_64 rng(42);
    std::lognormal_distribution<double> dist(std::log(0.020), 1.2);
    std::vector<std::uint64_t> out(n);
    for (auto& v : out)
        v = static_cast<std::uint64_t>(dist(rng) * 1e9);
    return out;
}

void BM_SketchInsert(benchmark::State& state) {
    const auto data = latencies(1 << 16);
    LogSketch sketch;
    std::size_t i = 0;
    for (auto _ : state) {
        sketch.insert(data[i++ & (data.size() - 1)]);
    }
    benchmark::DoNotOptimize(sketch.count());
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SketchInsert);

void BM_WindowedInsert(benchmark::State& state) {
    const auto data = latencies(1 << 16);
    loupe::stats::WindowedSketch window;
    std::size_t i = 0;
    std::int64_t now = 0;
    for (auto _ : state) {
        now += 1000;  // 1 us between events: rotates slices as a busy series would
        window.insert(data[i++ & (data.size() - 1)], std::chrono::nanoseconds(now));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WindowedInsert);

void BM_SketchMerge(benchmark::State& state) {
    const auto data = latencies(100'000);
    LogSketch source;
    for (auto v : data)
        source.insert(v);
    LogSketch target;
    for (auto _ : state) {
        target.clear();
        target.merge(source);
        benchmark::DoNotOptimize(target.count());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SketchMerge);

void BM_SketchQuantile(benchmark::State& state) {
    const auto data = latencies(100'000);
    LogSketch sketch;
    for (auto v : data)
        sketch.insert(v);
    for (auto _ : state) {
        benchmark::DoNotOptimize(sketch.quantile_ns(0.99));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SketchQuantile);

// The full windowed read of one series: merge of 6 slices (1 minute) then p50/p95/p99.
void BM_WindowedPercentiles1m(benchmark::State& state) {
    const auto data = latencies(1 << 16);
    loupe::stats::WindowedSketch window;
    for (std::size_t i = 0; i < data.size(); ++i)
        window.insert(data[i], std::chrono::milliseconds(static_cast<std::int64_t>(i)));
    const auto now = std::chrono::milliseconds(static_cast<std::int64_t>(data.size()));
    LogSketch scratch;
    for (auto _ : state) {
        window.window(std::chrono::minutes(1), now, scratch);
        benchmark::DoNotOptimize(scratch.quantile_ns(0.5) + scratch.quantile_ns(0.95) +
                                 scratch.quantile_ns(0.99));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WindowedPercentiles1m);

// Not a speed figure: reports the bytes one sketch holds for a distribution spanning 100 us - 10 s
// (the budget is 8 KB per series), as the counter `bytes`.
void BM_SketchMemory100usTo10s(benchmark::State& state) {
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> exponent(std::log(1e-4), std::log(10.0));
    LogSketch sketch;
    for (auto _ : state) {
        sketch.clear();
        for (int i = 0; i < 10'000; ++i)
            sketch.insert(static_cast<std::uint64_t>(std::exp(exponent(rng)) * 1e9));
    }
    state.counters["bytes"] = static_cast<double>(sketch.memory_bytes());
}
BENCHMARK(BM_SketchMemory100usTo10s);

}  // namespace
