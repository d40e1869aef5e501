// Hot path of the Redis parser: commands parsed, matched to their replies and reported, on a
// redis-benchmark-like GET/SET workload (16-byte random keys, 3-byte values, half the GETs
// missing). Items are operations (one command and its reply). Target: >= 2 M operations/s on
// one core (docs/BENCHMARKS.md).
// Run: build/tools/bench/loupe_benchmarks --benchmark_filter=Redis
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "protocols/redis/redis.h"

namespace {

using loupe::protocols::Direction;
using loupe::protocols::Request;
using loupe::protocols::Segment;
using loupe::protocols::Side;

constexpr std::size_t kHeadBytes = 4096;  // what the capture keeps of each read/write

class CountingSink : public loupe::protocols::RequestSink {
  public:
    void on_request(const Request& r) override {
        ++operations;
        hits += r.cache_hits;
        bytes += r.operation.size();
    }
    std::uint64_t operations = 0;
    std::uint64_t hits = 0;
    std::uint64_t bytes = 0;
};

std::string key(std::uint64_t n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "key:%012llu", static_cast<unsigned long long>(n));
    return buf;
}

std::string command(bool set, const std::string& k) {
    if (set) return "*3\r\n$3\r\nSET\r\n$16\r\n" + k + "\r\n$3\r\nxxx\r\n";
    return "*2\r\n$3\r\nGET\r\n$16\r\n" + k + "\r\n";
}

// Batches of `depth` commands per write and their replies per read, as redis-benchmark -P depth.
struct Workload {
    std::vector<std::string> writes;
    std::vector<std::string> reads;
    std::uint64_t operations = 0;
};

Workload workload(std::size_t depth) {
    Workload w;
    std::uint64_t n = 12345;
    for (int batch = 0; batch < 64; ++batch) {
        std::string out;
        std::string in;
        for (std::size_t i = 0; i < depth; ++i) {
            n = n * 6364136223846793005ull + 1442695040888963407ull;
            const bool set = (i + batch) % 2 == 0;
            out += command(set, key((n >> 33) % 100000));
            in += set ? "+OK\r\n" : ((n >> 20) % 2 ? "$3\r\nxxx\r\n" : "$-1\r\n");
            ++w.operations;
        }
        w.writes.push_back(out);
        w.reads.push_back(in);
    }
    return w;
}

Segment capture(Direction d, std::string_view data, std::uint64_t ts) {
    Segment s;
    s.direction = d;
    s.timestamp_ns = ts;
    s.length = data.size();
    s.head = {reinterpret_cast<const std::uint8_t*>(data.data()),
              std::min(data.size(), kHeadBytes)};
    return s;
}

void run(benchmark::State& state, Side side) {
    const Workload w = workload(static_cast<std::size_t>(state.range(0)));
    auto parser = loupe::redis::make_parser(side);
    const Direction commands = side == Side::kServer ? Direction::kIngress : Direction::kEgress;
    const Direction replies = side == Side::kServer ? Direction::kEgress : Direction::kIngress;
    CountingSink sink;
    std::uint64_t now = 1'000'000;
    for (auto _ : state) {
        for (std::size_t b = 0; b < w.writes.size(); ++b) {
            parser->on_segment(capture(commands, w.writes[b], now += 1000), sink);
            parser->on_segment(capture(replies, w.reads[b], now += 20000), sink);
        }
    }
    const std::uint64_t expected = w.operations * static_cast<std::uint64_t>(state.iterations());
    if (sink.operations != expected || parser->stats().unmatched_responses != 0)
        state.SkipWithError("an operation was not matched");
    benchmark::DoNotOptimize(sink.bytes);
    state.SetItemsProcessed(static_cast<std::int64_t>(expected));
}

void BM_RedisServerPipelined(benchmark::State& state) {
    run(state, Side::kServer);
}
void BM_RedisClientPipelined(benchmark::State& state) {
    run(state, Side::kClient);
}
// Arg: commands per write (redis-benchmark -P).
BENCHMARK(BM_RedisServerPipelined)->Arg(1)->Arg(16);
BENCHMARK(BM_RedisClientPipelined)->Arg(1)->Arg(16);

}  // namespace
