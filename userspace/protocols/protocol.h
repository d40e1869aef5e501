// What every protocol parser sees and produces: the one interface between the capture pipeline
// and userspace/protocols/<p>/. A protocol is a value (Protocol) that flows through this
// interface and the registry (protocols/registry.h), not a type name repeated in every layer.
//
// A parser gets one connection's segments (one per captured read or write, in order) and reports
// each finished request/operation as a Request through a RequestSink, with string views into its
// own state: valid during the call only, so that nothing is allocated per request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "loupe_abi.h"

namespace loupe::protocols {

// The protocol of a connection, as the kernel classified it (enum loupe_protocol, loupe_abi.h).
enum class Protocol : std::uint8_t {
    kUnknown = LOUPE_PROTOCOL_UNKNOWN,
    kHttp1 = LOUPE_PROTOCOL_HTTP1,
    kRedis = LOUPE_PROTOCOL_REDIS,
    kPostgres = LOUPE_PROTOCOL_POSTGRES,
    kMysql = LOUPE_PROTOCOL_MYSQL,
};

// As seen from the traced process: ingress = it read the bytes, egress = it wrote them.
enum class Direction : std::uint8_t { kIngress, kEgress };

// Server: the process accepted the connection (reads requests, writes responses).
// Client: the process opened it (writes requests, reads responses).
enum class Side : std::uint8_t { kUnknown, kServer, kClient };

// One read or write's worth of data on one connection.
struct Segment {
    Direction direction = Direction::kIngress;
    std::uint64_t timestamp_ns = 0;  // when the bytes moved, CLOCK_MONOTONIC
    // Earlier than timestamp_ns when the capture joined several writes into one segment (a
    // sendfile after the write of the headers): when the first one moved its bytes. A message
    // that starts in the segment starts then; one that ends in it ends at timestamp_ns. 0: the
    // same as timestamp_ns.
    std::uint64_t first_timestamp_ns = 0;
    std::uint64_t length = 0;            // bytes the read/write moved; may exceed head.size()
    std::span<const std::uint8_t> head;  // the first bytes of the data, as captured
    std::span<const std::uint8_t> tail;  // its last bytes when length > head.size(), else empty
    bool tls = false;                    // TLS plaintext (from a TLS library's hooks)
};

// One finished request or operation. Views are valid during RequestSink::on_request only.
struct Request {
    Protocol protocol = Protocol::kUnknown;
    Side side = Side::kUnknown;
    // HTTP: the method ("GET", or "_OTHER"); Redis: the command as sent, upper-cased, two-word
    // commands whole ("CONFIG GET").
    std::string_view operation;
    // HTTP: the path without query string (normalised into a route by the store); SQL: the
    // statement's summary (db_query_summary: verb and tables, no literal); else empty.
    std::string_view target;
    // SQL: the statement with every literal replaced by `?` (the slow-operation log's text; never
    // a metric label); else empty.
    std::string_view statement;
    // db_collection_name: SQL statements on one table name it; else empty.
    std::string_view collection;
    // db_system_name when the protocol's spec does not fix it (MySQL's wire protocol: "mysql" or
    // "mariadb", from the server's greeting); empty: the spec's constant.
    std::string_view system_name;
    // HTTP: the response status (0: none, the connection closed first). Unused elsewhere.
    int status = 0;
    // Not empty: the operation failed, and this is why, as a label value: Redis's error prefix
    // ("ERR", "WRONGTYPE", "NOAUTH"), PostgreSQL's SQLSTATE ("23505"), MySQL's error number
    // ("1062"), "closed" (no reply before the connection closed). HTTP requests leave it empty:
    // their status says.
    std::string_view error;
    // db_namespace: Redis's database number ("0" unless SELECT said otherwise); else empty.
    std::string_view db_namespace;
    // Cache lookups answered by this operation (Redis read commands): GET-like nil = a miss.
    std::uint32_t cache_hits = 0;
    std::uint32_t cache_misses = 0;
    // HTTP: the request's W3C traceparent header, only when well formed (hex digits and dashes:
    // "00-<trace id>-<parent id>-<flags>"); else empty. No other header value is ever kept.
    std::string_view traceparent;
    // Its bytes were TLS plaintext, read through a TLS library's hooks (set by the pipeline from
    // the capture, not by parsers).
    bool tls = false;
    std::uint64_t start_ns = 0;  // server: first request byte read; client: first byte written
    std::uint64_t end_ns = 0;    // server: last reply byte written; client: last byte read
};

class RequestSink {
  public:
    virtual void on_request(const Request& request) = 0;

  protected:
    ~RequestSink() = default;
};

// Counters every parser keeps; all monotonic.
struct ParserStats {
    std::uint64_t unparsed_segments = 0;    // data where a message had to start but none did
    std::uint64_t unmatched_responses = 0;  // a reply with no pending request
    std::uint64_t dropped_requests = 0;     // pending-request queue cap exceeded
    std::uint64_t desyncs = 0;              // message boundaries lost (then resynchronised)
    std::uint64_t pushes = 0;               // server-initiated messages that are no reply
};

// A protocol's own counter, beyond ParserStats (SSL refusals, CancelRequests...): exported as
// loupe_<system>_<name>_total. A protocol lists them in its MetricSpec::parser_counters, and its
// parsers report their values in that order (ConnectionParser::protocol_counters).
struct ParserCounterSpec {
    std::string_view name;  // without loupe_<system>_ and _total: "ssl_refused"
    std::string_view help;
};
// At most this many per protocol (the pipeline keeps one array of totals per protocol).
inline constexpr std::size_t kMaxParserCounters = 24;

// One connection's parser state.
class ConnectionParser {
  public:
    virtual ~ConnectionParser() = default;
    virtual void on_segment(const Segment& segment, RequestSink& sink) = 0;
    // The connection ended: every request still waiting is reported (status 0 / error "closed").
    virtual void on_close(std::uint64_t timestamp_ns, RequestSink& sink) = 0;
    // The side, given at creation or inferred from the traffic.
    virtual Side side() const noexcept = 0;
    virtual const ParserStats& stats() const noexcept = 0;
    // The protocol's own counters (MetricSpec::parser_counters, same order), all monotonic;
    // valid until the next call. Empty: the protocol has none.
    virtual std::span<const std::uint64_t> protocol_counters() const noexcept { return {}; }
    // Heap and inline bytes held (bounded by each parser's caps).
    virtual std::size_t memory_bytes() const noexcept = 0;
};

}  // namespace loupe::protocols
