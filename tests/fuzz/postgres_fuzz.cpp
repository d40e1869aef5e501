// libFuzzer target for the PostgreSQL parser: a random sequence of segments (and closes) on one
// connection, checked for crashes, sanitizer reports and the parser's invariants (bounded
// memory, bounded tables, well-formed labels, monotonic counters).
//
// Input: tests/fuzz/segment_records.h (records separated by 0xFE; extra lengths in 4099 bytes).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

#include "protocols/postgres/connection.h"
#include "segment_records.h"

namespace {

using loupe::postgres::PostgresConnection;
using loupe::protocols::ParserStats;
using loupe::protocols::Protocol;
using loupe::protocols::Request;
using loupe::protocols::Segment;
using loupe::protocols::Side;

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
    loupe::fuzz::feed_records<Segment>(
        data, size, {}, conn, sink, check_connection,
        [](const PostgresConnection& c) { check(c.pending() == 0); });
    return 0;
}
