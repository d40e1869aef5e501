#include "protocols/mysql/connection.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "protocols/mysql/mysql.h"

namespace loupe::mysql {
namespace {

using protocols::Direction;
using protocols::Protocol;
using protocols::Request;
using protocols::RequestSink;
using protocols::Segment;
using protocols::Side;

std::uint16_t le16(std::span<const std::uint8_t> b, std::size_t at) noexcept {
    return at + 2 <= b.size() ? static_cast<std::uint16_t>(b[at] | (b[at + 1] << 8)) : 0;
}

std::uint32_t le32(std::span<const std::uint8_t> b, std::size_t at) noexcept {
    if (at + 4 > b.size()) return 0;
    return std::uint32_t{b[at]} | (std::uint32_t{b[at + 1]} << 8) |
           (std::uint32_t{b[at + 2]} << 16) | (std::uint32_t{b[at + 3]} << 24);
}

// A length-encoded integer at `at`: advances `at`; false when it does not fit in `b`.
bool lenenc(std::span<const std::uint8_t> b, std::size_t& at, std::uint64_t& value) noexcept {
    if (at >= b.size()) return false;
    const std::uint8_t first = b[at];
    std::size_t n = 0;
    if (first < 0xfb) {
        value = first;
        ++at;
        return true;
    }
    if (first == 0xfc)
        n = 2;
    else if (first == 0xfd)
        n = 3;
    else if (first == 0xfe)
        n = 8;
    else
        return false;  // 0xfb (NULL) and 0xff are no integers
    if (at + 1 + n > b.size()) return false;
    value = 0;
    for (std::size_t i = 0; i < n; ++i)
        value |= std::uint64_t{b[at + 1 + i]} << (8 * i);
    at += 1 + n;
    return true;
}

// The status flags of an OK packet (header 0x00 or 0xFE) or an EOF packet (0xFE, 5 bytes).
std::uint16_t status_of(const Packet& p) noexcept {
    if (p.length == 5 && !p.payload.empty() && p.payload[0] == 0xfe) return le16(p.payload, 3);
    std::size_t at = 1;
    std::uint64_t ignored = 0;
    if (!lenenc(p.payload, at, ignored) || !lenenc(p.payload, at, ignored)) return 0;
    return le16(p.payload, at);
}

bool is_eof(const Packet& p) noexcept {
    return p.length == 5 && !p.payload.empty() && p.payload[0] == 0xfe;
}

// The end of rows: an EOF, or an OK packet with the 0xFE header (CLIENT_DEPRECATE_EOF). A row
// can start with 0xFE only as the 8-byte length of a value of 16 MB or more: never a packet this
// short.
bool ends_rows(const Packet& p) noexcept {
    return !p.payload.empty() && p.payload[0] == 0xfe && p.length < kMaxPacketPayload;
}

bool is_command_byte(std::uint8_t b) noexcept {
    return (b <= kComResetConnection && b != kComSleep) || b == kComStmtBulkExecute;
}

// The command names reported for commands that carry no SQL.
std::string_view command_name(std::uint8_t command) noexcept {
    switch (command) {
        case kComQuit:
            return "QUIT";
        case kComInitDb:
            return "INIT_DB";
        case kComQuery:
            return "_OTHER";
        case kComFieldList:
            return "FIELD_LIST";
        case kComStatistics:
            return "STATISTICS";
        case kComProcessInfo:
            return "PROCESS_INFO";
        case kComProcessKill:
            return "PROCESS_KILL";
        case kComDebug:
            return "DEBUG";
        case kComPing:
            return "PING";
        case kComChangeUser:
            return "CHANGE_USER";
        case kComStmtPrepare:
            return "STMT_PREPARE";
        case kComStmtExecute:
            return "STMT_EXECUTE";
        case kComStmtSendLongData:
            return "STMT_SEND_LONG_DATA";
        case kComStmtClose:
            return "STMT_CLOSE";
        case kComStmtReset:
            return "STMT_RESET";
        case kComSetOption:
            return "SET_OPTION";
        case kComStmtFetch:
            return "STMT_FETCH";
        case kComResetConnection:
            return "RESET_CONNECTION";
        case kComStmtBulkExecute:
            return "STMT_BULK_EXECUTE";
        default:
            return "_OTHER";
    }
}

std::string_view as_text(std::span<const std::uint8_t> b) noexcept {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// A NUL-terminated string at `at` within the kept bytes: advances past the NUL.
bool nul_string(std::span<const std::uint8_t> b, std::size_t& at, std::string_view& out) noexcept {
    if (at > b.size()) return false;
    const auto* begin = b.data() + at;
    const auto* end = std::find(begin, b.data() + b.size(), std::uint8_t{0});
    if (end == b.data() + b.size()) return false;
    out = as_text({begin, end});
    at = static_cast<std::size_t>(end - b.data()) + 1;
    return true;
}

// A database name as a label value: printable, bounded (MySQL's limit is 64 characters).
std::string clean_name(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 64))
        out += (c >= 0x21 && c < 0x7f) ? c : '_';
    return out;
}

}  // namespace

std::unique_ptr<protocols::ConnectionParser> make_parser(Side hint) {
    return std::make_unique<MysqlConnection>(hint);
}

MysqlConnection::MysqlConnection(Side hint) noexcept : side_(hint) {}

std::span<const std::uint64_t> MysqlConnection::protocol_counters() const noexcept {
    for (std::size_t i = 0; i < counter_values_.size(); ++i)
        counter_values_[i] = mysql_stats_.*kCounterFields[i];
    return counter_values_;
}

std::size_t MysqlConnection::memory_bytes() const noexcept {
    std::size_t bytes = sizeof(*this) + requests_.memory_bytes() + replies_.memory_bytes() +
                        statements_.capacity() * sizeof(Prepared) + database_.capacity() +
                        system_name_.capacity();
    auto shape_bytes = [](const Shape& s) {
        return s ? sizeof(sql::StatementShape) + s->operation.capacity() + s->summary.capacity() +
                       s->collection.capacity() + s->normalized.capacity()
                 : 0;
    };
    for (const auto& s : statements_)
        bytes += shape_bytes(s.shape);
    for (const auto& p : pending_) {
        bytes += sizeof(Pending) + p.statements.capacity() * sizeof(Shape) + p.database.capacity();
        for (const auto& s : p.statements)
            bytes += shape_bytes(s);
    }
    return bytes;
}

bool MysqlConnection::is_request(Direction d) const noexcept {
    // Requests are what the client writes and the server reads.
    return (side_ == Side::kServer) == (d == Direction::kIngress);
}

void MysqlConnection::stop() {
    phase_ = Phase::kStopped;
    pending_.clear();
    statements_.clear();
    requests_.reset();
    replies_.reset();
}

void MysqlConnection::on_segment(const Segment& segment, RequestSink& sink) {
    if (phase_ == Phase::kStopped || (encrypted_ && !segment.tls)) {
        ++mysql_stats_.skipped_segments;
        return;
    }
    const View v(segment);
    if (phase_ == Phase::kUnknown) {
        // Only a packet at the very start of a segment is trusted as a start.
        PacketReader probe(kRequestKeep);
        std::uint64_t pos = 0;
        const bool egress = segment.direction == Direction::kEgress;
        if (probe.next(v, pos) != PacketReader::Result::kPacket ||
            !recognise(probe.packet(), egress)) {
            ++mysql_stats_.skipped_segments;
            if (v.cap == v.len && ++probe_failures_ >= kProbeBudget) {
                mysql_stats_.not_mysql = true;
                ++stats_.unparsed_segments;
                stop();
            }
            return;
        }
        // Recognised: parse the segment again from its start, in step now.
        requests_.reset();
        replies_.reset();
    }
    read_direction(v, is_request(segment.direction), sink);
}

// Whether a segment's first packet starts a conversation loupe can follow: a greeting, a
// HandshakeResponse, or a command. Sets the side and the phase when it does.
bool MysqlConnection::recognise(const Packet& p, bool egress) {
    const auto b = p.payload;
    if (b.empty()) return false;
    Side sender = Side::kUnknown;
    Phase phase = Phase::kUnknown;
    if (p.seq == 0 && b[0] == 10 && p.whole && b.size() >= 2 && b[1] >= '0' && b[1] <= '9' &&
        std::find(b.begin(), b.end(), std::uint8_t{0}) != b.end()) {
        sender = Side::kServer;
        phase = Phase::kGreeting;
    } else if (p.seq == 1 && p.length >= 32 && (le32(b, 0) & kClientProtocol41) != 0) {
        sender = Side::kClient;
        phase = Phase::kResponse;
    } else if (p.seq == 0 && is_command_byte(b[0]) && b[0] != kComBinlogDump &&
               b[0] != kComBinlogDumpGtid) {
        if (b[0] == kComQuery) {
            // Text, as a statement starts: not a binary record that happens to begin with 3.
            if (b.size() < 2) return false;
            const std::uint8_t c = b[1];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '(' || c == '/' ||
                  c == ' ' || c == '\n' || c == '\t'))
                return false;
        }
        sender = Side::kClient;
        phase = Phase::kCommand;
    } else {
        return false;
    }
    if (side_ == Side::kUnknown) {
        side_ = egress ? sender : (sender == Side::kServer ? Side::kClient : Side::kServer);
    } else if ((egress && side_ != sender) || (!egress && side_ == sender)) {
        return false;  // the hint says the other party sends this
    }
    // The greeting is then read as a packet of the reply direction (which moves to kResponse).
    phase_ = phase;
    if (phase == Phase::kCommand) reply_synced_ = true;
    return true;
}

void MysqlConnection::read_direction(const View& v, bool request, RequestSink& sink) {
    PacketReader& reader = request ? requests_ : replies_;
    if (!request) last_reply_ns_ = v.ts;
    if (request && !request_synced_) {
        // Footing lost: resume only at a segment that starts with a command.
        PacketReader probe(kRequestKeep);
        std::uint64_t pos = 0;
        if (probe.next(v, pos) != PacketReader::Result::kPacket || probe.packet().seq != 0 ||
            probe.packet().payload.empty() || !is_command_byte(probe.packet().payload[0])) {
            ++mysql_stats_.skipped_segments;
            return;
        }
        request_synced_ = true;
        reader.reset();
    }
    if (!request && (reply_lost_ || !reply_synced_)) {
        ++mysql_stats_.skipped_segments;
        return;
    }
    std::uint64_t pos = 0;
    for (;;) {
        const auto r = reader.next(v, pos);
        if (r == PacketReader::Result::kNeedMore) return;
        if (r == PacketReader::Result::kLost) {
            ++stats_.desyncs;
            if (request) {
                request_synced_ = false;
            } else {
                reply_lost_ = !pending_.empty();
                if (!reply_lost_) reply_synced_ = false;
            }
            reader.reset();
            return;
        }
        if (request)
            on_request_packet(reader.packet(), sink);
        else
            on_reply_packet(reader.packet(), sink);
        if (phase_ == Phase::kStopped) return;
        if (!request && (reply_lost_ || !reply_synced_)) return;
    }
}

void MysqlConnection::on_greeting(const Packet& p) {
    const auto b = p.payload;
    if (b.empty() || b[0] != 10) {
        if (!b.empty() && b[0] == 0xff) ++mysql_stats_.auth_failures;  // refused (too many...)
        stop();
        return;
    }
    std::size_t at = 1;
    std::string_view version;
    if (!nul_string(b, at, version)) {
        stop();
        return;
    }
    system_name_ = version.find("MariaDB") != std::string_view::npos ? "mariadb" : "mysql";
    at += 4 + 8 + 1;  // thread id, auth-plugin-data part 1, filler
    server_capabilities_ = le16(b, at);
    if (at + 7 <= b.size()) server_capabilities_ |= std::uint32_t{le16(b, at + 5)} << 16;
    phase_ = Phase::kResponse;
}

void MysqlConnection::on_handshake_response(const Packet& p) {
    const auto b = p.payload;
    const std::uint32_t client = le32(b, 0);
    if ((client & kClientProtocol41) == 0) {  // protocol 3.20: not followed
        stop();
        return;
    }
    if ((client & kClientSsl) != 0 && p.length == 32) {
        // An SSL request: TLS from the next byte on. The HandshakeResponse follows (sequence 2)
        // in the plaintext a TLS library's hooks deliver, if any.
        ++mysql_stats_.tls_connections;
        encrypted_ = true;
        return;
    }
    capabilities_ = server_capabilities_ != 0 ? (client & server_capabilities_) : client;
    capabilities_known_ = true;
    if ((capabilities_ & kClientCompress) != 0) {
        ++mysql_stats_.compressed_connections;
        stop();
        return;
    }
    phase_ = Phase::kAuth;
    if ((capabilities_ & kClientConnectWithDb) == 0) return;
    std::size_t at = 32;
    std::string_view user;
    if (!nul_string(b, at, user)) return;
    std::uint64_t auth_len = 0;
    if ((client & kClientPluginAuthLenencData) != 0) {
        if (!lenenc(b, at, auth_len)) return;
    } else if ((client & kClientSecureConnection) != 0) {
        if (at >= b.size()) return;
        auth_len = b[at++];
    } else {
        std::string_view ignored;
        if (!nul_string(b, at, ignored)) return;
    }
    if (auth_len > b.size() - std::min(at, b.size())) return;
    at += static_cast<std::size_t>(auth_len);
    std::string_view db;
    if (nul_string(b, at, db)) database_ = clean_name(db);
}

void MysqlConnection::on_request_packet(const Packet& p, RequestSink& sink) {
    switch (phase_) {
        case Phase::kResponse:
            if (p.seq == (encrypted_ ? 2 : 1)) on_handshake_response(p);
            return;
        case Phase::kAuth:
            return;  // authentication data: nothing to report
        case Phase::kCommand:
            break;
        default:
            return;
    }
    if (p.seq != 0) {
        // A continuation of the exchange in progress (LOCAL INFILE data, an auth switch
        // response): the server's next packet follows it.
        expected_seq_ = static_cast<std::uint8_t>(p.last_seq + 1);
        return;
    }
    if (p.payload.empty() || !is_command_byte(p.payload[0])) {
        ++stats_.unparsed_segments;
        request_synced_ = false;
        return;
    }
    on_command(p, sink);
}

void MysqlConnection::flush_lost_replies(RequestSink& sink) {
    if (!reply_lost_) return;
    while (!pending_.empty()) {
        ++mysql_stats_.unseen_replies;
        finish_pending(std::max(last_reply_ns_, pending_.front().start_ns), {}, sink);
    }
    reply_lost_ = false;
    reply_synced_ = true;
    replies_.reset();
    reply_state_ = ReplyState::kFirst;
}

void MysqlConnection::on_command(const Packet& p, RequestSink& sink) {
    flush_lost_replies(sink);
    if (!reply_synced_ && pending_.empty() && replies_.idle()) reply_synced_ = true;
    const auto b = p.payload;
    const std::uint8_t command = b[0];
    Pending pending;
    pending.start_ns = p.start_ns;
    pending.statement_start_ns = p.start_ns;
    pending.command = command;
    pending.seq = p.last_seq;
    pending.name = command_name(command);
    switch (command) {
        case kComQuery: {
            std::size_t at = 1;
            if ((capabilities_ & kClientQueryAttributes) != 0) {
                std::uint64_t params = 0, sets = 0;
                if (!lenenc(b, at, params) || !lenenc(b, at, sets) || params != 0) at = b.size();
            }
            const std::string_view text = as_text(b.subspan(std::min(at, b.size())));
            auto parts = sql::split_statements(text, sql::Dialect::mysql);
            if (parts.empty()) parts.push_back(text);
            if (parts.size() > kMaxStatementsPerQuery) parts.resize(kMaxStatementsPerQuery);
            pending.statements.reserve(parts.size());
            for (auto part : parts)
                pending.statements.push_back(std::make_shared<const sql::StatementShape>(
                    sql::describe_statement(part, sql::Dialect::mysql)));
            break;
        }
        case kComStmtPrepare: {
            const std::string_view text = as_text(b.subspan(1));
            pending.kind = ReplyKind::kPrepare;
            pending.statements.push_back(std::make_shared<const sql::StatementShape>(
                sql::describe_statement(text, sql::Dialect::mysql)));
            last_prepared_shape_ = pending.statements.front();
            last_prepare_serial_ = serial_ + 1;
            break;
        }
        case kComBinlogDump:
        case kComBinlogDumpGtid:
            // A replica's binary log stream: events, not replies. Not followed.
            ++mysql_stats_.replication_connections;
            stop();
            return;
        case kComStmtExecute:
        case kComStmtBulkExecute: {
            const std::uint32_t id = le32(b, 1);
            Shape shape = id == kLastPreparedId ? last_prepared_shape_ : find_statement(id);
            if (shape) {
                pending.statements.push_back(std::move(shape));
            } else {
                ++mysql_stats_.unknown_statements;
            }
            break;
        }
        case kComStmtFetch:
        case kComFieldList:
            pending.kind = ReplyKind::kRows;
            break;
        case kComStatistics:
        case kComSetOption:
        case kComDebug:
            pending.kind = ReplyKind::kAnyPacket;
            break;
        case kComChangeUser:
            pending.kind = ReplyKind::kAuth;
            break;
        case kComInitDb:
            pending.database = clean_name(as_text(b.subspan(1)));
            break;
        case kComStmtClose:
        case kComStmtReset: {
            std::uint32_t id = le32(b, 1);
            bool prepare_pending = false;
            if (id == kLastPreparedId) {
                id = last_prepared_id_;
                // Sent before the prepare's reply: the id is not known yet; the prepare is
                // dropped when its reply comes.
                for (auto& q : pending_)
                    if (q.serial == last_prepare_serial_ && q.command == kComStmtPrepare) {
                        prepare_pending = true;
                        if (command == kComStmtClose) q.close_prepared = true;
                    }
            }
            if (command == kComStmtClose && !prepare_pending) close_statement(id);
            break;
        }
        default:
            break;
    }
    pending.serial = ++serial_;
    const bool no_reply =
        command == kComStmtClose || command == kComStmtSendLongData || command == kComQuit;
    if (no_reply) {
        // Reported as sent: the server answers nothing (COM_QUIT: it closes).
        report(pending, nullptr, p.start_ns, p.end_ns, {}, sink);
        return;
    }
    enqueue(std::move(pending), sink);
}

void MysqlConnection::enqueue(Pending&& p, RequestSink&) {
    if (pending_.size() >= kMaxPending) {
        ++stats_.dropped_requests;
        return;
    }
    if (pending_.empty()) {
        reply_state_ = ReplyState::kFirst;
        expected_seq_ = static_cast<std::uint8_t>(p.seq + 1);
    }
    pending_.push_back(std::move(p));
}

Shape MysqlConnection::find_statement(std::uint32_t id) {
    for (auto& s : statements_)
        if (s.id == id) {
            s.used = ++statement_clock_;
            return s.shape;
        }
    return nullptr;
}

void MysqlConnection::add_statement(std::uint32_t id, Shape shape) {
    last_prepared_id_ = id;
    for (auto& s : statements_)
        if (s.id == id) {
            s.shape = std::move(shape);
            s.used = ++statement_clock_;
            return;
        }
    if (statements_.size() >= kMaxStatements) {
        auto lru =
            std::min_element(statements_.begin(), statements_.end(),
                             [](const Prepared& a, const Prepared& b) { return a.used < b.used; });
        *lru = Prepared{id, std::move(shape), ++statement_clock_};
        ++mysql_stats_.statements_evicted;
        return;
    }
    statements_.push_back(Prepared{id, std::move(shape), ++statement_clock_});
}

void MysqlConnection::close_statement(std::uint32_t id) {
    std::erase_if(statements_, [id](const Prepared& s) { return s.id == id; });
}

void MysqlConnection::on_reply_packet(const Packet& p, RequestSink& sink) {
    switch (phase_) {
        case Phase::kGreeting:
            on_greeting(p);
            return;
        case Phase::kResponse:
            // A server that refuses before the response (or a second greeting): nothing to do.
            return;
        case Phase::kAuth:
            if (!p.payload.empty() && p.payload[0] == 0x00) {
                phase_ = Phase::kCommand;
            } else if (!p.payload.empty() && p.payload[0] == 0xff) {
                ++mysql_stats_.auth_failures;
                stop();
            }
            return;
        case Phase::kCommand:
            reply_in_command(p, sink);
            return;
        default:
            return;
    }
}

void MysqlConnection::reply_in_command(const Packet& p, RequestSink& sink) {
    if (pending_.empty()) {
        ++stats_.unmatched_responses;
        return;
    }
    if (p.seq != expected_seq_ || p.payload.empty()) {
        // Out of sequence: the reply's boundaries are not what they seem. Its command ends with
        // the bytes seen so far, at the next command.
        ++mysql_stats_.sequence_errors;
        ++stats_.desyncs;
        reply_lost_ = true;
        replies_.reset();
        return;
    }
    expected_seq_ = static_cast<std::uint8_t>(p.last_seq + 1);
    Pending& head = pending_.front();
    const std::uint8_t first = p.payload[0];
    const bool known = capabilities_known_;
    const bool deprecate = (capabilities_ & kClientDeprecateEof) != 0;
    switch (reply_state_) {
        case ReplyState::kFirst:
            if (first == 0xff) return end_with_error(p, sink);
            switch (head.kind) {
                case ReplyKind::kAnyPacket:
                    return end_result(p, 0, sink);
                case ReplyKind::kAuth:
                    if (first == 0x00) return end_result(p, 0, sink);
                    expected_seq_ = static_cast<std::uint8_t>(p.last_seq + 2);  // client answers
                    return;
                case ReplyKind::kRows:
                    reply_state_ = ReplyState::kRows;
                    break;  // this packet is a row or the end
                case ReplyKind::kPrepare:
                    if (first == 0x00) return on_prepare_ok(p, sink);
                    return end_result(p, 0, sink);
                case ReplyKind::kResult:
                    if (first == 0x00 || first == 0xfe) return end_result(p, status_of(p), sink);
                    if (first == 0xfb) {  // LOCAL INFILE: the client sends the file, then the OK
                        expected_seq_ = static_cast<std::uint8_t>(p.last_seq + 2);
                        return;
                    }
                    {
                        std::size_t at = 0;
                        std::uint64_t columns = 0;
                        if (!lenenc(p.payload, at, columns) || columns == 0) {
                            ++stats_.desyncs;
                            reply_lost_ = true;
                            replies_.reset();
                            return;
                        }
                        left_ = columns;
                        reply_state_ = ReplyState::kColumns;
                    }
                    return;
            }
            break;
        case ReplyState::kColumns:
            if (--left_ == 0)
                reply_state_ = known && deprecate ? ReplyState::kRows : ReplyState::kColumnsEof;
            return;
        case ReplyState::kColumnsEof:
            if (is_eof(p)) {
                // A cursor was opened (COM_STMT_EXECUTE with a cursor): rows come by fetches.
                if ((status_of(p) & kServerStatusCursorExists) != 0) return end_result(p, 0, sink);
                reply_state_ = ReplyState::kRows;
                return;
            }
            reply_state_ = ReplyState::kRows;  // capabilities unknown: deprecated EOF
            break;
        case ReplyState::kParams:
            if (--left_ == 0) {
                if (!(known && deprecate)) {
                    reply_state_ = ReplyState::kParamsEof;
                } else if (prepare_columns_ > 0) {
                    left_ = prepare_columns_;
                    reply_state_ = ReplyState::kPrepareColumns;
                } else {
                    return end_result(p, 0, sink);
                }
            }
            return;
        case ReplyState::kParamsEof:
            if (prepare_columns_ > 0) {
                left_ = prepare_columns_;
                reply_state_ = ReplyState::kPrepareColumns;
                if (is_eof(p)) return;
                break;  // no EOF after the parameters: this is the first column
            }
            if (is_eof(p)) return end_result(p, 0, sink);
            return end_result(p, 0, sink);  // unexpected: end here anyway
        case ReplyState::kPrepareColumns:
            if (--left_ == 0) {
                if (known && deprecate) return end_result(p, 0, sink);
                reply_state_ = ReplyState::kPrepareColumnsEof;
            }
            return;
        case ReplyState::kPrepareColumnsEof:
            return end_result(p, 0, sink);
        case ReplyState::kRows:
            break;
    }
    // The rows state, or a packet handed on to it.
    if (reply_state_ == ReplyState::kPrepareColumns) {
        if (--left_ == 0) {
            if (known && deprecate) return end_result(p, 0, sink);
            reply_state_ = ReplyState::kPrepareColumnsEof;
        }
        return;
    }
    if (first == 0xff) return end_with_error(p, sink);
    if (ends_rows(p)) return end_result(p, status_of(p), sink);
}

void MysqlConnection::on_prepare_ok(const Packet& p, RequestSink& sink) {
    Pending& head = pending_.front();
    const std::uint32_t id = le32(p.payload, 1);
    const std::uint16_t columns = le16(p.payload, 5);
    const std::uint16_t params = le16(p.payload, 7);
    if (!head.close_prepared && !head.statements.empty())
        add_statement(id, head.statements.front());
    else
        last_prepared_id_ = id;
    prepare_columns_ = columns;
    if (params > 0) {
        left_ = params;
        reply_state_ = ReplyState::kParams;
    } else if (columns > 0) {
        left_ = columns;
        reply_state_ = ReplyState::kPrepareColumns;
    } else {
        end_result(p, 0, sink);
    }
}

std::string_view MysqlConnection::error_text(std::uint16_t code) {
    const auto r = std::to_chars(error_buf_, error_buf_ + sizeof(error_buf_), code);
    return {error_buf_, static_cast<std::size_t>(r.ptr - error_buf_)};
}

void MysqlConnection::end_with_error(const Packet& p, RequestSink& sink) {
    finish_pending(p.end_ns, error_text(le16(p.payload, 1)), sink);
}

void MysqlConnection::end_result(const Packet& p, std::uint16_t status, RequestSink& sink) {
    Pending& head = pending_.front();
    if ((status & kServerMoreResultsExist) != 0 && head.kind == ReplyKind::kResult) {
        // Another result follows: it belongs to the next statement of a multi-statement query,
        // or (a CALL) to the same one.
        if (head.next_statement + 1 < head.statements.size()) {
            report(head, head.statements[head.next_statement], head.statement_start_ns, p.end_ns,
                   {}, sink);
            ++head.next_statement;
            head.statement_start_ns = p.end_ns;
        }
        reply_state_ = ReplyState::kFirst;
        return;
    }
    if (head.command == kComInitDb && !head.database.empty()) database_ = head.database;
    if (head.command == kComResetConnection) statements_.clear();
    finish_pending(p.end_ns, {}, sink);
}

void MysqlConnection::finish_pending(std::uint64_t end_ns, std::string_view error,
                                     RequestSink& sink) {
    Pending head = std::move(pending_.front());
    pending_.pop_front();
    const Shape shape = head.next_statement < head.statements.size()
                            ? head.statements[head.next_statement]
                            : nullptr;
    report(head, shape, head.statement_start_ns, end_ns, error, sink);
    reply_state_ = ReplyState::kFirst;
    if (!pending_.empty()) expected_seq_ = static_cast<std::uint8_t>(pending_.front().seq + 1);
}

void MysqlConnection::report(const Pending& pending, const Shape& shape, std::uint64_t start_ns,
                             std::uint64_t end_ns, std::string_view error, RequestSink& sink) {
    if (side_ == Side::kUnknown) return;
    Request r;
    r.protocol = Protocol::kMysql;
    r.side = side_;
    if (shape) {
        r.operation = shape->operation;
        r.target = shape->summary;
        r.statement = shape->normalized;
        r.collection = shape->collection;
    } else {
        r.operation = pending.name;
    }
    // A prepare is reported as such: its shape is the statement's, its name the command's.
    if (pending.command == kComStmtPrepare) r.operation = pending.name;
    r.system_name = system_name_;
    r.db_namespace = database_;
    r.error = error;
    r.start_ns = start_ns;
    r.end_ns = std::max(end_ns, start_ns);
    sink.on_request(r);
}

void MysqlConnection::on_close(std::uint64_t timestamp_ns, RequestSink& sink) {
    while (!pending_.empty()) {
        if (reply_lost_) {
            ++mysql_stats_.unseen_replies;
            finish_pending(std::max(last_reply_ns_, pending_.front().start_ns), {}, sink);
        } else {
            finish_pending(timestamp_ns, "closed", sink);
        }
    }
    reply_lost_ = false;
}

}  // namespace loupe::mysql
