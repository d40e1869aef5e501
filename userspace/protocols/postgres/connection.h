// PostgreSQL statements matched to their replies over one connection's segments: the parser the
// pipeline creates per PostgreSQL connection (through postgres::make_parser, postgres.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/postgres/messages.h"
#include "protocols/protocol.h"

namespace loupe::postgres {

// What loupe keeps of one statement's text: its shape, never the text itself.
struct Shape {
    std::string operation;
    std::string summary;
    std::string collection;
    std::string normalized;
};
using ShapePtr = std::shared_ptr<const Shape>;

// Counters beyond the pipeline-wide ParserStats; all monotonic.
struct PostgresStats {
    std::uint64_t startups = 0;         // StartupMessages (protocol 3.x)
    std::uint64_t midstream = 0;        // connections picked up at a Query, Parse or Bind
    std::uint64_t ssl_requests = 0;     // SSLRequest and GSSENCRequest
    std::uint64_t ssl_refused = 0;      // answered 'N': the session goes on in plaintext
    std::uint64_t tls_connections = 0;  // answered 'S' (or 'G'): encrypted, no longer parsed
    std::uint64_t cancel_requests = 0;
    std::uint64_t statements = 0;             // Parse messages and statements of Query messages
    std::uint64_t statements_evicted = 0;     // prepared statements forgotten (table full)
    std::uint64_t portals_evicted = 0;        // named portals forgotten (table full)
    std::uint64_t unknown_statements = 0;     // Binds of statements never seen (EXECUTE <name>)
    std::uint64_t skipped_after_error = 0;    // messages the server skipped up to the next Sync
    std::uint64_t empty_queries = 0;          // EmptyQueryResponse
    std::uint64_t suspended = 0;              // PortalSuspended (the portal's last Execute counts)
    std::uint64_t untracked_statements = 0;   // beyond the caps on statements tracked
    std::uint64_t untracked_completions = 0;  // more CommandCompletes than statements seen in a Q
    std::uint64_t other_errors = 0;           // errors of no statement (startup, Sync, Describe)
    std::uint64_t skipped_segments = 0;       // while resynchronising or after giving up
    // Requests waiting when a direction lost its footing: dropped, not reported.
    std::uint64_t lost_requests = 0;
    // Statements reported without their reply's outcome: it lay in bytes never copied, in a read
    // that ends with ReadyForQuery (a large result read at once by the client).
    std::uint64_t unseen_replies = 0;
    bool not_postgres = false;
};

// PostgresStats as exported, loupe_postgresql_<name>_total: kCounterSpecs[i] is the field
// kCounterFields[i] (one order for MetricSpec::parser_counters and protocol_counters()).
inline constexpr protocols::ParserCounterSpec kCounterSpecs[] = {
    {"startup_messages",
     "PostgreSQL StartupMessages (protocol 3.x): sessions seen from their start."},
    {"midstream_connections",
     "PostgreSQL connections picked up mid-stream (open before loupe started), at a Query, Parse "
     "or "
     "Bind."},
    {"ssl_requests", "PostgreSQL SSLRequests and GSSENCRequests."},
    {"ssl_refused",
     "PostgreSQL SSLRequests/GSSENCRequests the server answered 'N': the session went on in "
     "plaintext."},
    {"tls_connections",
     "PostgreSQL connections the server switched to TLS or GSS encryption ('S'/'G'): no longer "
     "copied nor parsed."},
    {"cancel_requests", "PostgreSQL CancelRequests."},
    {"statements",
     "PostgreSQL statements seen: Parse messages and the statements of Query messages."},
    {"prepared_statements_evicted",
     "PostgreSQL prepared statements forgotten because a connection's statement table was full."},
    {"portals_evicted",
     "PostgreSQL named portals forgotten because a connection's portal table was full."},
    {"unknown_statements",
     "PostgreSQL Binds of statements never seen parsed (prepared before loupe started, or "
     "forgotten): reported as EXECUTE <name>."},
    {"skipped_after_error_messages",
     "PostgreSQL messages the server skipped after an error, up to the next Sync (not reported)."},
    {"empty_queries", "PostgreSQL EmptyQueryResponses."},
    {"portal_suspensions",
     "PostgreSQL PortalSuspended replies (the portal's final Execute is the operation)."},
    {"untracked_statements",
     "PostgreSQL statements beyond the caps on statements tracked per connection (reported by "
     "their CommandComplete's verb)."},
    {"untracked_completions",
     "PostgreSQL CommandCompletes beyond the statements seen in their Query."},
    {"other_errors", "PostgreSQL ErrorResponses of no statement (startup, Sync, Describe)."},
    {"skipped_segments",
     "Reads/writes on PostgreSQL connections skipped while resynchronising or after giving up."},
    {"lost_requests",
     "PostgreSQL requests dropped unreported when a direction lost its message boundaries."},
    {"unseen_replies",
     "PostgreSQL statements reported without their reply's outcome (it lay in bytes never "
     "copied)."},
};
inline constexpr std::uint64_t PostgresStats::*kCounterFields[] = {
    &PostgresStats::startups,
    &PostgresStats::midstream,
    &PostgresStats::ssl_requests,
    &PostgresStats::ssl_refused,
    &PostgresStats::tls_connections,
    &PostgresStats::cancel_requests,
    &PostgresStats::statements,
    &PostgresStats::statements_evicted,
    &PostgresStats::portals_evicted,
    &PostgresStats::unknown_statements,
    &PostgresStats::skipped_after_error,
    &PostgresStats::empty_queries,
    &PostgresStats::suspended,
    &PostgresStats::untracked_statements,
    &PostgresStats::untracked_completions,
    &PostgresStats::other_errors,
    &PostgresStats::skipped_segments,
    &PostgresStats::lost_requests,
    &PostgresStats::unseen_replies,
};
static_assert(std::size(kCounterSpecs) == std::size(kCounterFields));
static_assert(std::size(kCounterFields) <= protocols::kMaxParserCounters);

// One PostgreSQL connection. How it reads the segments:
//  - Side: the hint when the connection was seen opening; otherwise the direction of the first
//    untyped startup message, or of the Query/Parse/Bind a connection picked up mid-stream (one
//    open before loupe started) begins with (written => client, read => server). Frontend
//    messages are the client's writes and the server's reads.
//  - Session set-up: the StartupMessage gives db_namespace (its `database`, else its `user`).
//    SSLRequest/GSSENCRequest: a one-byte 'N' (the bytes after it in the same read are the next
//    messages) keeps the session in plaintext; 'S'/'G' means it is encrypted from then on: counted
//    (PostgresStats::tls_connections). Its socket bytes are no longer parsed (the kernel stops
//    copying them); the plaintext a TLS library's hooks deliver (Segment::tls) goes on from the
//    StartupMessage. CancelRequest is counted.
//  - Simple query: a Query's text is split into statements (sql::split_statements); each
//    CommandComplete or ErrorResponse ends the next one, reported with the Query's first byte as
//    start. After an error the rest of that Query does not run and is not reported. COPY in/out:
//    the statement ends with its CommandComplete after the data.
//  - Extended query: Parse stores the statement's shape under its name (the unnamed one too) in
//    a table of at most kMaxStatements (the least recently used is forgotten); Bind makes a
//    portal of it (kMaxPortals named portals); each Execute is one operation, ended by its
//    CommandComplete or ErrorResponse, however many are pipelined before one Sync. Its start is
//    the first byte of the first message after the previous Execute/Sync (the Parse/Bind that
//    prepared it). A Bind of a statement loupe never saw parsed (prepared before loupe started,
//    or forgotten) is reported as `EXECUTE <name>`. After an ErrorResponse, the server skips
//    every message up to the next Sync: those are not reported. PortalSuspended ends an Execute
//    unreported (the portal's final Execute is the operation, as pg_stat_statements counts it).
//  - NoticeResponse, ParameterStatus and NotificationResponse are no replies (ParserStats::pushes).
//  - A reply must start at or after the request it answers; else it is counted unmatched.
//  - Bytes never captured: bodies are skipped by count, whatever their size. A header in bytes
//    never seen (or bytes that are no header) loses that direction's footing (ParserStats::
//    desyncs). When a read of replies that lost it ends with ReadyForQuery (a client reading a
//    large result at once), the oldest request's statements are reported with that read as
//    their end and no outcome (PostgresStats::unseen_replies), and the next read is in step.
//    Otherwise the pending requests are dropped (PostgresStats::lost_requests) and the direction
//    resynchronises on a later segment that starts with a plausible message header.
//  - on_close reports every statement still waiting with error "closed".
class PostgresConnection final : public protocols::ConnectionParser {
  public:
    static constexpr std::size_t kMaxPending = 1024;         // frontend messages awaiting replies
    static constexpr std::size_t kMaxStatements = 256;       // named prepared statements
    static constexpr std::size_t kMaxPortals = 64;           // named portals
    static constexpr std::size_t kMaxQueryStatements = 256;  // statements tracked per Query
    // Statements of all waiting Queries tracked at once (their shapes are what a connection
    // holds most of); beyond, a statement is reported by its CommandComplete's verb.
    static constexpr std::size_t kMaxPendingStatements = 512;
    static constexpr std::size_t kShapeCache = 64;  // recent texts' shapes (by hash)
    static constexpr std::size_t kMaxName = 63;     // NAMEDATALEN - 1
    static constexpr std::size_t kMaxDatabase = 63;
    // Segments that start no message before the first one was seen: then it is given up.
    static constexpr std::size_t kProbeBudget = 8;

    explicit PostgresConnection(protocols::Side hint = protocols::Side::kUnknown) noexcept;

    void on_segment(const protocols::Segment& segment, protocols::RequestSink& sink) override;
    void on_close(std::uint64_t timestamp_ns, protocols::RequestSink& sink) override;
    protocols::Side side() const noexcept override { return side_; }
    const protocols::ParserStats& stats() const noexcept override { return stats_; }
    std::size_t memory_bytes() const noexcept override;

    std::span<const std::uint64_t> protocol_counters() const noexcept override;

    const PostgresStats& postgres_stats() const noexcept { return pg_stats_; }
    std::string_view db_namespace() const noexcept { return database_; }
    std::size_t pending() const noexcept { return pending_.size(); }
    std::size_t prepared_statements() const noexcept { return statements_.size(); }

  private:
    enum class Kind : std::uint8_t {
        kStartup,
        kQuery,
        kParse,
        kBind,
        kDescribe,
        kExecute,
        kClose,
        kSync,
        kFunction,
    };
    struct Pending {
        Kind kind = Kind::kSync;
        std::uint64_t start_ns = 0;
        ShapePtr shape;                    // Parse, Bind, Execute: the statement's
        std::vector<ShapePtr> statements;  // Query: its statements, in order
        std::uint32_t next = 0;            // Query: statements ended so far
        bool failed = false;               // Query: an error ended it
    };
    struct Named {
        std::string name;
        ShapePtr shape;
        std::uint64_t last_use = 0;
    };

    void parse_direction(const View& v, bool frontend, protocols::RequestSink& sink);
    void on_frontend(const Message& m);
    void on_backend(const Message& m, protocols::RequestSink& sink);
    void on_startup(const Message& m);
    void on_error(const Message& m, protocols::RequestSink& sink);
    void on_ready(const Message& m);
    static Pending make_pending(Kind kind, std::uint64_t start_ns, ShapePtr shape = nullptr);
    void push(Pending p);
    void pop_front();
    void clear_pending();
    void desync(bool frontend);
    static bool ends_with_ready(const View& v) noexcept;
    static bool starts_midstream_request(const View& v) noexcept;
    void finish_unseen(const View& v, protocols::RequestSink& sink);
    void give_up();
    void report(const Pending& p, const Shape* shape, std::uint64_t end_ns, std::string_view error,
                protocols::RequestSink& sink);

    ShapePtr shape_of(std::string_view sql);
    ShapePtr executed_unknown(std::string_view name);
    void remember(std::vector<Named>& table, std::size_t cap, std::string_view name, ShapePtr shape,
                  std::uint64_t& evictions);
    ShapePtr lookup(std::vector<Named>& table, std::string_view name);
    void forget(std::vector<Named>& table, std::string_view name);

    protocols::Side side_;
    bool gave_up_ = false;
    // The server accepted SSLRequest/GSSENCRequest: only a TLS library's plaintext is parsed.
    bool encrypted_ = false;
    bool front_resync_ = false;
    bool back_resync_ = false;
    bool group_open_ = false;       // a Parse/Bind/Describe began the next Execute's request
    bool skip_until_sync_ = false;  // an error: the server ignores messages up to Sync
    std::uint32_t probe_failures_ = 0;
    std::uint64_t group_start_ns_ = 0;
    std::uint64_t tick_ = 0;

    std::string database_;
    MessageReader front_{true};
    MessageReader back_{false};
    std::deque<Pending> pending_;
    std::size_t pending_statements_ = 0;  // statements of the Queries in pending_

    ShapePtr unnamed_statement_;
    ShapePtr unnamed_portal_;
    std::vector<Named> statements_;
    std::vector<Named> portals_;
    struct Cached {
        std::uint64_t hash = 0;
        std::size_t length = 0;
        ShapePtr shape;
    };
    std::vector<Cached> shape_cache_;
    std::size_t shape_cache_next_ = 0;

    protocols::ParserStats stats_;
    PostgresStats pg_stats_;
    mutable std::array<std::uint64_t, std::size(kCounterFields)> counter_values_{};
};

}  // namespace loupe::postgres
