#include "protocols/postgres/connection.h"

#include <algorithm>
#include <functional>

#include "protocols/postgres/postgres.h"
#include "protocols/sql/statement.h"

namespace loupe::postgres {
namespace {

using protocols::Direction;
using protocols::Side;

constexpr std::string_view kExecuteVerb = "EXECUTE";

// A name as it may appear in a label: printable ASCII, at most `max` bytes.
std::string sanitized(std::string_view name, std::size_t max) {
    std::string out;
    for (const char c : name.substr(0, max))
        out += (c > 0x20 && c < 0x7f) ? c : '_';
    return out;
}

// The command tag's verb ("INSERT 0 1" -> "INSERT"): only when a Query ran more statements than
// loupe saw in its text.
std::string tag_verb(std::string_view tag) {
    std::string out;
    for (const char c : tag) {
        if (!(c >= 'A' && c <= 'Z')) break;
        out += c;
    }
    return out.empty() ? "_OTHER" : out;
}

}  // namespace

std::unique_ptr<protocols::ConnectionParser> make_parser(Side hint) {
    return std::make_unique<PostgresConnection>(hint);
}

PostgresConnection::PostgresConnection(Side hint) noexcept : side_(hint) {
    front_.set_framing(MessageReader::Framing::kStartup);
}

std::span<const std::uint64_t> PostgresConnection::protocol_counters() const noexcept {
    for (std::size_t i = 0; i < counter_values_.size(); ++i)
        counter_values_[i] = pg_stats_.*kCounterFields[i];
    return counter_values_;
}

std::size_t PostgresConnection::memory_bytes() const noexcept {
    std::size_t bytes =
        sizeof(*this) + front_.memory_bytes() + back_.memory_bytes() + database_.capacity();
    bytes += pending_.size() * sizeof(Pending);
    for (const auto& p : pending_)
        bytes += p.statements.capacity() * sizeof(ShapePtr);
    const auto shape_bytes = [](const ShapePtr& s) {
        return s ? sizeof(Shape) + s->operation.capacity() + s->summary.capacity() +
                       s->collection.capacity() + s->normalized.capacity()
                 : 0;
    };
    for (const auto* table : {&statements_, &portals_})
        for (const auto& n : *table)
            bytes += sizeof(Named) + n.name.capacity() + shape_bytes(n.shape);
    for (const auto& c : shape_cache_)
        bytes += sizeof(Cached) + shape_bytes(c.shape);
    return bytes;
}

void PostgresConnection::give_up() {
    gave_up_ = true;
    clear_pending();
}

void PostgresConnection::on_segment(const protocols::Segment& segment,
                                    protocols::RequestSink& sink) {
    if (gave_up_ || (encrypted_ && !segment.tls)) {
        ++pg_stats_.skipped_segments;
        return;
    }
    const View v(segment);
    const bool ingress = segment.direction == Direction::kIngress;
    if (side_ == Side::kUnknown) {
        if (starts_midstream_request(v)) {
            side_ = ingress ? Side::kServer : Side::kClient;
        } else if (!starts_startup_message(v.head, v.cap)) {
            ++pg_stats_.skipped_segments;
            ++stats_.unparsed_segments;
            if (++probe_failures_ >= kProbeBudget) {
                pg_stats_.not_postgres = true;
                give_up();
            }
            return;
        }
        side_ = ingress ? Side::kServer : Side::kClient;
    }
    const bool frontend = (side_ == Side::kServer) == ingress;
    parse_direction(v, frontend, sink);
}

void PostgresConnection::parse_direction(const View& v, bool frontend,
                                         protocols::RequestSink& sink) {
    MessageReader& reader = frontend ? front_ : back_;
    bool& resync = frontend ? front_resync_ : back_resync_;
    // A connection picked up mid-stream (opened before loupe started): its requests are typed
    // messages from the first one seen.
    if (frontend && reader.framing() == MessageReader::Framing::kStartup && reader.idle() &&
        pg_stats_.startups == 0 && starts_midstream_request(v)) {
        reader.set_framing(MessageReader::Framing::kTyped);
        ++pg_stats_.midstream;
    }
    if (resync) {
        if (!starts_typed_message(v.head, v.cap, frontend)) {
            ++pg_stats_.skipped_segments;
            return;
        }
        resync = false;
        reader.reset();
    }
    std::uint64_t pos = 0;
    for (;;) {
        switch (reader.next(v, pos)) {
            case MessageReader::Result::kMessage:
                if (frontend)
                    on_frontend(reader.message());
                else
                    on_backend(reader.message(), sink);
                if (gave_up_) return;
                continue;
            case MessageReader::Result::kNeedMore:
                return;
            case MessageReader::Result::kLost:
                if (!frontend && ends_with_ready(v)) {
                    finish_unseen(v, sink);
                    return;
                }
                [[fallthrough]];
            case MessageReader::Result::kInvalid:
                if (probe_failures_ < kProbeBudget && pg_stats_.startups == 0 && pending_.empty() &&
                    frontend && reader.framing() == MessageReader::Framing::kStartup) {
                    ++stats_.unparsed_segments;
                    if (++probe_failures_ >= kProbeBudget) {
                        pg_stats_.not_postgres = true;
                        give_up();
                    }
                    return;
                }
                desync(frontend);
                return;
        }
    }
}

bool PostgresConnection::starts_midstream_request(const View& v) noexcept {
    if (v.cap < 5) return false;
    const std::uint8_t type = v.head[0];
    return (type == 'Q' || type == 'P' || type == 'B') &&
           starts_typed_message(v.head, v.cap, true) && !starts_startup_message(v.head, v.cap);
}

bool PostgresConnection::ends_with_ready(const View& v) noexcept {
    if (v.tail_len < 6) return false;
    const std::uint8_t* z = v.tail + v.tail_len - 6;
    return z[0] == 'Z' && z[1] == 0 && z[2] == 0 && z[3] == 0 && z[4] == 5 &&
           (z[5] == 'I' || z[5] == 'T' || z[5] == 'E');
}

void PostgresConnection::finish_unseen(const View& v, protocols::RequestSink& sink) {
    // The replies' boundaries fell in bytes never copied, but the read ends with ReadyForQuery:
    // the oldest request was answered whole in it. Its statements are reported with this read as
    // their end and no outcome; the next read starts at a message again.
    ++stats_.desyncs;
    back_.reset();
    while (!pending_.empty() && pending_.front().start_ns <= v.ts) {
        Pending& p = pending_.front();
        if (p.kind == Kind::kExecute) {
            ++pg_stats_.unseen_replies;
            report(p, p.shape.get(), v.ts, {}, sink);
        } else if (p.kind == Kind::kQuery && !p.failed) {
            for (; p.next < p.statements.size(); ++p.next) {
                ++pg_stats_.unseen_replies;
                report(p, p.statements[p.next].get(), v.ts, {}, sink);
            }
        }
        const Kind kind = p.kind;
        pop_front();
        if (kind == Kind::kSync || kind == Kind::kQuery || kind == Kind::kFunction ||
            kind == Kind::kStartup)
            break;
    }
}

void PostgresConnection::desync(bool frontend) {
    ++stats_.desyncs;
    pg_stats_.lost_requests += pending_.size();
    clear_pending();
    skip_until_sync_ = false;
    group_open_ = false;
    if (frontend)
        front_resync_ = true;
    else
        back_resync_ = true;
}

PostgresConnection::Pending PostgresConnection::make_pending(Kind kind, std::uint64_t start_ns,
                                                             ShapePtr shape) {
    Pending p;
    p.kind = kind;
    p.start_ns = start_ns;
    p.shape = std::move(shape);
    return p;
}

void PostgresConnection::push(Pending p) {
    if (skip_until_sync_ && p.kind != Kind::kSync && p.kind != Kind::kQuery &&
        p.kind != Kind::kFunction) {
        ++pg_stats_.skipped_after_error;
        return;
    }
    if (p.kind == Kind::kSync || p.kind == Kind::kQuery || p.kind == Kind::kFunction)
        skip_until_sync_ = false;
    if (pending_.size() >= kMaxPending) {
        ++stats_.dropped_requests;
        return;
    }
    pending_statements_ += p.statements.size();
    pending_.push_back(std::move(p));
}

void PostgresConnection::pop_front() {
    pending_statements_ -= pending_.front().statements.size();
    pending_.pop_front();
}

void PostgresConnection::clear_pending() {
    pending_.clear();
    pending_statements_ = 0;
}

ShapePtr PostgresConnection::shape_of(std::string_view sql) {
    const std::uint64_t hash = std::hash<std::string_view>{}(sql);
    for (const auto& c : shape_cache_)
        if (c.hash == hash && c.length == sql.size()) return c.shape;
    sql::StatementShape described = sql::describe_statement(sql, sql::Dialect::postgres);
    auto shape = std::make_shared<Shape>(
        Shape{std::move(described.operation), std::move(described.summary),
              std::move(described.collection), std::move(described.normalized)});
    if (shape_cache_.size() < kShapeCache) {
        shape_cache_.push_back({hash, sql.size(), shape});
    } else {
        shape_cache_[shape_cache_next_] = {hash, sql.size(), shape};
        shape_cache_next_ = (shape_cache_next_ + 1) % kShapeCache;
    }
    return shape;
}

ShapePtr PostgresConnection::executed_unknown(std::string_view name) {
    ++pg_stats_.unknown_statements;
    std::string summary(kExecuteVerb);
    if (!name.empty()) {
        summary += ' ';
        summary += sanitized(name, kMaxName);
    }
    return std::make_shared<Shape>(Shape{std::string(kExecuteVerb), summary, {}, summary});
}

ShapePtr PostgresConnection::lookup(std::vector<Named>& table, std::string_view name) {
    for (auto& n : table)
        if (n.name == name) {
            n.last_use = ++tick_;
            return n.shape;
        }
    return nullptr;
}

void PostgresConnection::remember(std::vector<Named>& table, std::size_t cap, std::string_view name,
                                  ShapePtr shape, std::uint64_t& evictions) {
    for (auto& n : table)
        if (n.name == name) {
            n.shape = std::move(shape);
            n.last_use = ++tick_;
            return;
        }
    if (table.size() >= cap) {
        auto oldest =
            std::min_element(table.begin(), table.end(),
                             [](const auto& a, const auto& b) { return a.last_use < b.last_use; });
        ++evictions;
        *oldest = Named{std::string(name.substr(0, kMaxName)), std::move(shape), ++tick_};
        return;
    }
    table.push_back(Named{std::string(name.substr(0, kMaxName)), std::move(shape), ++tick_});
}

void PostgresConnection::forget(std::vector<Named>& table, std::string_view name) {
    std::erase_if(table, [&](const Named& n) { return n.name == name; });
}

void PostgresConnection::on_startup(const Message& m) {
    switch (m.code) {
        case kSslRequestCode:
        case kGssEncRequestCode:
            ++pg_stats_.ssl_requests;
            if (back_.idle()) back_.set_framing(MessageReader::Framing::kSslReply);
            return;
        case kCancelRequestCode:
            ++pg_stats_.cancel_requests;
            return;
        default:
            break;
    }
    ++pg_stats_.startups;
    front_.set_framing(MessageReader::Framing::kTyped);
    std::string_view user;
    std::string_view database;
    std::size_t at = 0;
    while (at < m.body.size() && m.body[at] != '\0') {
        const std::string_view key = c_string(m.body, at);
        const std::string_view value = c_string(m.body, at);
        if (key == "database") database = value;
        if (key == "user") user = value;
    }
    database_ = sanitized(database.empty() ? user : database, kMaxDatabase);
    push(make_pending(Kind::kStartup, m.start_ns));
}

void PostgresConnection::on_frontend(const Message& m) {
    if (m.type == 0) {
        on_startup(m);
        return;
    }
    std::size_t at = 0;
    switch (m.type) {
        case 'Q': {
            group_open_ = false;
            std::string_view text = m.body;
            if (!text.empty() && text.back() == '\0') text.remove_suffix(1);
            Pending p = make_pending(Kind::kQuery, m.start_ns);
            for (const std::string_view s : sql::split_statements(text, sql::Dialect::postgres)) {
                if (p.statements.size() >= kMaxQueryStatements ||
                    pending_statements_ + p.statements.size() >= kMaxPendingStatements) {
                    ++pg_stats_.untracked_statements;
                    continue;
                }
                ++pg_stats_.statements;
                p.statements.push_back(shape_of(s));
            }
            push(std::move(p));
            return;
        }
        case 'P': {
            if (!group_open_) group_start_ns_ = m.start_ns;
            group_open_ = true;
            const std::string_view name = c_string(m.body, at);
            const std::string_view text = c_string(m.body, at);
            ++pg_stats_.statements;
            ShapePtr shape = shape_of(text);
            if (name.empty())
                unnamed_statement_ = shape;
            else
                remember(statements_, kMaxStatements, name, shape, pg_stats_.statements_evicted);
            push(make_pending(Kind::kParse, m.start_ns, std::move(shape)));
            return;
        }
        case 'B': {
            if (!group_open_) group_start_ns_ = m.start_ns;
            group_open_ = true;
            const std::string_view portal = c_string(m.body, at);
            const std::string_view statement = c_string(m.body, at);
            ShapePtr shape =
                statement.empty() ? unnamed_statement_ : lookup(statements_, statement);
            if (!shape) shape = executed_unknown(statement);
            if (portal.empty())
                unnamed_portal_ = shape;
            else
                remember(portals_, kMaxPortals, portal, shape, pg_stats_.portals_evicted);
            push(make_pending(Kind::kBind, m.start_ns, std::move(shape)));
            return;
        }
        case 'D':
            if (!group_open_) group_start_ns_ = m.start_ns;
            group_open_ = true;
            push(make_pending(Kind::kDescribe, m.start_ns));
            return;
        case 'C': {
            if (!group_open_) group_start_ns_ = m.start_ns;
            group_open_ = true;
            const char what = m.body.empty() ? 0 : m.body[0];
            at = 1;
            const std::string_view name = c_string(m.body, at);
            if (what == 'S') {
                if (name.empty())
                    unnamed_statement_.reset();
                else
                    forget(statements_, name);
            } else if (what == 'P') {
                if (name.empty())
                    unnamed_portal_.reset();
                else
                    forget(portals_, name);
            }
            push(make_pending(Kind::kClose, m.start_ns));
            return;
        }
        case 'E': {
            const std::uint64_t start = group_open_ ? group_start_ns_ : m.start_ns;
            group_open_ = false;
            const std::string_view portal = c_string(m.body, at);
            ShapePtr shape = portal.empty() ? unnamed_portal_ : lookup(portals_, portal);
            if (!shape) shape = executed_unknown({});
            push(make_pending(Kind::kExecute, start, std::move(shape)));
            return;
        }
        case 'S':
            group_open_ = false;
            push(make_pending(Kind::kSync, m.start_ns));
            return;
        case 'F':
            group_open_ = false;
            push(make_pending(Kind::kFunction, m.start_ns));
            return;
        case 'H':  // Flush: no reply of its own
            if (!group_open_) group_start_ns_ = m.start_ns;
            group_open_ = true;
            return;
        default:  // CopyData/CopyDone/CopyFail (the COPY's reply ends it), password, Terminate
            return;
    }
}

void PostgresConnection::report(const Pending& p, const Shape* shape, std::uint64_t end_ns,
                                std::string_view error, protocols::RequestSink& sink) {
    if (!shape) return;
    protocols::Request r;
    r.protocol = protocols::Protocol::kPostgres;
    r.side = side_;
    r.operation = shape->operation;
    r.target = shape->summary;
    r.statement = shape->normalized;
    r.collection = shape->collection;
    r.error = error;
    r.db_namespace = database_;
    r.start_ns = p.start_ns;
    r.end_ns = std::max(end_ns, p.start_ns);
    sink.on_request(r);
}

void PostgresConnection::on_backend(const Message& m, protocols::RequestSink& sink) {
    if (m.answer) {
        if (m.type == 'N') {
            ++pg_stats_.ssl_refused;
        } else {
            ++pg_stats_.tls_connections;
            encrypted_ = true;
        }
        return;
    }
    switch (m.type) {
        case 'N':
        case 'S':
        case 'A':
            ++stats_.pushes;
            return;
        case 'R':
        case 'K':
        case 'v':
        case 'D':
        case 'd':
        case 'c':
        case 'G':
        case 'H':
        case 'W':
        case 't':
        case 'V':
            return;
        default:
            break;
    }
    if (pending_.empty() || m.start_ns < pending_.front().start_ns) {
        ++stats_.unmatched_responses;
        return;
    }
    Pending& front = pending_.front();
    switch (m.type) {
        case '1':
        case '2':
        case '3': {
            const Kind want = m.type == '1'   ? Kind::kParse
                              : m.type == '2' ? Kind::kBind
                                              : Kind::kClose;
            if (front.kind == want)
                pop_front();
            else
                ++stats_.unmatched_responses;
            return;
        }
        case 'T':  // RowDescription: a Describe's answer, or the head of a result
        case 'n':
            if (front.kind == Kind::kDescribe) pop_front();
            return;
        case 's':
            if (front.kind == Kind::kExecute) {
                ++pg_stats_.suspended;
                pop_front();
            }
            return;
        case 'I':
            ++pg_stats_.empty_queries;
            if (front.kind == Kind::kExecute) pop_front();
            return;
        case 'C':
            if (front.kind == Kind::kExecute) {
                report(front, front.shape.get(), m.end_ns, {}, sink);
                pop_front();
            } else if (front.kind == Kind::kQuery && !front.failed) {
                if (front.next < front.statements.size()) {
                    report(front, front.statements[front.next].get(), m.end_ns, {}, sink);
                } else {
                    ++pg_stats_.untracked_completions;
                    std::string_view tag = m.body;
                    const std::string verb = tag_verb(tag);
                    const Shape shape{verb, verb, {}, verb};
                    report(front, &shape, m.end_ns, {}, sink);
                }
                ++front.next;
            } else {
                ++stats_.unmatched_responses;
            }
            return;
        case 'E':
            on_error(m, sink);
            return;
        case 'Z':
            on_ready(m);
            return;
        default:
            ++stats_.unmatched_responses;
            return;
    }
}

void PostgresConnection::on_error(const Message& m, protocols::RequestSink& sink) {
    std::string_view sqlstate = error_sqlstate(m.body);
    if (sqlstate.empty()) sqlstate = "error";
    Pending& front = pending_.front();
    switch (front.kind) {
        case Kind::kQuery:
            if (front.failed) {
                ++pg_stats_.other_errors;
                return;
            }
            if (front.next < front.statements.size()) {
                report(front, front.statements[front.next].get(), m.end_ns, sqlstate, sink);
            } else {
                const Shape shape{"_OTHER", "_OTHER", {}, "_OTHER"};
                report(front, &shape, m.end_ns, sqlstate, sink);
            }
            front.failed = true;  // the rest of the Query does not run
            return;
        case Kind::kParse:
        case Kind::kBind:
        case Kind::kExecute:
            report(front, front.shape.get(), m.end_ns, sqlstate, sink);
            break;
        case Kind::kSync:
        case Kind::kFunction:
        case Kind::kStartup:
            ++pg_stats_.other_errors;
            return;  // ReadyForQuery (or the close) ends it
        default:
            ++pg_stats_.other_errors;
            break;
    }
    // Extended query: the server skips every message up to the next Sync.
    pop_front();
    while (!pending_.empty() && pending_.front().kind != Kind::kSync &&
           pending_.front().kind != Kind::kQuery && pending_.front().kind != Kind::kFunction) {
        ++pg_stats_.skipped_after_error;
        pop_front();
    }
    if (pending_.empty()) skip_until_sync_ = true;
}

void PostgresConnection::on_ready(const Message&) {
    while (!pending_.empty()) {
        const Kind kind = pending_.front().kind;
        pop_front();
        if (kind == Kind::kSync || kind == Kind::kQuery || kind == Kind::kFunction ||
            kind == Kind::kStartup)
            return;
        ++pg_stats_.skipped_after_error;
    }
}

void PostgresConnection::on_close(std::uint64_t timestamp_ns, protocols::RequestSink& sink) {
    for (auto& p : pending_) {
        if (p.kind == Kind::kExecute) {
            report(p, p.shape.get(), timestamp_ns, "closed", sink);
        } else if (p.kind == Kind::kQuery && !p.failed && p.next < p.statements.size()) {
            report(p, p.statements[p.next].get(), timestamp_ns, "closed", sink);
        }
    }
    clear_pending();
}

}  // namespace loupe::postgres
