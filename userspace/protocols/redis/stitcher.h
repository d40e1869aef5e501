// Redis commands matched to their replies over one connection's segments: the parser the
// pipeline creates per Redis connection (through redis::make_parser, redis.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "protocols/protocol.h"
#include "protocols/redis/parse.h"
#include "protocols/redis/types.h"

namespace loupe::redis {

// A FIFO of pending commands that grows on demand up to a fixed capacity.
class PendingQueue {
  public:
    explicit PendingQueue(std::size_t max) noexcept : max_(max) {}
    bool empty() const noexcept { return count_ == 0; }
    std::size_t size() const noexcept { return count_; }
    bool full() const noexcept { return count_ >= max_; }
    Pending& front() noexcept { return slots_[head_]; }
    const Pending& front() const noexcept { return slots_[head_]; }
    void push_back(const Pending& p);
    void pop_front() noexcept;
    void clear() noexcept;
    std::size_t memory_bytes() const noexcept { return slots_.capacity() * sizeof(Pending); }

  private:
    std::vector<Pending> slots_;
    std::size_t head_ = 0;
    std::size_t count_ = 0;
    std::size_t max_;
};

// One Redis connection. How it reads the segments:
//  - Side: the hint when the connection was seen opening; otherwise inferred from the first
//    segment that begins with a command (`*<n>\r\n$<m>\r\n<known command>\r\n`, or an inline line
//    whose first word is a known command): read => server, written => client.
//  - Footing: each direction starts unsynchronised. The command stream synchronises on a segment
//    that begins with a command (before any command was seen, a known one; afterwards any
//    command-like word); a fully captured segment of at most kResyncBytes that is the start of
//    one is held until the rest arrives (a command split at any byte). The reply stream is in
//    step from its first byte when the command stream synchronised on its very first segment
//    and no reply came before (a connection seen from its start); otherwise it synchronises on a
//    segment that begins with a valid RESP type line at or after the first byte of the oldest
//    pending command. What is skipped meanwhile is counted (RedisStats::skipped_segments).
//  - Not Redis: before any command was seen, fully captured segments that look like no RESP at
//    all count as unparsed; after kProbeBudget of them the connection is given up (nothing is
//    reported, later segments are ignored).
//  - Commands: arrays of bulk strings or inline lines; N commands in one write are N pending
//    commands sharing that write's first timestamp as their start. Replies pair with the oldest
//    pending command, in order; all replies ending in one read share its timestamp as their end.
//    A reply must start at or after its command's first byte, else it is counted unmatched.
//  - Bytes never captured: a string's payload is skipped by count, whatever its size (a 100 MB
//    value is never buffered). A boundary in bytes never seen loses the stream's footing: on the
//    command side, a command whose name was seen is still queued, and the commands that followed
//    are a gap: replies that start before the next seen command was sent are counted as
//    RedisStats::gap_replies and not matched; on the reply side, every pending command sent
//    before that segment is reported with the segment as its end, and no outcome
//    (RedisStats::unseen_replies). Both sides then resynchronise as above.
//  - MULTI/EXEC: a command answered +QUEUED waits in the transaction; EXEC's array gives each
//    its real reply (error, cache lookups, SELECT), reported with its own start and EXEC's end,
//    before EXEC itself. EXEC answered nil (WATCH) or an error (EXECABORT), and DISCARD, drop the
//    queued commands unreported: Redis did not run them.
//  - Pub/sub: a RESP3 push (`>`), or in RESP2 once subscribing, an array whose first element
//    names a pub/sub kind, is no reply. (Un)subscribe confirmations complete their command (one
//    per channel named; for an unsubscribe from all, until the count reaches 0 or the end of the
//    read); published messages and other pushes count in ParserStats::pushes.
//  - Attributes (`|`) are read and left out. MONITOR's feed counts as pushes. CLIENT REPLY
//    OFF/SKIP: commands that get no reply are reported as they are sent (end = their last byte).
//  - SELECT n sets the database of the operations after it; RESET and HELLO are followed too.
//  - on_close reports every pending command with error "closed".
class RedisConnection final : public protocols::ConnectionParser {
  public:
    // Pending (sent, unanswered) commands per connection; more are dropped and counted.
    static constexpr std::size_t kMaxPending = 1024;
    // Commands queued by one MULTI that are tracked; more are dropped and counted.
    static constexpr std::size_t kMaxQueued = 1024;
    // Segments that look like no RESP at all before the connection is given up.
    static constexpr std::size_t kProbeBudget = 8;
    // A command split at its start is held up to this many bytes while synchronising.
    static constexpr std::size_t kResyncBytes = 64;

    explicit RedisConnection(protocols::Side hint = protocols::Side::kUnknown) noexcept;

    void on_segment(const protocols::Segment& segment, protocols::RequestSink& sink) override;
    void on_close(std::uint64_t timestamp_ns, protocols::RequestSink& sink) override;
    protocols::Side side() const noexcept override { return side_; }
    const protocols::ParserStats& stats() const noexcept override { return stats_; }
    std::size_t memory_bytes() const noexcept override;

    const RedisStats& redis_stats() const noexcept { return redis_stats_; }
    std::size_t pending_commands() const noexcept { return pending_.size(); }
    std::size_t queued_commands() const noexcept { return tx_.size(); }
    std::string_view db_namespace() const noexcept { return {db_text_.data(), db_len_}; }
    bool resp3() const noexcept { return resp3_; }
    bool subscribed() const noexcept { return subscribed_; }

  private:
    enum class Sync : std::uint8_t {
        kFresh,   // reply stream: nothing seen yet
        kResync,  // looking for a segment that starts a message
        kSynced,
    };
    enum class ReplyMode : std::uint8_t { kOn, kOff, kSkipNext };  // CLIENT REPLY

    bool infer_side(const View& v, bool ingress);
    void skip(const View& v, bool looks_like_resp);
    bool resync_requests(const View& v, protocols::RequestSink& sink);
    void parse_requests(const View& v, protocols::RequestSink& sink);
    void on_command(std::uint64_t end_ns, protocols::RequestSink& sink);
    void enqueue(const Pending& p);
    void request_lost(const View& v, RespReader::Result r, protocols::RequestSink& sink);

    bool can_resync_replies(const View& v) const;
    void parse_replies(const View& v, protocols::RequestSink& sink);
    void on_reply(protocols::RequestSink& sink);
    void on_push(protocols::RequestSink& sink);
    void match_reply(protocols::RequestSink& sink);
    void complete(const Pending& p, const Value& reply, std::span<const Value> elements,
                  std::uint64_t end_ns, protocols::RequestSink& sink);
    void finish_exec(const Pending& exec, const Value& reply, std::span<const Value> elements,
                     std::uint64_t end_ns, protocols::RequestSink& sink);
    void apply_effects(const Pending& p, const Value& reply);
    void finish_unsubscribe_all(protocols::RequestSink& sink);
    void reply_lost(const View& v, RespReader::Result r, protocols::RequestSink& sink);

    void report(const Pending& p, const Value* reply, std::uint64_t end_ns,
                protocols::RequestSink& sink, std::string_view error = {});
    void discard_transaction();
    void reset_session();
    void set_db(std::uint32_t db);
    void give_up();

    protocols::Side side_;
    bool confirmed_ = false;        // a command was seen: this is Redis
    bool first_sync_ = false;       // the command stream has synchronised at least once
    bool request_skipped_ = false;  // command-direction bytes were skipped before that
    bool seen_ingress_ = false;     // before the side was known
    bool seen_egress_ = false;
    bool gap_tail_ = false;  // commands lost after the last pending one
    bool resp3_ = false;
    bool subscribed_ = false;  // RESP2: pushes come as arrays
    bool monitor_ = false;
    ReplyMode reply_mode_ = ReplyMode::kOn;
    Sync request_sync_ = Sync::kResync;
    Sync reply_sync_ = Sync::kFresh;
    std::uint32_t probe_failures_ = 0;
    std::uint32_t dropped_tail_ = 0;  // commands dropped after the last pending one
    std::uint32_t tx_dropped_ = 0;    // queued commands beyond kMaxQueued

    // A command's first bytes held while synchronising.
    std::array<std::uint8_t, kResyncBytes> resync_buf_{};
    std::uint8_t resync_len_ = 0;
    std::uint64_t resync_first_ns_ = 0;
    std::uint64_t resync_last_ns_ = 0;

    std::array<char, 11> db_text_{'0'};
    std::uint8_t db_len_ = 1;
    char error_buf_[32] = {};

    RespReader requests_{RespReader::Mode::kCommands};
    RespReader replies_{RespReader::Mode::kReplies};
    PendingQueue pending_{kMaxPending};
    std::vector<Pending> tx_;  // queued by MULTI, in order

    protocols::ParserStats stats_;
    RedisStats redis_stats_;
};

}  // namespace loupe::redis
