// libFuzzer target for the HTTP/1.x parser: a random sequence of segments (and closes) on one
// connection, checked for crashes, sanitizer reports and the parser's invariants.
//
// Input: tests/fuzz/segment_records.h (records separated by 0xFE; heads of 512 bytes as loupe
// captured them; mode 2 is sendfile).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "protocols/http1/http1_parser.h"
#include "segment_records.h"

namespace {

using loupe::http1::Exchange;
using loupe::http1::Http1Connection;
using loupe::http1::ParserStats;
using loupe::http1::Role;
using loupe::http1::Segment;

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
    // Heads of 512 bytes as loupe captured them; mode 2 is sendfile (nothing captured).
    const loupe::fuzz::RecordFormat format{.head = 512,
                                           .skipped_unit = 977,
                                           .uncaptured_unit = 100,
                                           .first_timestamp_from_bit6 = false};
    const std::uint64_t ts = loupe::fuzz::for_each_record<Segment>(
        data, size, format,
        [&](const Segment& s, std::uint64_t) {
            const ParserStats before = conn.stats();
            out.clear();
            conn.on_segment(s, out);
            check_exchanges(out);
            check_connection(conn, before);
        },
        [&](std::uint64_t at) {
            const ParserStats before = conn.stats();
            out.clear();
            conn.on_close(at, out);
            check(conn.pending_requests() == 0);
            check_exchanges(out);
            check_connection(conn, before);
        });
    out.clear();
    conn.on_close(ts + 1, out);
    check_exchanges(out);
    check(conn.pending_requests() == 0);
    return 0;
}
