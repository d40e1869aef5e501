// libFuzzer target for the Redis parser: a random sequence of segments (and closes) on one
// connection, checked for crashes, sanitizer reports and the parser's invariants (bounded
// memory, bounded queues, well-formed labels, monotonic counters).
//
// Input: tests/fuzz/segment_records.h (records separated by 0xFE; extra lengths in 4099 bytes:
// bulk payloads skipped).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

#include "protocols/redis/stitcher.h"
#include "segment_records.h"

namespace {

using loupe::protocols::ParserStats;
using loupe::protocols::Protocol;
using loupe::protocols::Request;
using loupe::protocols::Segment;
using loupe::protocols::Side;
using loupe::redis::Pending;
using loupe::redis::RedisConnection;
using loupe::redis::RespReader;
using loupe::redis::Value;

bool all_of(std::string_view s, bool (*ok)(char)) {
    return std::all_of(s.begin(), s.end(), ok);
}

class Checker : public loupe::protocols::RequestSink {
  public:
    void on_request(const Request& r) override {
        check(r.protocol == Protocol::kRedis);
        check(r.side != Side::kUnknown);
        check(r.start_ns <= r.end_ns);
        check(!r.operation.empty() && r.operation.size() <= 65);
        // Upper-cased command words, at most one space: never a key or a value.
        check(all_of(r.operation, [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                   c == '.' || c == ':' || c == ' ';
        }));
        check(std::count(r.operation.begin(), r.operation.end(), ' ') <= 1);
        check(r.error.size() <= 32);
        check(r.error == "closed" || all_of(r.error, [](char c) {
                  return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
              }));
        check(!r.db_namespace.empty() && r.db_namespace.size() <= 10);
        check(all_of(r.db_namespace, [](char c) { return c >= '0' && c <= '9'; }));
        check(r.target.empty() && r.status == 0);
        if (!r.error.empty()) check(r.cache_hits == 0 && r.cache_misses == 0);
        ++reported;
    }
    std::size_t reported = 0;
};

void check_connection(const RedisConnection& c, const ParserStats& before) {
    check(c.pending_commands() <= RedisConnection::kMaxPending);
    check(c.queued_commands() <= RedisConnection::kMaxQueued);
    const std::size_t bound =
        sizeof(RedisConnection) +
        (RedisConnection::kMaxPending + RedisConnection::kMaxQueued) * sizeof(Pending) +
        2 * (RespReader::kMaxDepth * 16 + RespReader::kMaxKeepLimit * sizeof(Value));
    check(c.memory_bytes() <= bound);
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
    RedisConnection conn(static_cast<Side>(data[0] % 3));
    Checker sink;
    loupe::fuzz::feed_records<Segment>(data, size, {}, conn, sink, check_connection,
                                       [](const RedisConnection& c) {
                                           check(c.pending_commands() == 0);
                                           check(c.queued_commands() == 0);
                                       });
    return 0;
}
