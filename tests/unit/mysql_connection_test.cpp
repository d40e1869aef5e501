// MySQL / MariaDB conversations, byte for byte as the protocol lays them out, through one
// connection's parser: handshake, text and prepared statements, result sets with and without
// EOF, several results, errors, TLS, streams picked up mid-way, bytes never captured.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/mysql/connection.h"
#include "protocols/mysql/types.h"
#include "protocols/sql/statement.h"

namespace loupe::mysql {
namespace {

using protocols::Direction;
using protocols::Side;
using Bytes = std::vector<std::uint8_t>;

struct Got {
    std::string operation, target, collection, system, db, error;
    std::uint64_t start = 0, end = 0;
    Side side = Side::kUnknown;
};

struct Sink : protocols::RequestSink {
    void on_request(const protocols::Request& r) override {
        EXPECT_EQ(r.protocol, protocols::Protocol::kMysql);
        got.push_back({std::string(r.operation), std::string(r.target), std::string(r.collection),
                       std::string(r.system_name), std::string(r.db_namespace),
                       std::string(r.error), r.start_ns, r.end_ns, r.side});
    }
    std::vector<Got> got;
};

constexpr std::uint32_t kServerCaps = kClientProtocol41 | kClientSecureConnection |
                                      kClientPluginAuth | kClientPluginAuthLenencData |
                                      kClientConnectWithDb | kClientDeprecateEof | kClientSsl;

void put16(Bytes& b, std::uint32_t v) {
    b.push_back(static_cast<std::uint8_t>(v));
    b.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(Bytes& b, std::uint32_t v) {
    put16(b, v);
    put16(b, v >> 16);
}
void put(Bytes& b, std::string_view s) {
    b.insert(b.end(), s.begin(), s.end());
}

Bytes packet(std::uint8_t seq, const Bytes& payload) {
    Bytes b;
    b.push_back(static_cast<std::uint8_t>(payload.size()));
    b.push_back(static_cast<std::uint8_t>(payload.size() >> 8));
    b.push_back(static_cast<std::uint8_t>(payload.size() >> 16));
    b.push_back(seq);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

Bytes greeting(std::string_view version, std::uint32_t caps = kServerCaps) {
    Bytes p = {10};
    put(p, version);
    p.push_back(0);
    put32(p, 42);
    put(p, "abcdefgh");
    p.push_back(0);
    put16(p, caps & 0xffff);
    p.push_back(45);
    put16(p, 2);
    put16(p, caps >> 16);
    p.push_back(21);
    p.resize(p.size() + 10, 0);
    put(p, "ijklmnopqrst");
    p.push_back(0);
    put(p, "mysql_native_password");
    p.push_back(0);
    return packet(0, p);
}

Bytes response(std::uint32_t caps, std::string_view db) {
    Bytes p;
    put32(p, caps);
    put32(p, 1 << 24);
    p.push_back(45);
    p.resize(p.size() + 23, 0);
    put(p, "sbtest");
    p.push_back(0);
    p.push_back(20);
    p.resize(p.size() + 20, 'a');
    if (!db.empty()) {
        put(p, db);
        p.push_back(0);
    }
    put(p, "mysql_native_password");
    p.push_back(0);
    return packet(1, p);
}

Bytes ok(std::uint8_t seq, std::uint16_t status = 2, std::uint8_t header = 0x00) {
    Bytes p = {header, 0, 0};
    put16(p, status);
    put16(p, 0);
    return packet(seq, p);
}

Bytes eof(std::uint8_t seq, std::uint16_t status = 2) {
    Bytes p = {0xfe, 0, 0};
    put16(p, status);
    return packet(seq, p);
}

Bytes err(std::uint8_t seq, std::uint16_t code) {
    Bytes p = {0xff};
    put16(p, code);
    put(p, "#23000Duplicate entry");
    return packet(seq, p);
}

Bytes command(std::uint8_t cmd, std::string_view arg) {
    Bytes p = {cmd};
    put(p, arg);
    return packet(0, p);
}

Bytes stmt_command(std::uint8_t cmd, std::uint32_t id) {
    Bytes p = {cmd};
    put32(p, id);
    if (cmd == kComStmtExecute) {
        p.push_back(0);
        put32(p, 1);
    }
    return packet(0, p);
}

void append(Bytes& to, const Bytes& b) {
    to.insert(to.end(), b.begin(), b.end());
}

// A text result set: its packets from sequence id `seq` on; `seq` is left after the last one.
Bytes result_set(std::uint8_t& seq, int columns, int rows, bool deprecate_eof,
                 std::uint16_t status = 2) {
    Bytes out;
    append(out, packet(seq++, {static_cast<std::uint8_t>(columns)}));
    for (int i = 0; i < columns; ++i) {
        Bytes def = {3, 'd', 'e', 'f', 0, 0, 0, 1, 'c', 1, 'c', 0x0c};
        def.resize(def.size() + 13, 0);
        append(out, packet(seq++, def));
    }
    if (!deprecate_eof) append(out, eof(seq++, status));
    for (int r = 0; r < rows; ++r) {
        Bytes row;
        for (int i = 0; i < columns; ++i) {
            row.push_back(3);
            put(row, "val");
        }
        append(out, packet(seq++, row));
    }
    append(out, deprecate_eof ? ok(seq++, status, 0xfe) : eof(seq++, status));
    return out;
}

class Conversation {
  public:
    explicit Conversation(Side side = Side::kServer) : conn(side), side_(side) {}

    // The client writes (the server reads) `b`.
    void client(const Bytes& b, std::uint64_t ts) { send(b, ts, side_ != Side::kClient); }
    void server(const Bytes& b, std::uint64_t ts) { send(b, ts, side_ == Side::kClient); }

    void handshake(std::uint32_t client_caps, std::string_view version = "5.5.5-10.11.6-MariaDB",
                   std::string_view db = "sbtest") {
        server(greeting(version), 1);
        client(response(client_caps | (db.empty() ? 0 : kClientConnectWithDb), db), 2);
        server(ok(2), 3);
    }

    MysqlConnection conn;
    Sink sink;
    bool tls_plaintext = false;  // segments from a TLS library's hooks

  private:
    void send(const Bytes& b, std::uint64_t ts, bool ingress) {
        protocols::Segment s;
        s.tls = tls_plaintext;
        s.direction = ingress ? Direction::kIngress : Direction::kEgress;
        s.timestamp_ns = ts;
        s.length = b.size();
        s.head = b;
        conn.on_segment(s, sink);
    }
    Side side_;
};

constexpr std::uint32_t kClientCaps =
    kClientProtocol41 | kClientSecureConnection | kClientPluginAuth | kClientPluginAuthLenencData;

// What a summary must be with any summariser: it starts with the verb.
void expect_summary(const Got& g, std::string_view verb) {
    EXPECT_EQ(g.operation, verb);
    EXPECT_EQ(g.target.substr(0, verb.size()), verb) << g.target;
}

TEST(MysqlConnection, MariadbHandshakeAndQueryWithDeprecatedEof) {
    Conversation c;
    c.handshake(kClientCaps | kClientDeprecateEof);
    EXPECT_EQ(c.conn.system_name(), "mariadb");
    EXPECT_EQ(c.conn.database(), "sbtest");
    EXPECT_TRUE(c.conn.deprecate_eof());
    c.client(command(kComQuery, "SELECT c FROM sbtest1 WHERE id=5"), 100);
    std::uint8_t seq = 1;
    c.server(result_set(seq, 1, 3, true), 150);
    ASSERT_EQ(c.sink.got.size(), 1u);
    const Got& g = c.sink.got[0];
    expect_summary(g, "SELECT");
    EXPECT_EQ(g.system, "mariadb");
    EXPECT_EQ(g.db, "sbtest");
    EXPECT_EQ(g.error, "");
    EXPECT_EQ(g.start, 100u);
    EXPECT_EQ(g.end, 150u);
    EXPECT_EQ(g.side, Side::kServer);
    EXPECT_EQ(c.conn.pending_commands(), 0u);
    EXPECT_EQ(c.conn.stats().desyncs, 0u);
}

TEST(MysqlConnection, MysqlResultSetWithEofsSplitOverReads) {
    Conversation c(Side::kClient);
    c.handshake(kClientCaps, "8.0.36");
    EXPECT_EQ(c.conn.system_name(), "mysql");
    EXPECT_FALSE(c.conn.deprecate_eof());
    c.client(command(kComQuery, "select * from t"), 100);
    std::uint8_t seq = 1;
    const Bytes rs = result_set(seq, 2, 5, false);
    // Read in pieces of 7 bytes: headers split anywhere.
    for (std::size_t i = 0; i < rs.size(); i += 7) {
        const Bytes piece(rs.begin() + static_cast<long>(i),
                          rs.begin() + static_cast<long>(std::min(rs.size(), i + 7)));
        c.server(piece, 200 + i);
    }
    ASSERT_EQ(c.sink.got.size(), 1u);
    EXPECT_EQ(c.sink.got[0].operation, "SELECT");
    EXPECT_EQ(c.sink.got[0].side, Side::kClient);
    EXPECT_EQ(c.sink.got[0].end, 200u + (rs.size() - 1) / 7 * 7);
}

TEST(MysqlConnection, ErrorsCarryTheirNumber) {
    Conversation c;
    c.handshake(kClientCaps | kClientDeprecateEof);
    c.client(command(kComQuery, "INSERT INTO t VALUES (1)"), 10);
    c.server(err(1, 1062), 20);
    c.client(command(kComQuery, "SELEC oops"), 30);
    c.server(err(1, 1064), 40);
    ASSERT_EQ(c.sink.got.size(), 2u);
    EXPECT_EQ(c.sink.got[0].operation, "INSERT");
    EXPECT_EQ(c.sink.got[0].error, "1062");
    EXPECT_EQ(c.sink.got[1].error, "1064");
}

TEST(MysqlConnection, PreparedStatementsByIdAndLastPrepared) {
    Conversation c;
    c.handshake(kClientCaps);  // EOF packets after definitions
    c.client(command(kComStmtPrepare, "UPDATE sbtest1 SET k=k+1 WHERE id=?"), 10);
    Bytes prep = {0x00};
    put32(prep, 7);  // statement id
    put16(prep, 0);  // columns
    put16(prep, 1);  // params
    prep.push_back(0);
    put16(prep, 0);
    Bytes reply = packet(1, prep);
    append(reply, packet(2, {3, 'd', 'e', 'f'}));  // the parameter's definition
    append(reply, eof(3));
    c.server(reply, 20);
    EXPECT_EQ(c.conn.prepared_statements(), 1u);
    c.client(stmt_command(kComStmtExecute, 7), 30);
    c.server(ok(1), 40);
    // MariaDB's pipelined PREPARE + EXECUTE(-1): the id is not known when the execute is sent.
    Bytes both = command(kComStmtPrepare, "DELETE FROM sbtest1 WHERE id=?");
    append(both, stmt_command(kComStmtExecute, kLastPreparedId));
    c.client(both, 50);
    Bytes prep2 = {0x00};
    put32(prep2, 8);
    put16(prep2, 0);
    put16(prep2, 0);
    prep2.push_back(0);
    put16(prep2, 0);
    Bytes replies = packet(1, prep2);
    append(replies, ok(1));
    c.server(replies, 60);
    // PREPARE, EXECUTE(-1), CLOSE(-1) pipelined (MariaDB's execute_direct): the statement is
    // never kept, and the one prepared before stays.
    Bytes direct = command(kComStmtPrepare, "SELECT 1");
    append(direct, stmt_command(kComStmtExecute, kLastPreparedId));
    append(direct, stmt_command(kComStmtClose, kLastPreparedId));
    c.client(direct, 62);
    Bytes prep3 = {0x00};
    put32(prep3, 9);
    put16(prep3, 0);
    put16(prep3, 0);
    prep3.push_back(0);
    put16(prep3, 0);
    Bytes replies3 = packet(1, prep3);
    append(replies3, ok(1));
    c.server(replies3, 64);
    EXPECT_EQ(c.conn.prepared_statements(), 2u);               // 7 and 8
    c.sink.got.erase(c.sink.got.end() - 3, c.sink.got.end());  // STMT_CLOSE, PREPARE, SELECT
    c.client(stmt_command(kComStmtClose, 7), 70);
    c.client(stmt_command(kComStmtExecute, 99), 80);  // prepared before loupe looked
    c.server(ok(1), 90);
    ASSERT_EQ(c.sink.got.size(), 6u);
    EXPECT_EQ(c.sink.got[0].operation, "STMT_PREPARE");
    EXPECT_EQ(c.sink.got[0].target.substr(0, 6), "UPDATE");
    expect_summary(c.sink.got[1], "UPDATE");
    EXPECT_EQ(c.sink.got[1].start, 30u);
    EXPECT_EQ(c.sink.got[1].end, 40u);
    EXPECT_EQ(c.sink.got[2].operation, "STMT_PREPARE");
    expect_summary(c.sink.got[3], "DELETE");
    EXPECT_EQ(c.sink.got[4].operation, "STMT_CLOSE");
    EXPECT_EQ(c.sink.got[5].operation, "STMT_EXECUTE");
    EXPECT_EQ(c.sink.got[5].target, "");
    EXPECT_EQ(c.conn.prepared_statements(), 1u);
    EXPECT_EQ(c.conn.mysql_stats().unknown_statements, 1u);
}

TEST(MysqlConnection, MariadbBulkExecuteAndReplicationStream) {
    Conversation c;
    c.handshake(kClientCaps | kClientDeprecateEof);
    c.client(command(kComStmtPrepare, "INSERT INTO t VALUES (?)"), 10);
    Bytes prep = {0x00};
    put32(prep, 3);
    put16(prep, 0);
    put16(prep, 1);
    prep.push_back(0);
    put16(prep, 0);
    Bytes reply = packet(1, prep);
    append(reply, packet(2, {3, 'd', 'e', 'f'}));
    c.server(reply, 20);
    Bytes bulk = {kComStmtBulkExecute};
    put32(bulk, 3);
    put16(bulk, 0);
    c.client(packet(0, bulk), 30);
    c.server(ok(1), 40);
    ASSERT_EQ(c.sink.got.size(), 2u);
    EXPECT_EQ(c.sink.got[1].operation, "INSERT");
    c.client(command(kComBinlogDump, "\x04\x00\x00\x00"), 50);
    c.server(ok(1), 60);
    c.server(ok(2), 70);
    EXPECT_EQ(c.sink.got.size(), 2u);
    EXPECT_EQ(c.conn.mysql_stats().replication_connections, 1u);
}

TEST(MysqlConnection, SeveralResultsOfOneQuery) {
    Conversation c;
    c.handshake(kClientCaps | kClientDeprecateEof);
    const std::string_view text = "SELECT 1; SELECT 2";
    c.client(command(kComQuery, text), 10);
    std::uint8_t seq = 1;
    Bytes reply = result_set(seq, 1, 1, true, 2 | kServerMoreResultsExist);
    c.server(reply, 20);
    Bytes second = result_set(seq, 1, 1, true, 2);
    c.server(second, 30);
    // One operation per statement the summariser splits the text into; the last ends last.
    const std::size_t statements = sql::split_statements(text).size();
    ASSERT_EQ(c.sink.got.size(), statements);
    EXPECT_EQ(c.sink.got.back().end, 30u);
    if (statements == 2) {
        EXPECT_EQ(c.sink.got[0].end, 20u);
        EXPECT_EQ(c.sink.got[1].start, 20u);
    }
    // A CALL: several results, one statement.
    c.client(command(kComQuery, "CALL p()"), 40);
    seq = 1;
    reply = result_set(seq, 1, 2, true, 2 | kServerMoreResultsExist);
    append(reply, ok(seq++, 2));
    c.server(reply, 50);
    ASSERT_EQ(c.sink.got.size(), statements + 1);
    EXPECT_EQ(c.sink.got.back().operation, "CALL");
    EXPECT_EQ(c.sink.got.back().end, 50u);
}

TEST(MysqlConnection, SequenceIdsWrapInLongResults) {
    Conversation c;
    c.handshake(kClientCaps | kClientDeprecateEof);
    c.client(command(kComQuery, "SELECT * FROM big"), 10);
    std::uint8_t seq = 1;
    c.server(result_set(seq, 3, 600, true), 20);
    ASSERT_EQ(c.sink.got.size(), 1u);
    EXPECT_EQ(c.conn.mysql_stats().sequence_errors, 0u);
}

TEST(MysqlConnection, InitDbChangesTheNamespaceAndPingQuit) {
    Conversation c;
    c.handshake(kClientCaps, "10.11.6-MariaDB", "");
    EXPECT_EQ(c.conn.database(), "");
    c.client(command(kComInitDb, "shop"), 10);
    c.server(ok(1), 20);
    c.client(command(kComPing, ""), 30);
    c.server(ok(1), 40);
    c.client(command(kComQuit, ""), 50);
    ASSERT_EQ(c.sink.got.size(), 3u);
    EXPECT_EQ(c.sink.got[0].operation, "INIT_DB");
    EXPECT_EQ(c.sink.got[0].db, "shop");  // the database it selected
    EXPECT_EQ(c.sink.got[1].operation, "PING");
    EXPECT_EQ(c.sink.got[1].db, "shop");
    EXPECT_EQ(c.sink.got[2].operation, "QUIT");
}

TEST(MysqlConnection, SslRequestStopsParsing) {
    Conversation c;
    c.server(greeting("10.11.6-MariaDB"), 1);
    Bytes ssl;
    put32(ssl, kClientCaps | kClientSsl);
    put32(ssl, 1 << 24);
    ssl.push_back(45);
    ssl.resize(32, 0);
    c.client(packet(1, ssl), 2);
    c.client({0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5}, 3);
    EXPECT_EQ(c.conn.mysql_stats().tls_connections, 1u);
    EXPECT_TRUE(c.sink.got.empty());
}

TEST(MysqlConnection, SslRequestGoesOnWithTheTlsLibrarysPlaintext) {
    Conversation c;
    c.server(greeting("10.11.6-MariaDB"), 1);
    Bytes ssl;
    put32(ssl, kClientCaps | kClientSsl | kClientConnectWithDb);
    put32(ssl, 1 << 24);
    ssl.push_back(45);
    ssl.resize(32, 0);
    c.client(packet(1, ssl), 2);
    c.client({0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5}, 3);  // ciphertext: skipped
    c.tls_plaintext = true;
    Bytes full = response(kClientCaps | kClientSsl | kClientConnectWithDb, "shop");
    full[3] = 2;  // the HandshakeResponse after the SSL request is packet 2
    c.client(full, 4);
    c.server(ok(3), 5);
    c.client(command(kComQuery, "SELECT 1"), 10);
    std::uint8_t seq = 1;
    c.server(result_set(seq, 1, 1, false), 11);
    EXPECT_EQ(c.conn.mysql_stats().tls_connections, 1u);
    ASSERT_EQ(c.sink.got.size(), 1u);
    EXPECT_EQ(c.sink.got[0].operation, "SELECT");
    EXPECT_EQ(c.sink.got[0].db, "shop");
    EXPECT_EQ(c.sink.got[0].system, "mariadb");
}

TEST(MysqlConnection, PickedUpMidStreamOnACommand) {
    Conversation c(Side::kUnknown);
    // The tail of an earlier result, then a command the client writes (egress: a client).
    protocols::Segment junk;
    Bytes tail = {0x01, 0x02, 0x03};
    junk.direction = Direction::kIngress;
    junk.timestamp_ns = 1;
    junk.length = tail.size();
    junk.head = tail;
    c.conn.on_segment(junk, c.sink);
    Bytes q = command(kComQuery, "UPDATE t SET a=1");
    protocols::Segment s;
    s.direction = Direction::kEgress;
    s.timestamp_ns = 10;
    s.length = q.size();
    s.head = q;
    c.conn.on_segment(s, c.sink);
    EXPECT_EQ(c.conn.side(), Side::kClient);
    Bytes r = ok(1);
    s.direction = Direction::kIngress;
    s.timestamp_ns = 20;
    s.length = r.size();
    s.head = r;
    c.conn.on_segment(s, c.sink);
    ASSERT_EQ(c.sink.got.size(), 1u);
    EXPECT_EQ(c.sink.got[0].operation, "UPDATE");
    EXPECT_EQ(c.sink.got[0].system, "");  // no greeting seen: the spec's "mysql"
}

TEST(MysqlConnection, ReplyBoundariesLostEndAtTheLastReplyBytes) {
    Conversation c;
    c.handshake(kClientCaps | kClientDeprecateEof);
    c.client(command(kComQuery, "SELECT * FROM big"), 10);
    std::uint8_t seq = 1;
    const Bytes rs = result_set(seq, 2, 2000, true);
    // Captured: the first 1000 bytes of each of two writes; their rows' headers are lost.
    const std::size_t half = rs.size() / 2;
    for (int i = 0; i < 2; ++i) {
        protocols::Segment s;
        s.direction = Direction::kEgress;
        s.timestamp_ns = 20 + i * 10;
        s.length = i == 0 ? half : rs.size() - half;
        s.head = std::span<const std::uint8_t>(rs).subspan(i == 0 ? 0 : half, 1000);
        c.conn.on_segment(s, c.sink);
    }
    EXPECT_TRUE(c.sink.got.empty());
    c.client(command(kComQuery, "COMMIT"), 50);
    c.server(ok(1), 60);
    ASSERT_EQ(c.sink.got.size(), 2u);
    EXPECT_EQ(c.sink.got[0].operation, "SELECT");
    EXPECT_EQ(c.sink.got[0].end, 30u);
    EXPECT_EQ(c.sink.got[1].operation, "COMMIT");
    EXPECT_EQ(c.sink.got[1].end, 60u);
    EXPECT_EQ(c.conn.mysql_stats().unseen_replies, 1u);
}

TEST(MysqlConnection, GarbageIsGivenUp) {
    Conversation c(Side::kServer);
    const Bytes junk = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P'};
    for (int i = 0; i < 10; ++i)
        c.client(junk, 1 + i);
    EXPECT_TRUE(c.conn.mysql_stats().not_mysql);
    EXPECT_TRUE(c.sink.got.empty());
}

TEST(MysqlConnection, CloseReportsWaitingCommands) {
    Conversation c;
    c.handshake(kClientCaps | kClientDeprecateEof);
    c.client(command(kComQuery, "SELECT SLEEP(10)"), 10);
    c.conn.on_close(99, c.sink);
    ASSERT_EQ(c.sink.got.size(), 1u);
    EXPECT_EQ(c.sink.got[0].error, "closed");
    EXPECT_EQ(c.sink.got[0].end, 99u);
}

TEST(MysqlConnection, AuthenticationFailureStops) {
    Conversation c;
    c.server(greeting("10.11.6-MariaDB"), 1);
    c.client(response(kClientCaps, ""), 2);
    c.server(err(2, 1045), 3);
    EXPECT_EQ(c.conn.mysql_stats().auth_failures, 1u);
    c.client(command(kComQuery, "SELECT 1"), 4);
    EXPECT_TRUE(c.sink.got.empty());
}

}  // namespace
}  // namespace loupe::mysql
