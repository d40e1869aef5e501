// libFuzzer target for the PostgreSQL parser: a random sequence of segments (and closes) on one
// connection, checked for crashes, sanitizer reports and the parser's invariants (bounded
// memory, bounded tables, well-formed labels, monotonic counters).
//
// Input (as tests/fuzz/redis_fuzz.cpp): byte 0 = side hint (mod 3), then records separated by
// 0xFE; each record is one control byte followed by the segment's data:
//   ctrl == 0xFF           on_close
//   bit 0                  direction (0 ingress, 1 egress)
//   bits 1-2               0: captured with a small head (first 64 bytes, last 16 as tail)
//                          1: `data` with uncaptured bytes in the middle (length grows)
//                          2: nothing captured (length = data size + extra)
//                          3: head = all of data (no tail)
//   bits 3-7               extra length for modes 1 and 2 (times 4099: bodies skipped)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

#include "protocols/postgres/connection.h"

namespace {

using loupe::postgres::PostgresConnection;
using loupe::protocols::Direction;
using loupe::protocols::ParserStats;
using loupe::protocols::Protocol;
using loupe::protocols::Request;
using loupe::protocols::Segment;
using loupe::protocols::Side;

constexpr std::size_t kHead = 64;
constexpr std::size_t kTail = 16;

#define check(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
            std::abort();                                                              \
        }                                                                              \
    } while (0)

bool printable(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

class Checker : public loupe::protocols::RequestSink {
  public:
    void on_request(const Request& r) override {
        check(r.protocol == Protocol::kPostgres);
        check(r.side != Side::kUnknown);
        check(r.start_ns <= r.end_ns);
        check(!r.operation.empty());
        check(r.target.size() <= 8192 + 8 + 64);
        check(printable(r.db_namespace) && r.db_namespace.size() <= 63);
        check(r.error.empty() || r.error == "closed" || r.error == "error" ||
              (r.error.size() == 5 && std::all_of(r.error.begin(), r.error.end(), [](char c) {
                   return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
               })));
        check(r.status == 0);
        ++reported;
    }
    std::size_t reported = 0;
};

void check_connection(const PostgresConnection& c, const ParserStats& before) {
    check(c.pending() <= PostgresConnection::kMaxPending);
    check(c.prepared_statements() <= PostgresConnection::kMaxStatements);
    // Queued statements of Queries hold shapes shared with the cache: bounded by the caps.
    check(c.memory_bytes() <= 64u * 1024 * 1024);
    const ParserStats& now = c.stats();
    check(now.unparsed_segments >= before.unparsed_segments);
    check(now.unmatched_responses >= before.unmatched_responses);
    check(now.dropped_requests >= before.dropped_requests);
    check(now.desyncs >= before.desyncs);
    check(now.pushes >= before.pushes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    PostgresConnection conn(static_cast<Side>(data[0] % 3));
    Checker sink;
    std::uint64_t ts = 1000;
    std::size_t pos = 1;
    while (pos < size) {
        const std::uint8_t* end = static_cast<const std::uint8_t*>(
            std::find(data + pos, data + size, static_cast<std::uint8_t>(0xFE)));
        if (end == data + pos) {
            ++pos;
            continue;
        }
        const std::uint8_t ctrl = data[pos];
        const std::span<const std::uint8_t> body(data + pos + 1, end);
        pos = static_cast<std::size_t>(end - data) + 1;
        ts += 1 + (ctrl & 0x7);

        const ParserStats before = conn.stats();
        if (ctrl == 0xFF) {
            conn.on_close(ts, sink);
            check(conn.pending() == 0);
        } else {
            Segment s;
            s.direction = (ctrl & 1) ? Direction::kEgress : Direction::kIngress;
            s.timestamp_ns = ts;
            if (ctrl & 0x40) s.first_timestamp_ns = ts - 1;
            const std::uint64_t extra = ctrl >> 3;
            switch ((ctrl >> 1) & 3) {
                case 0:
                    s.length = body.size();
                    s.head = body.first(std::min(body.size(), kHead));
                    if (body.size() > kHead) s.tail = body.last(kTail);
                    break;
                case 1:
                    s.length = body.size() + 1 + extra * 4099;
                    s.head = body.first(std::min(body.size(), kHead));
                    s.tail = body.last(std::min(body.size(), kTail));
                    break;
                case 2:
                    s.length = body.size() + 1 + extra * 4099;
                    break;
                default:
                    s.length = body.size();
                    s.head = body;
                    break;
            }
            conn.on_segment(s, sink);
        }
        check_connection(conn, before);
    }
    conn.on_close(ts + 1, sink);
    check(conn.pending() == 0);
    return 0;
}
