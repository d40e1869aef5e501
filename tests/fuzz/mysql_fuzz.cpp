// libFuzzer target for the MySQL parser: a random sequence of segments (and closes) on one
// connection, checked for crashes, sanitizer reports and the parser's invariants (bounded
// memory, bounded queues and statement table, well-formed labels, monotonic counters).
//
// Input: tests/fuzz/segment_records.h (records separated by 0xFD; extra lengths in 65521 bytes:
// payloads skipped).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

#include "protocols/mysql/connection.h"
#include "segment_records.h"

namespace {

using loupe::mysql::MysqlConnection;
using loupe::protocols::ParserStats;
using loupe::protocols::Protocol;
using loupe::protocols::Request;
using loupe::protocols::Segment;
using loupe::protocols::Side;

bool all_of(std::string_view s, bool (*ok)(char)) {
    return std::all_of(s.begin(), s.end(), ok);
}

class Checker : public loupe::protocols::RequestSink {
  public:
    void on_request(const Request& r) override {
        check(r.protocol == Protocol::kMysql);
        check(r.side != Side::kUnknown);
        check(r.start_ns <= r.end_ns);
        // The operation, summary and statement of SQL come from protocols/sql (its contract, its
        // tests): here only that an operation is always named, in upper case.
        check(!r.operation.empty());
        check(all_of(r.operation,
                     [](char c) { return (c >= 'A' && c <= 'Z') || c == '_' || c == ' '; }));
        check(r.system_name.empty() || r.system_name == "mysql" || r.system_name == "mariadb");
        check(
            r.error.empty() || r.error == "closed" ||
            (r.error.size() <= 5 && all_of(r.error, [](char c) { return c >= '0' && c <= '9'; })));
        check(r.db_namespace.size() <= 64 &&
              all_of(r.db_namespace, [](char c) { return c > 0x20 && c < 0x7f; }));
        ++reported;
    }
    std::size_t reported = 0;
};

void check_connection(const MysqlConnection& c, const ParserStats& before) {
    check(c.pending_commands() <= MysqlConnection::kMaxPending);
    check(c.prepared_statements() <= MysqlConnection::kMaxStatements);
    const ParserStats& now = c.stats();
    check(now.unparsed_segments >= before.unparsed_segments);
    check(now.unmatched_responses >= before.unmatched_responses);
    check(now.dropped_requests >= before.dropped_requests);
    check(now.desyncs >= before.desyncs);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    MysqlConnection conn(static_cast<Side>(data[0] % 3));
    Checker sink;
    loupe::fuzz::feed_records<Segment>(
        data, size, {.separator = 0xFD, .skipped_unit = 65521, .uncaptured_unit = 65521}, conn,
        sink, check_connection, [](const MysqlConnection& c) { check(c.pending_commands() == 0); });
    return 0;
}
