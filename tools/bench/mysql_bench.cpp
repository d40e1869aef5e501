// Hot path of the MySQL parser: commands parsed, matched to their replies and reported, on a
// sysbench oltp_point_select-like workload: one SELECT per write, a one-row result set per read
// (CLIENT_DEPRECATE_EOF), as text queries (COM_QUERY: the statement summarised each time) or as
// executions of a prepared statement (COM_STMT_EXECUTE: its shape looked up by id). Items are
// operations. Target: >= 1 M operations/s on one core (docs/BENCHMARKS.md).
// Run: build/tools/bench/loupe_benchmarks --benchmark_filter=Mysql
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "protocols/mysql/mysql.h"

namespace {

using loupe::protocols::Direction;
using loupe::protocols::Request;
using loupe::protocols::Segment;
using loupe::protocols::Side;
using Bytes = std::vector<std::uint8_t>;

class CountingSink : public loupe::protocols::RequestSink {
  public:
    void on_request(const Request& r) override {
        ++operations;
        bytes += r.operation.size() + r.target.size();
    }
    std::uint64_t operations = 0;
    std::uint64_t bytes = 0;
};

Bytes packet(std::uint8_t seq, const std::string& payload) {
    Bytes b(4 + payload.size());
    b[0] = static_cast<std::uint8_t>(payload.size());
    b[1] = static_cast<std::uint8_t>(payload.size() >> 8);
    b[2] = static_cast<std::uint8_t>(payload.size() >> 16);
    b[3] = seq;
    for (std::size_t i = 0; i < payload.size(); ++i)
        b[4 + i] = static_cast<std::uint8_t>(payload[i]);
    return b;
}

void append(Bytes& to, const Bytes& b) {
    to.insert(to.end(), b.begin(), b.end());
}

std::string le32(std::uint32_t v) {
    return {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
            static_cast<char>(v >> 24)};
}

Segment capture(Direction d, const Bytes& data, std::uint64_t ts) {
    Segment s;
    s.direction = d;
    s.timestamp_ns = ts;
    s.length = data.size();
    s.head = data;
    return s;
}

void run(benchmark::State& state, Side side, bool prepared) {
    auto parser = loupe::mysql::make_parser(side);
    const Direction commands = side == Side::kServer ? Direction::kIngress : Direction::kEgress;
    const Direction replies = side == Side::kServer ? Direction::kEgress : Direction::kIngress;
    CountingSink sink;
    std::uint64_t now = 1'000'000;
    // Handshake: a MariaDB greeting with CLIENT_DEPRECATE_EOF, the response, OK.
    const std::string caps_low("\x00\xa2", 2), caps_high("\x2f\x01", 2);
    std::string greeting = std::string("\x0a") + "5.5.5-10.11.6-MariaDB" + '\0' + le32(7) +
                           "abcdefgh" + '\0' + caps_low + "\x2d" + std::string("\x02\x00", 2) +
                           caps_high + std::string(11, '\0') + "ijklmnopqrst" + '\0';
    parser->on_segment(capture(replies, packet(0, greeting), now), sink);
    std::string response = le32(0x012aa200) + le32(1 << 24) + "\x2d" + std::string(23, '\0') +
                           "sbtest" + '\0' + '\0' + "sbtest" + '\0';
    parser->on_segment(capture(commands, packet(1, response), now += 1000), sink);
    parser->on_segment(
        capture(replies, packet(2, std::string("\x00\x00\x00\x02\x00\x00\x00", 7)), now += 1000),
        sink);
    if (prepared) {
        parser->on_segment(
            capture(commands, packet(0, "\x16SELECT c FROM sbtest1 WHERE id=?"), now += 1000),
            sink);
        std::string ok =
            std::string("\x00", 1) + le32(1) + std::string("\x01\x00\x01\x00\x00\x00\x00", 7);
        Bytes reply = packet(1, ok);
        append(reply, packet(2, std::string(20, 'p')));
        append(reply, packet(3, std::string(20, 'c')));
        parser->on_segment(capture(replies, reply, now += 1000), sink);
    }
    // 64 different point selects and their one-row results.
    std::vector<Bytes> writes, reads;
    for (int i = 0; i < 64; ++i) {
        if (prepared)
            writes.push_back(packet(0, "\x17" + le32(1) +
                                           std::string("\x00\x01\x00\x00\x00\x00\x01\x03\x00", 9) +
                                           le32(static_cast<std::uint32_t>(i * 37))));
        else
            writes.push_back(
                packet(0, "\x03SELECT c FROM sbtest1 WHERE id=" + std::to_string(i * 37)));
        Bytes reply = packet(1, "\x01");
        append(reply, packet(2, std::string("\x03"
                                            "def\x06sbtest\x07sbtest1\x07sbtest1\x01"
                                            "c\x01"
                                            "c\x0c\x08\x00\x78\x00\x00\x00\xfe\x00\x00\x00\x00\x00",
                                            48)));
        append(reply, packet(3, std::string(1, static_cast<char>(prepared ? 0 : 119)) +
                                    std::string(119, '7')));
        append(reply, packet(4, std::string("\xfe\x00\x00\x02\x00\x00\x00", 7)));
        reads.push_back(std::move(reply));
    }
    const std::uint64_t base = sink.operations;
    for (auto _ : state) {
        for (std::size_t b = 0; b < writes.size(); ++b) {
            parser->on_segment(capture(commands, writes[b], now += 1000), sink);
            parser->on_segment(capture(replies, reads[b], now += 20000), sink);
        }
    }
    const std::uint64_t expected = writes.size() * static_cast<std::uint64_t>(state.iterations());
    if (sink.operations - base != expected || parser->stats().unmatched_responses != 0)
        state.SkipWithError("an operation was not matched");
    benchmark::DoNotOptimize(sink.bytes);
    state.SetItemsProcessed(static_cast<std::int64_t>(expected));
}

void BM_MysqlServerTextQuery(benchmark::State& state) {
    run(state, Side::kServer, false);
}
void BM_MysqlClientTextQuery(benchmark::State& state) {
    run(state, Side::kClient, false);
}
void BM_MysqlServerPreparedExecute(benchmark::State& state) {
    run(state, Side::kServer, true);
}
BENCHMARK(BM_MysqlServerTextQuery);
BENCHMARK(BM_MysqlClientTextQuery);
BENCHMARK(BM_MysqlServerPreparedExecute);

}  // namespace
