// Hot path of the PostgreSQL parser: messages framed, statements matched to their replies and
// reported, on pgbench-like traffic (the TPC-B-like script's statements; pgbench's -M prepared,
// -M extended and -M simple). Items are operations (one statement and its reply). Target:
// >= 1 M operations/s on one core (docs/BENCHMARKS.md).
// Run: build/tools/bench/loupe_benchmarks --benchmark_filter=Postgres
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "../../tests/unit/postgres_wire.h"
#include "protocols/postgres/postgres.h"

namespace {

using loupe::protocols::Direction;
using loupe::protocols::Request;
using loupe::protocols::Segment;
using loupe::protocols::Side;
namespace wire = loupe::postgres::wire;

constexpr std::size_t kHeadBytes = 16384;  // the PostgreSQL copy cap

class CountingSink : public loupe::protocols::RequestSink {
  public:
    void on_request(const Request& r) override {
        ++operations;
        bytes += r.operation.size() + r.target.size();
    }
    std::uint64_t operations = 0;
    std::uint64_t bytes = 0;
};

// pgbench's TPC-B-like transaction, by statement: SQL with $n parameters, and its reply tag.
struct Statement {
    std::string_view sql;
    std::string_view tag;
    bool row;
};
constexpr Statement kScript[] = {
    {"BEGIN", "BEGIN", false},
    {"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", "UPDATE 1", false},
    {"SELECT abalance FROM pgbench_accounts WHERE aid = $1", "SELECT 1", true},
    {"UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2", "UPDATE 1", false},
    {"UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2", "UPDATE 1", false},
    {"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, "
     "CURRENT_TIMESTAMP)",
     "INSERT 0 1", false},
    {"END", "COMMIT", false},
};

enum class Mode { kPrepared, kExtended, kSimple };

// The literal text pgbench -M simple sends: $n replaced by numbers that vary.
std::string with_literals(std::string_view sql, std::uint64_t n) {
    std::string out;
    for (std::size_t i = 0; i < sql.size(); ++i) {
        if (sql[i] == '$') {
            out += std::to_string(n % 100000 + i);
            ++i;
        } else {
            out += sql[i];
        }
    }
    return out;
}

struct Workload {
    std::vector<std::string> writes;
    std::vector<std::string> reads;
    std::uint64_t operations = 0;
};

Workload workload(Mode mode) {
    Workload w;
    if (mode == Mode::kPrepared) {  // pgbench prepares each statement once, on first use
        std::string out, in;
        for (std::size_t i = 0; i < std::size(kScript); ++i) {
            out += wire::parse("P0_" + std::to_string(i), kScript[i].sql);
            in += wire::parse_complete();
        }
        w.writes.push_back(out + wire::sync());
        w.reads.push_back(in + wire::ready());
    }
    std::uint64_t n = 12345;
    for (int tx = 0; tx < 64; ++tx) {
        for (std::size_t i = 0; i < std::size(kScript); ++i) {
            n = n * 6364136223846793005ull + 1442695040888963407ull;
            const Statement& s = kScript[i];
            std::string reply;
            std::string request;
            switch (mode) {
                case Mode::kPrepared:
                    request = wire::bind("", "P0_" + std::to_string(i)) + wire::execute("") +
                              wire::sync();
                    reply = wire::bind_complete();
                    break;
                case Mode::kExtended:
                    request = wire::parse("", s.sql) + wire::bind("", "") +
                              wire::describe('P', "") + wire::execute("") + wire::sync();
                    reply = wire::parse_complete() + wire::bind_complete() +
                            (s.row ? wire::row_description() : wire::no_data());
                    break;
                case Mode::kSimple:
                    request = wire::query(with_literals(s.sql, n >> 33));
                    if (s.row) reply = wire::row_description();
                    break;
            }
            if (s.row) reply += wire::data_row("12345");
            reply += wire::complete(s.tag) +
                     wire::ready(i == 0 || i + 1 < std::size(kScript) ? 'T' : 'I');
            w.writes.push_back(request);
            w.reads.push_back(reply);
            ++w.operations;
        }
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

void run(benchmark::State& state, Side side, Mode mode) {
    const Workload w = workload(mode);
    auto parser = loupe::postgres::make_parser(side);
    const Direction requests = side == Side::kServer ? Direction::kIngress : Direction::kEgress;
    const Direction replies = side == Side::kServer ? Direction::kEgress : Direction::kIngress;
    CountingSink sink;
    std::uint64_t now = 1'000'000;
    const std::string hello = wire::startup({{"user", "bench"}, {"database", "bench"}});
    const std::string welcome = wire::startup_reply();
    parser->on_segment(capture(requests, hello, now += 1000), sink);
    parser->on_segment(capture(replies, welcome, now += 1000), sink);
    // Prepared: the Parses once (pgbench prepares on first use), outside the timing.
    std::size_t first = 0;
    if (mode == Mode::kPrepared) {
        parser->on_segment(capture(requests, w.writes[0], now += 1000), sink);
        parser->on_segment(capture(replies, w.reads[0], now += 1000), sink);
        first = 1;
    }
    for (auto _ : state) {
        for (std::size_t b = first; b < w.writes.size(); ++b) {
            parser->on_segment(capture(requests, w.writes[b], now += 1000), sink);
            parser->on_segment(capture(replies, w.reads[b], now += 20000), sink);
        }
    }
    const std::uint64_t expected = w.operations * static_cast<std::uint64_t>(state.iterations());
    if (sink.operations != expected || parser->stats().unmatched_responses != 0)
        state.SkipWithError("an operation was not matched");
    benchmark::DoNotOptimize(sink.bytes);
    state.SetItemsProcessed(static_cast<std::int64_t>(expected));
}

void BM_PostgresServerPrepared(benchmark::State& state) {
    run(state, Side::kServer, Mode::kPrepared);
}
void BM_PostgresServerExtended(benchmark::State& state) {
    run(state, Side::kServer, Mode::kExtended);
}
void BM_PostgresServerSimple(benchmark::State& state) {
    run(state, Side::kServer, Mode::kSimple);
}
void BM_PostgresClientPrepared(benchmark::State& state) {
    run(state, Side::kClient, Mode::kPrepared);
}
BENCHMARK(BM_PostgresServerPrepared);
BENCHMARK(BM_PostgresServerExtended);
BENCHMARK(BM_PostgresServerSimple);
BENCHMARK(BM_PostgresClientPrepared);

}  // namespace
