#include "protocols/redis/stitcher.h"

#include <algorithm>
#include <cstring>

#include "protocols/redis/commands.h"
#include "protocols/redis/redis.h"

namespace loupe::redis {
namespace {

using protocols::Direction;
using protocols::Protocol;
using protocols::Request;
using protocols::RequestSink;
using protocols::Segment;
using protocols::Side;

constexpr std::uint32_t kNoDb = UINT32_MAX;

// SELECT's argument: a database index Redis could accept.
std::uint32_t parse_db(const Text& t) noexcept {
    if (t.partial || t.size == 0 || t.size > 9) return kNoDb;
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < t.size; ++i) {
        const char c = t.bytes[i];
        if (c < '0' || c > '9') return kNoDb;
        v = v * 10 + static_cast<std::uint32_t>(c - '0');
    }
    return v;
}

std::uint32_t clamp_count(std::int64_t n) noexcept {
    if (n <= 0) return 0;
    return n > UINT32_MAX ? UINT32_MAX : static_cast<std::uint32_t>(n);
}

bool is_resp3_type(char t) noexcept {
    return t == '%' || t == '~' || t == '>' || t == '_' || t == '#' || t == ',' || t == '(' ||
           t == '!' || t == '=';
}

// Cache lookups from the reply of a read command. A miss is "the value asked for is not there":
//  - GET, GETEX, GETDEL, HGET, LINDEX, ZSCORE, ZRANK, ZREVRANK, DUMP, and SRANDMEMBER/HRANDFIELD
//    without a count: a nil reply is one miss, any other reply one hit;
//  - MGET (per key), HMGET and ZMSCORE (per field/member): each nil element a miss, others hits;
//  - EXISTS: its integer reply is the hits, the keys named minus that the misses.
// Error replies count neither.
void count_lookups(const Pending& p, const Value& reply, Request& r) noexcept {
    switch (p.kind) {
        case CommandKind::kLookup:
            (reply.null ? r.cache_misses : r.cache_hits) = 1;
            break;
        case CommandKind::kKeysLookup:
        case CommandKind::kFieldsLookup:
            if (reply.is_aggregate() && !reply.null) {
                const std::uint32_t total = clamp_count(reply.integer);
                r.cache_misses = std::min(reply.null_elements, total);
                r.cache_hits = total - r.cache_misses;
            }
            break;
        case CommandKind::kExists:
            if (reply.type == ':') {
                r.cache_hits = std::min(clamp_count(reply.integer), p.keys);
                r.cache_misses = p.keys - r.cache_hits;
            }
            break;
        default:
            break;
    }
}

}  // namespace

std::unique_ptr<protocols::ConnectionParser> make_parser(Side hint) {
    return std::make_unique<RedisConnection>(hint);
}

void PendingQueue::push_back(const Pending& p) {
    if (count_ == slots_.size()) {
        const std::size_t grown = std::min(max_, std::max<std::size_t>(2, 2 * slots_.size()));
        std::vector<Pending> next;
        next.reserve(grown);
        for (std::size_t i = 0; i < count_; ++i)
            next.push_back(slots_[(head_ + i) % slots_.size()]);
        next.resize(grown);
        slots_.swap(next);
        head_ = 0;
    }
    slots_[(head_ + count_) % slots_.size()] = p;
    ++count_;
}

void PendingQueue::pop_front() noexcept {
    head_ = (head_ + 1) % slots_.size();
    if (--count_ == 0) {
        head_ = 0;
        // A deep pipeline grew the queue: give the memory back once it drained.
        if (slots_.size() > 64) std::vector<Pending>().swap(slots_);
    }
}

void PendingQueue::clear() noexcept {
    count_ = 0;
    head_ = 0;
    if (slots_.size() > 64) std::vector<Pending>().swap(slots_);
}

RedisConnection::RedisConnection(Side hint) noexcept : side_(hint) {}

std::size_t RedisConnection::memory_bytes() const noexcept {
    return sizeof(*this) + pending_.memory_bytes() + tx_.capacity() * sizeof(Pending) +
           requests_.memory_bytes() + replies_.memory_bytes();
}

void RedisConnection::on_segment(const Segment& segment, RequestSink& sink) {
    const View v(segment);
    if (v.len == 0) return;
    if (redis_stats_.not_redis) {
        ++redis_stats_.skipped_segments;
        return;
    }
    const bool ingress = segment.direction == Direction::kIngress;
    if (side_ == Side::kUnknown && !infer_side(v, ingress)) {
        (ingress ? seen_ingress_ : seen_egress_) = true;
        skip(v, starts_reply(v.head, v.cap) || starts_command(v.head, v.cap, false) != Probe::kNo);
        return;
    }
    if (ingress == (side_ == Side::kServer)) {
        if (request_sync_ != Sync::kSynced && !resync_requests(v, sink)) return;
        parse_requests(v, sink);
        return;
    }
    if (reply_sync_ == Sync::kFresh) {
        // In step from the first byte only if the commands were too (a connection seen whole).
        reply_sync_ = first_sync_ && !request_skipped_ ? Sync::kSynced : Sync::kResync;
        replies_.reset();
    }
    if (reply_sync_ == Sync::kResync) {
        if (!can_resync_replies(v)) {
            skip(v, starts_reply(v.head, v.cap));
            return;
        }
        reply_sync_ = Sync::kSynced;
        replies_.reset();
    }
    parse_replies(v, sink);
    finish_unsubscribe_all(sink);
}

bool RedisConnection::infer_side(const View& v, bool ingress) {
    if (starts_command(v.head, v.cap, true) != Probe::kYes) return false;
    side_ = ingress ? Side::kServer : Side::kClient;
    // Data seen earlier in either direction means the connection was picked up mid-stream.
    if (ingress ? seen_ingress_ : seen_egress_) request_skipped_ = true;
    if (ingress ? seen_egress_ : seen_ingress_) reply_sync_ = Sync::kResync;
    return true;
}

void RedisConnection::skip(const View& v, bool looks_like_resp) {
    ++redis_stats_.skipped_segments;
    if (confirmed_ || looks_like_resp) return;
    ++stats_.unparsed_segments;
    // Only fully captured segments: a large one may be the middle of a value being transferred.
    if (v.captured() && ++probe_failures_ >= kProbeBudget) give_up();
}

void RedisConnection::give_up() {
    redis_stats_.not_redis = true;
    requests_.reset();
    replies_.reset();
    pending_.clear();
    tx_.clear();
    tx_.shrink_to_fit();
    resync_len_ = 0;
}

bool RedisConnection::resync_requests(const View& v, RequestSink& sink) {
    const bool known_only = !confirmed_;
    if (resync_len_ > 0) {
        std::array<std::uint8_t, 2 * kResyncBytes> joined{};
        std::memcpy(joined.data(), resync_buf_.data(), resync_len_);
        const std::size_t more = std::min(v.cap, kResyncBytes);
        if (more > 0) std::memcpy(joined.data() + resync_len_, v.head, more);
        const Probe p = starts_command(joined.data(), resync_len_ + more, known_only);
        if (p == Probe::kYes) {
            request_sync_ = Sync::kSynced;
            first_sync_ = true;
            requests_.reset();
            const std::uint8_t held = resync_len_;
            resync_len_ = 0;
            parse_requests(View({resync_buf_.data(), held}, resync_first_ns_, resync_last_ns_),
                           sink);
            // What was held may have gone wrong after all: then this segment is probed afresh.
            return request_sync_ == Sync::kSynced || resync_requests(v, sink);
        }
        if (p == Probe::kPrefix && v.captured() && resync_len_ + v.cap <= kResyncBytes) {
            std::memcpy(resync_buf_.data() + resync_len_, v.head, v.cap);
            resync_len_ = static_cast<std::uint8_t>(resync_len_ + v.cap);
            resync_last_ns_ = v.ts;
            return false;
        }
        // What was held did not become a command.
        resync_len_ = 0;
        request_skipped_ = true;
        ++redis_stats_.skipped_segments;
    }
    const Probe p = starts_command(v.head, v.cap, known_only);
    if (p == Probe::kYes) {
        request_sync_ = Sync::kSynced;
        first_sync_ = true;
        requests_.reset();
        return true;
    }
    if (p == Probe::kPrefix && v.captured() && v.cap <= kResyncBytes) {
        std::memcpy(resync_buf_.data(), v.head, v.cap);
        resync_len_ = static_cast<std::uint8_t>(v.cap);
        resync_first_ns_ = v.first_ts;
        resync_last_ns_ = v.ts;
        return false;
    }
    request_skipped_ = true;
    skip(v, p != Probe::kNo || starts_reply(v.head, v.cap));
    return false;
}

void RedisConnection::parse_requests(const View& v, RequestSink& sink) {
    std::uint64_t pos = 0;
    for (;;) {
        const RespReader::Result r = requests_.next(v, pos);
        switch (r) {
            case RespReader::Result::kMessage:
                on_command(requests_.end_ns(), sink);
                break;
            case RespReader::Result::kNeedMore:
                return;
            case RespReader::Result::kLost:
            case RespReader::Result::kInvalid:
                request_lost(v, r, sink);
                return;
        }
    }
}

void RedisConnection::on_command(std::uint64_t end_ns, RequestSink& sink) {
    const Value& top = requests_.top();
    const std::span<const Value> el = requests_.elements();
    if (el.empty()) return;
    confirmed_ = true;
    Pending p;
    p.start_ns = requests_.start_ns();
    const NamedCommand named =
        name_command(el[0].text, el.size() > 1 ? &el[1].text : nullptr, top.integer, p.op);
    p.kind = named.kind;
    const std::int64_t argc = top.integer;
    switch (p.kind) {
        case CommandKind::kKeysLookup:
        case CommandKind::kExists:
            p.keys = clamp_count(argc - 1);
            break;
        case CommandKind::kFieldsLookup:
            p.keys = clamp_count(argc - 2);
            break;
        case CommandKind::kSelect:
            p.arg = el.size() > 1 ? parse_db(el[1].text) : kNoDb;
            break;
        case CommandKind::kHello:
            p.arg = el.size() > 1 ? (el[1].text.equals_upper("3")   ? 3
                                     : el[1].text.equals_upper("2") ? 2
                                                                    : 0)
                                  : 0;
            break;
        case CommandKind::kClient:
            if (el.size() > 2 && el[1].text.equals_upper("REPLY")) {
                // CLIENT REPLY OFF and SKIP get no reply themselves.
                if (el[2].text.equals_upper("OFF")) {
                    reply_mode_ = ReplyMode::kOff;
                    ++redis_stats_.no_reply_commands;
                    report(p, nullptr, end_ns, sink);
                    return;
                }
                if (el[2].text.equals_upper("SKIP")) {
                    if (reply_mode_ == ReplyMode::kOn) reply_mode_ = ReplyMode::kSkipNext;
                    ++redis_stats_.no_reply_commands;
                    report(p, nullptr, end_ns, sink);
                    return;
                }
                if (el[2].text.equals_upper("ON")) reply_mode_ = ReplyMode::kOn;
            }
            break;
        default:
            if (is_subscribe_family(p.kind)) p.arg = clamp_count(argc - 1);
            break;
    }
    if (reply_mode_ != ReplyMode::kOn) {
        if (reply_mode_ == ReplyMode::kSkipNext) reply_mode_ = ReplyMode::kOn;
        ++redis_stats_.no_reply_commands;
        report(p, nullptr, end_ns, sink);
        return;
    }
    enqueue(p);
}

void RedisConnection::enqueue(const Pending& command) {
    if (pending_.full()) {
        ++stats_.dropped_requests;
        if (dropped_tail_ != UINT32_MAX) ++dropped_tail_;
        return;
    }
    Pending p = command;
    p.dropped_before = dropped_tail_;
    p.gap_before = gap_tail_;
    dropped_tail_ = 0;
    gap_tail_ = false;
    pending_.push_back(p);
}

void RedisConnection::request_lost(const View& v, RespReader::Result r, RequestSink& sink) {
    if (r == RespReader::Result::kInvalid && requests_.failed_at_boundary()) {
        ++stats_.unparsed_segments;
    } else {
        ++stats_.desyncs;
        // The command whose arguments went by unseen is still a command.
        if (r == RespReader::Result::kLost && requests_.has_partial_command())
            on_command(v.ts, sink);
    }
    // Commands may hide in what follows; Redis answers garbage with an error reply too.
    gap_tail_ = true;
    requests_.reset();
    request_sync_ = Sync::kResync;
}

bool RedisConnection::can_resync_replies(const View& v) const {
    // Replies mean something only once their commands were seen.
    if (pending_.empty() || pending_.front().start_ns > v.first_ts) return false;
    return starts_reply(v.head, v.cap);
}

void RedisConnection::parse_replies(const View& v, RequestSink& sink) {
    std::uint64_t pos = 0;
    for (;;) {
        const bool exec_next = !pending_.empty() && pending_.front().kind == CommandKind::kExec;
        replies_.set_keep(exec_next ? RespReader::kMaxKeepLimit : RespReader::kDefaultKeep);
        const RespReader::Result r = replies_.next(v, pos);
        switch (r) {
            case RespReader::Result::kMessage:
                on_reply(sink);
                break;
            case RespReader::Result::kNeedMore:
                return;
            case RespReader::Result::kLost:
            case RespReader::Result::kInvalid:
                reply_lost(v, r, sink);
                return;
        }
    }
}

void RedisConnection::on_reply(RequestSink& sink) {
    const Value& top = replies_.top();
    const std::span<const Value> el = replies_.elements();
    if (is_resp3_type(top.type)) resp3_ = true;
    if (top.type == '>') {
        on_push(sink);
        return;
    }
    if (!resp3_ && top.type == '*' && !el.empty() && el[0].type == '$' &&
        (subscribed_ || (!pending_.empty() && is_subscribe_family(pending_.front().kind)))) {
        const PushKind kind = push_kind(el[0].text);
        if (kind != PushKind::kOther) {
            on_push(sink);
            return;
        }
    }
    if (monitor_ && top.type == '+' && top.text.size > 0 && top.text.bytes[0] >= '0' &&
        top.text.bytes[0] <= '9') {
        ++stats_.pushes;  // MONITOR's feed: "+<time> [db addr] command..."
        return;
    }
    match_reply(sink);
}

void RedisConnection::on_push(RequestSink& sink) {
    const std::span<const Value> el = replies_.elements();
    const PushKind kind =
        !el.empty() && el[0].is_string() ? push_kind(el[0].text) : PushKind::kOther;
    if (kind == PushKind::kOther || kind == PushKind::kMessage) {
        ++stats_.pushes;
        return;
    }
    const bool has_count = el.size() > 2 && el[2].type == ':';
    if (has_count) subscribed_ = el[2].integer > 0;
    const CommandKind want = confirmed_command(kind);
    // An unsubscribe from all is over when another kind of confirmation comes
    // (UNSUBSCRIBE + PUNSUBSCRIBE sent together).
    if (!pending_.empty() && pending_.front().kind != want) finish_unsubscribe_all(sink);
    if (!pending_.empty()) {
        Pending& head = pending_.front();
        if (head.kind == want && !head.gap_before && head.dropped_before == 0 &&
            head.start_ns <= replies_.start_ns()) {
            ++redis_stats_.confirmations;
            ++head.confirmations;
            head.last_end_ns = replies_.end_ns();
            const bool none_left =
                (el.size() > 1 && el[1].null) || (has_count && el[2].integer == 0);
            if (head.arg == 0 ? none_left : head.confirmations >= head.arg) {
                const Pending done = head;
                pending_.pop_front();
                report(done, nullptr, done.last_end_ns, sink);
            }
            return;
        }
    }
    ++redis_stats_.stray_confirmations;
}

void RedisConnection::finish_unsubscribe_all(RequestSink& sink) {
    if (pending_.empty()) return;
    const Pending& head = pending_.front();
    if (head.arg != 0 || head.confirmations == 0 || !is_subscribe_family(head.kind)) return;
    const Pending done = head;
    pending_.pop_front();
    report(done, nullptr, done.last_end_ns, sink);
}

void RedisConnection::match_reply(RequestSink& sink) {
    finish_unsubscribe_all(sink);
    const std::uint64_t reply_start = replies_.start_ns();
    if (pending_.empty()) {
        if (dropped_tail_ > 0) {
            --dropped_tail_;  // the reply of a command dropped from the full queue
        } else if (gap_tail_) {
            ++redis_stats_.gap_replies;
        } else {
            ++stats_.unmatched_responses;
        }
        return;
    }
    Pending& head = pending_.front();
    if (head.gap_before) {
        // Until the next seen command was sent, replies belong to commands never seen.
        if (head.start_ns > reply_start) {
            ++redis_stats_.gap_replies;
            return;
        }
        head.gap_before = false;
    }
    if (head.dropped_before > 0) {
        --head.dropped_before;
        return;
    }
    if (head.start_ns > reply_start) {
        ++stats_.unmatched_responses;  // a reply cannot begin before its command
        return;
    }
    const Pending p = head;
    pending_.pop_front();
    complete(p, replies_.top(), replies_.elements(), replies_.end_ns(), sink);
}

void RedisConnection::complete(const Pending& p, const Value& reply,
                               std::span<const Value> elements, std::uint64_t end_ns,
                               RequestSink& sink) {
    if (p.kind == CommandKind::kExec) {
        finish_exec(p, reply, elements, end_ns, sink);
        return;
    }
    if (reply.type == '+' && reply.text.equals_upper("QUEUED")) {
        // Runs at EXEC, whose reply carries its real one.
        ++redis_stats_.queued_commands;
        if (tx_.size() >= kMaxQueued) {
            ++tx_dropped_;
            ++stats_.dropped_requests;
        } else {
            tx_.push_back(p);
        }
        return;
    }
    report(p, &reply, end_ns, sink);
    apply_effects(p, reply);
}

void RedisConnection::finish_exec(const Pending& exec, const Value& reply,
                                  std::span<const Value> elements, std::uint64_t end_ns,
                                  RequestSink& sink) {
    if (!reply.is_aggregate() || reply.null) {
        // EXECABORT, or nil when a WATCHed key changed: nothing queued ran.
        ++redis_stats_.aborted_transactions;
        discard_transaction();
        report(exec, &reply, end_ns, sink);
        return;
    }
    // The results are the queued commands', in order. Picked up inside a transaction, the
    // first ones were never seen: align on the last.
    const std::uint64_t results = clamp_count(reply.integer);
    const std::uint64_t known = tx_.size() + tx_dropped_;
    const std::uint64_t unseen = results > known ? results - known : 0;
    for (std::size_t j = 0; j < tx_.size(); ++j) {
        const std::uint64_t index = unseen + j;
        if (index >= results) {
            ++redis_stats_.discarded_commands;
            continue;
        }
        const Value* result = index < elements.size() ? &elements[index] : nullptr;
        report(tx_[j], result, end_ns, sink);
        if (result != nullptr) apply_effects(tx_[j], *result);
    }
    tx_.clear();
    tx_dropped_ = 0;
    if (tx_.capacity() > 64) std::vector<Pending>().swap(tx_);
    report(exec, &reply, end_ns, sink);
}

void RedisConnection::apply_effects(const Pending& p, const Value& reply) {
    if (reply.is_error()) return;
    switch (p.kind) {
        case CommandKind::kSelect:
            if (p.arg != kNoDb) set_db(p.arg);
            break;
        case CommandKind::kHello:
            if (p.arg != 0) resp3_ = p.arg == 3;
            break;
        case CommandKind::kMonitor:
            monitor_ = true;
            break;
        case CommandKind::kReset:
            reset_session();
            break;
        case CommandKind::kDiscard:
            ++redis_stats_.aborted_transactions;
            discard_transaction();
            break;
        case CommandKind::kMulti:
            discard_transaction();  // leftovers of a transaction whose EXEC went unseen
            break;
        default:
            break;
    }
}

void RedisConnection::reply_lost(const View& v, RespReader::Result r, RequestSink& sink) {
    if (r == RespReader::Result::kInvalid && replies_.failed_at_boundary())
        ++stats_.unparsed_segments;
    else
        ++stats_.desyncs;
    // The replies due in this segment went by unseen: their commands end here, outcome unknown.
    while (!pending_.empty() && pending_.front().start_ns <= v.ts) {
        const Pending p = pending_.front();
        pending_.pop_front();
        ++redis_stats_.unseen_replies;
        report(p, nullptr, v.ts, sink);
        if (p.kind == CommandKind::kExec) {
            for (const Pending& queued : tx_) {
                ++redis_stats_.unseen_replies;
                report(queued, nullptr, v.ts, sink);
            }
            tx_.clear();
            tx_dropped_ = 0;
        }
    }
    replies_.reset();
    reply_sync_ = Sync::kResync;
}

void RedisConnection::report(const Pending& p, const Value* reply, std::uint64_t end_ns,
                             RequestSink& sink, std::string_view error) {
    Request r;
    r.protocol = Protocol::kRedis;
    r.side = side_;
    r.operation = p.op.view();
    r.db_namespace = db_namespace();
    r.start_ns = p.start_ns;
    r.end_ns = std::max(end_ns, p.start_ns);
    if (!error.empty()) {
        r.error = error;
    } else if (reply != nullptr) {
        if (reply->is_error())
            r.error = {error_buf_, error_prefix(reply->text, error_buf_)};
        else
            count_lookups(p, *reply, r);
    }
    sink.on_request(r);
}

void RedisConnection::discard_transaction() {
    redis_stats_.discarded_commands += tx_.size() + tx_dropped_;
    tx_.clear();
    tx_dropped_ = 0;
    if (tx_.capacity() > 64) std::vector<Pending>().swap(tx_);
}

void RedisConnection::reset_session() {
    set_db(0);
    resp3_ = false;
    subscribed_ = false;
    monitor_ = false;
    reply_mode_ = ReplyMode::kOn;
    discard_transaction();
}

void RedisConnection::set_db(std::uint32_t db) {
    char digits[10];
    std::size_t n = 0;
    do {
        digits[n++] = static_cast<char>('0' + db % 10);
        db /= 10;
    } while (db != 0);
    for (std::size_t i = 0; i < n; ++i)
        db_text_[i] = digits[n - 1 - i];
    db_len_ = static_cast<std::uint8_t>(n);
}

void RedisConnection::on_close(std::uint64_t timestamp_ns, RequestSink& sink) {
    finish_unsubscribe_all(sink);
    while (!pending_.empty()) {
        const Pending p = pending_.front();
        pending_.pop_front();
        report(p, nullptr, timestamp_ns, sink, "closed");
    }
    discard_transaction();
    // Ready for another connection: only the counters carry over.
    requests_.reset();
    replies_.reset();
    request_sync_ = Sync::kResync;
    reply_sync_ = Sync::kFresh;
    first_sync_ = false;
    request_skipped_ = false;
    seen_ingress_ = seen_egress_ = false;
    gap_tail_ = false;
    dropped_tail_ = 0;
    resync_len_ = 0;
    reset_session();
}

}  // namespace loupe::redis
