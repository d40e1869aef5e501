// Turns finished requests into spans and joins them into traces with no instrumentation:
//  - a server span whose request carried a valid W3C traceparent continues that trace, with the
//    caller's span it names as parent (the caller's own client span, when seen on this host,
//    joins that trace too);
//  - a client span made by the thread that was serving a request (same process and thread id,
//    inside the server span's time) is that server span's child;
//  - a server span whose connection's other end is a client span on this host (same TCP 4-tuple,
//    the client span enclosing it) is that client span's child;
//  - otherwise a span starts a trace of its own.
// A child ends before its parent (a client call ends before the request that made it) and a
// server span before the client span that called it, so a span is held for `hold` after it
// arrives, until the spans it joins with have arrived too; a span is exported once, after that.
// Head sampling keeps a trace by its id (the same decision for each of its spans); errors and
// spans longer than a threshold are always kept.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "export/otlp/span.h"
#include "pipeline/connection_tracker.h"
#include "protocols/protocol.h"

namespace loupe::otlp {

struct JoinerOptions {
    double sampling_ratio = 1.0;
    std::uint64_t always_keep_over_ns = 1'000'000'000;
    std::uint64_t hold_ns = 2'000'000'000;
    std::size_t max_held = 50'000;  // spans held at most: beyond, the oldest are released early
};

struct JoinerCounters {
    std::uint64_t spans = 0;               // requests turned into spans
    std::uint64_t sampled_out = 0;         // not exported: head sampling
    std::uint64_t released_early = 0;      // held shorter than hold_ns (max_held reached)
    std::uint64_t parent_thread = 0;       // client spans joined to their thread's server span
    std::uint64_t parent_connection = 0;   // server spans joined to a client span on this host
    std::uint64_t parent_traceparent = 0;  // server spans continuing an incoming traceparent
};

class TraceJoiner {
  public:
    // unix_offset_ns: CLOCK_REALTIME - CLOCK_MONOTONIC, measured once (see measure_unix_offset).
    TraceJoiner(JoinerOptions options, std::int64_t unix_offset_ns);

    // One finished request; `now_ns` (CLOCK_MONOTONIC) is when it arrived; `series_id`: the
    // request series that counted it (Span::series_id).
    void add(const protocols::Request& request, const pipeline::ConnectionTracker::Origin& origin,
             std::string_view service, std::uint64_t now_ns, std::uint64_t series_id = 0);
    // Appends the spans held for hold_ns (or all with `everything`) to `out`, sampled.
    void release(std::uint64_t now_ns, std::vector<Span>& out, bool everything = false);

    const JoinerCounters& counters() const { return counters_; }
    // Spans not released yet (released ones are kept a while longer only as parents to find).
    std::size_t held() const { return entries_.size() - next_release_; }

  private:
    struct Entry {
        Span span;
        std::uint64_t start_ns = 0, end_ns = 0;  // CLOCK_MONOTONIC
        std::uint64_t arrived_ns = 0;
        std::uint64_t thread_key = 0;
        std::uint64_t tuple_key = 0;  // hash of (client end, server end)
        TraceId remote_trace{};       // from the traceparent
        SpanId remote_parent{};
        bool has_remote = false;
        bool parent_resolved = false;
        bool trace_fixed = false;
        bool released = false;
        std::uint64_t parent_seq = 0;  // with has_local_parent
        bool has_local_parent = false;
    };

    Entry* find(std::uint64_t seq);
    void resolve_parent(std::uint64_t seq);
    const TraceId& trace_of(std::uint64_t seq, int depth = 0);
    bool keep(const Entry& entry) const;
    void forget_front();

    JoinerOptions options_;
    std::int64_t unix_offset_ns_;
    std::mt19937_64 random_;
    std::deque<Entry> entries_;
    std::uint64_t first_seq_ = 0;  // seq of entries_.front()
    // Seqs by key, oldest first (spans are forgotten oldest first: a pop at the front). A lookup
    // looks at the latest few only, so that a busy thread or connection costs no more.
    using Index = std::unordered_map<std::uint64_t, std::deque<std::uint64_t>>;
    Index servers_by_thread_;
    Index clients_by_tuple_;
    // Server spans that carried a traceparent: the client span calling them joins that trace.
    Index remote_servers_by_tuple_;
    std::size_t next_release_ = 0;  // index of the first entry not released
    JoinerCounters counters_;
};

// CLOCK_REALTIME - CLOCK_MONOTONIC, from the closest of a few paired readings.
std::int64_t measure_unix_offset();

// A W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>") decoded; false when malformed.
bool parse_traceparent(std::string_view text, TraceId& trace, SpanId& parent, bool& sampled);

}  // namespace loupe::otlp
