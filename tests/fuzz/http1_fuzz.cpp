// libFuzzer target for the HTTP/1.x parser: a random sequence of segments (and closes) on one
// connection, checked for crashes, sanitizer reports and the parser's invariants.
//
// Input: byte 0 = role hint (mod 3), then records separated by 0xFE; each record is one control
// byte followed by the segment's data (so plain HTTP text makes readable seeds):
//   ctrl == 0xFF           on_close
//   bit 0                  direction (0 ingress, 1 egress)
//   bits 1-2               0: captured like loupe does (head = first 512, tail = last 16)
//                          1: `data` with uncaptured bytes in the middle (length grows)
//                          2: sendfile (empty head, length = data size + extra)
//                          3: head = all of data, whatever its size (no tail)
//   bits 3-7               extra length for modes 1 and 2
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "protocols/http1/http1_parser.h"

namespace {

using loupe::http1::Direction;
using loupe::http1::Exchange;
using loupe::http1::Http1Connection;
using loupe::http1::ParserStats;
using loupe::http1::Role;
using loupe::http1::Segment;

constexpr std::size_t kHead = 512;
constexpr std::size_t kTail = 16;

#define check(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
            std::abort();                                                              \
        }                                                                              \
    } while (0)

void check_exchanges(const std::vector<Exchange>& out) {
    for (const auto& ex : out) {
        check(ex.start_ns <= ex.end_ns);  // timestamps below only grow
        check(!ex.method.empty());
        check(ex.path.find('?') == std::string::npos);
        check(ex.path.size() <= Http1Connection::kMaxPathBytes);
        check(ex.status == 0 || (ex.status >= 100 && ex.status <= 999));
        check(ex.role != Role::kUnknown);
    }
}

void check_connection(const Http1Connection& c, const ParserStats& before) {
    check(c.pending_requests() <= Http1Connection::kMaxPending);
    const std::size_t bound =
        sizeof(Http1Connection) + 2 * Http1Connection::kMaxHeaderBytes +
        2 * Http1Connection::kMaxPending * (64 + Http1Connection::kMaxPathBytes + 1) +
        Http1Connection::kMaxPathBytes + 1;
    check(c.memory_bytes() <= bound);
    const ParserStats& now = c.stats();
    check(now.unparsed_segments >= before.unparsed_segments);
    check(now.unmatched_responses >= before.unmatched_responses);
    check(now.dropped_requests >= before.dropped_requests);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    Http1Connection conn(static_cast<Role>(data[0] % 3));
    std::vector<Exchange> out;
    std::uint64_t ts = 1000;
    std::size_t pos = 1;
    while (pos < size) {
        const std::uint8_t* end = static_cast<const std::uint8_t*>(
            std::find(data + pos, data + size, static_cast<std::uint8_t>(0xFE)));
        if (end == data + pos) {  // empty record
            ++pos;
            continue;
        }
        const std::uint8_t ctrl = data[pos];
        const std::span<const std::uint8_t> body(data + pos + 1, end);
        pos = static_cast<std::size_t>(end - data) + 1;
        ts += 1 + (ctrl & 0x7);

        const ParserStats before = conn.stats();
        out.clear();
        if (ctrl == 0xFF) {
            conn.on_close(ts, out);
            check(conn.pending_requests() == 0);
        } else {
            Segment s;
            s.direction = (ctrl & 1) ? Direction::kEgress : Direction::kIngress;
            s.timestamp_ns = ts;
            const std::uint64_t extra = ctrl >> 3;
            switch ((ctrl >> 1) & 3) {
                case 0:
                    s.length = body.size();
                    s.head = body.first(std::min(body.size(), kHead));
                    if (body.size() > kHead) s.tail = body.last(kTail);
                    break;
                case 1:
                    s.length = body.size() + 1 + extra * 977;
                    s.head = body.first(std::min(body.size(), kHead));
                    s.tail = body.last(std::min(body.size(), kTail));
                    break;
                case 2:
                    s.length = body.size() + 1 + extra * 100;
                    break;
                default:
                    s.length = body.size();
                    s.head = body;
                    break;
            }
            conn.on_segment(s, out);
        }
        check_exchanges(out);
        check_connection(conn, before);
    }
    out.clear();
    conn.on_close(ts + 1, out);
    check_exchanges(out);
    check(conn.pending_requests() == 0);
    return 0;
}
