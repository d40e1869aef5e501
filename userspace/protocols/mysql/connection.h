// MySQL / MariaDB commands matched to their replies over one connection's segments: the parser
// the pipeline creates per MySQL connection (through mysql::make_parser, mysql.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/mysql/packet.h"
#include "protocols/mysql/types.h"
#include "protocols/protocol.h"
#include "protocols/sql/statement.h"

namespace loupe::mysql {

using Shape = std::shared_ptr<const sql::StatementShape>;

// How a command's reply ends.
enum class ReplyKind : std::uint8_t {
    kResult,     // OK, ERR, or result set(s) (COM_QUERY, COM_STMT_EXECUTE, COM_PING...)
    kPrepare,    // PREPARE_OK and its parameter and column definitions, or ERR
    kRows,       // rows up to EOF/OK or ERR (COM_STMT_FETCH, COM_FIELD_LIST)
    kAnyPacket,  // its first packet (COM_STATISTICS' text, COM_SET_OPTION's EOF)
    kAuth,       // COM_CHANGE_USER: an authentication exchange up to its OK or ERR
};

// A command sent and not yet answered.
struct Pending {
    std::uint64_t start_ns = 0;  // the command's first byte
    std::uint64_t serial = 0;    // its rank among the connection's commands
    std::uint8_t command = 0;
    std::uint8_t seq = 0;  // sequence id of the command's last packet
    ReplyKind kind = ReplyKind::kResult;
    std::string_view name;  // the operation when there is no statement (commands without SQL)
    // COM_QUERY: its statements in order; COM_STMT_PREPARE/EXECUTE: the prepared statement.
    std::vector<Shape> statements;
    std::size_t next_statement = 0;  // the statement the next result belongs to
    std::uint64_t statement_start_ns = 0;
    std::string database;         // COM_INIT_DB: the database it selects
    bool close_prepared = false;  // COM_STMT_PREPARE closed (id -1) before its reply
};

// One MySQL connection. How it reads the segments:
//  - Side: the hint when the connection was seen opening; otherwise inferred from the first
//    packet recognised: a server greeting is written by the server, a HandshakeResponse or a
//    command (sequence id 0, a known command byte) by the client.
//  - Handshake: the greeting's version names the system ("mariadb" when it contains "MariaDB",
//    else "mysql") and gives the server's capabilities; the HandshakeResponse gives the client's
//    (CLIENT_DEPRECATE_EOF and CLIENT_COMPRESS count when both sides set them) and the database.
//    An SSL request (a 32-byte HandshakeResponse with CLIENT_SSL) makes the rest TLS: counted;
//    socket segments are skipped from then on, and a TLS library's plaintext (Segment::tls) goes
//    on with the HandshakeResponse as packet 2. A compressed connection is counted and not parsed.
//  - Picked up mid-stream: nothing is parsed until a segment that starts with a command; replies
//    are read from the first segment after it. Capabilities unknown: EOF packets are told from
//    OK packets by their length (EOF: 5 bytes).
//  - Commands: one per packet with sequence id 0, queued in order (pipelining allowed); client
//    packets with other ids continue an exchange (LOCAL INFILE data, authentication). Replies
//    pair with the oldest command. COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA and COM_QUIT get no
//    reply: reported when sent.
//  - Replies: OK, ERR, EOF, result sets (with or without EOF after the column definitions, as
//    CLIENT_DEPRECATE_EOF says), several results (SERVER_MORE_RESULTS_EXISTS), PREPARE_OK with
//    its definitions. Sequence ids are checked (mod 256) across each reply.
//  - Several statements in one COM_QUERY: one operation per statement, each ended by its own
//    result; the first starts with the command, the next ones where the previous result ended.
//    After an ERR the rest did not run and are not reported.
//  - Prepared statements: a per-connection table (at most kMaxStatements, least recently used
//    evicted) maps statement ids to the shape of the prepared text (never the text itself);
//    MariaDB's id 0xFFFFFFFF is the last statement prepared.
//  - Bytes never captured: payloads are skipped by count, whatever their size. A packet header
//    in bytes never seen loses the direction's footing: on the reply side, the commands waiting
//    are reported when the next command is sent (or at the close), ending with the last reply
//    bytes moved before it (MysqlStats::unseen_replies); on the command side, parsing resumes at
//    the next segment that starts with a command.
//  - on_close reports every command still waiting with error "closed".
class MysqlConnection final : public protocols::ConnectionParser {
  public:
    static constexpr std::size_t kMaxPending = 32;             // more are dropped and counted
    static constexpr std::size_t kMaxStatements = 128;         // prepared statements per connection
    static constexpr std::size_t kMaxStatementsPerQuery = 16;  // more are folded into the last
    // Payload bytes kept of a client packet: the SQL text the statement shape is made from.
    static constexpr std::size_t kRequestKeep = 8192;
    // Of a server packet: the greeting's version and capabilities, OK/ERR/EOF fields.
    static constexpr std::size_t kReplyKeep = 256;
    // Segments not recognised before the connection is given up (not MySQL).
    static constexpr std::size_t kProbeBudget = 8;

    explicit MysqlConnection(protocols::Side hint = protocols::Side::kUnknown) noexcept;

    void on_segment(const protocols::Segment& segment, protocols::RequestSink& sink) override;
    void on_close(std::uint64_t timestamp_ns, protocols::RequestSink& sink) override;
    protocols::Side side() const noexcept override { return side_; }
    const protocols::ParserStats& stats() const noexcept override { return stats_; }
    std::size_t memory_bytes() const noexcept override;

    std::span<const std::uint64_t> protocol_counters() const noexcept override;

    const MysqlStats& mysql_stats() const noexcept { return mysql_stats_; }
    std::size_t pending_commands() const noexcept { return pending_.size(); }
    std::size_t prepared_statements() const noexcept { return statements_.size(); }
    std::string_view system_name() const noexcept { return system_name_; }
    std::string_view database() const noexcept { return database_; }
    bool deprecate_eof() const noexcept { return (capabilities_ & kClientDeprecateEof) != 0; }

  private:
    enum class Phase : std::uint8_t {
        kUnknown,   // nothing recognised yet
        kGreeting,  // (not used as a start: the greeting itself moves to kResponse)
        kResponse,  // greeting seen: the HandshakeResponse is next
        kAuth,      // authentication exchange, up to the server's OK
        kCommand,   // commands and replies
        kStopped,   // TLS, compressed, failed authentication, not MySQL: nothing more parsed
    };
    enum class ReplyState : std::uint8_t {
        kFirst,       // a reply's (or a next result's) first packet
        kColumns,     // column definitions, left_ more
        kColumnsEof,  // the EOF after them (unless CLIENT_DEPRECATE_EOF)
        kRows,        // rows up to EOF/OK or ERR
        kParams,      // PREPARE_OK's parameter definitions
        kParamsEof,
        kPrepareColumns,  // PREPARE_OK's column definitions
        kPrepareColumnsEof,
    };
    struct Prepared {
        std::uint32_t id = 0;
        Shape shape;
        std::uint64_t used = 0;  // for eviction: the least recently used goes
    };

    bool is_request(protocols::Direction d) const noexcept;
    void read_direction(const View& v, bool request, protocols::RequestSink& sink);
    bool recognise(const Packet& p, bool egress);
    void on_request_packet(const Packet& p, protocols::RequestSink& sink);
    void on_reply_packet(const Packet& p, protocols::RequestSink& sink);
    void on_greeting(const Packet& p);
    void on_handshake_response(const Packet& p);
    void on_command(const Packet& p, protocols::RequestSink& sink);
    void reply_in_command(const Packet& p, protocols::RequestSink& sink);
    void end_result(const Packet& p, std::uint16_t status, protocols::RequestSink& sink);
    void end_with_error(const Packet& p, protocols::RequestSink& sink);
    void on_prepare_ok(const Packet& p, protocols::RequestSink& sink);
    void finish_pending(std::uint64_t end_ns, std::string_view error, protocols::RequestSink& sink);
    void report(const Pending& pending, const Shape& shape, std::uint64_t start_ns,
                std::uint64_t end_ns, std::string_view error, protocols::RequestSink& sink);
    void flush_lost_replies(protocols::RequestSink& sink);
    void enqueue(Pending&& p, protocols::RequestSink& sink);
    Shape find_statement(std::uint32_t id);
    void add_statement(std::uint32_t id, Shape shape);
    void close_statement(std::uint32_t id);
    void stop();
    std::string_view error_text(std::uint16_t code);

    protocols::Side side_;
    Phase phase_ = Phase::kUnknown;
    bool request_synced_ = true;  // the command direction is at a packet boundary it trusts
    bool reply_synced_ = true;
    bool reply_lost_ = false;  // reply boundaries lost: waiting commands end at the next one
    std::uint64_t last_reply_ns_ = 0;
    std::uint32_t probe_failures_ = 0;
    std::uint32_t server_capabilities_ = 0;
    std::uint32_t capabilities_ = 0;  // negotiated (both sides); 0 when unknown
    bool capabilities_known_ = false;
    // After an SSL request: only a TLS library's plaintext (Segment::tls) is parsed.
    bool encrypted_ = false;
    ReplyState reply_state_ = ReplyState::kFirst;
    std::uint64_t left_ = 0;
    std::uint16_t prepare_columns_ = 0;
    std::uint8_t expected_seq_ = 0;  // of the next reply packet
    std::string system_name_;
    std::string database_;
    char error_buf_[8] = {};

    PacketReader requests_{kRequestKeep};
    PacketReader replies_{kReplyKeep};
    std::deque<Pending> pending_;
    std::vector<Prepared> statements_;
    std::uint64_t statement_clock_ = 0;
    std::uint32_t last_prepared_id_ = kLastPreparedId;  // none yet
    Shape last_prepared_shape_;  // of the last COM_STMT_PREPARE sent (for a pipelined id -1)
    std::uint64_t serial_ = 0;   // commands sent so far
    std::uint64_t last_prepare_serial_ = 0;  // the last COM_STMT_PREPARE's (0: none)

    protocols::ParserStats stats_;
    MysqlStats mysql_stats_;
    mutable std::array<std::uint64_t, std::size(kCounterFields)> counter_values_{};
};

}  // namespace loupe::mysql
