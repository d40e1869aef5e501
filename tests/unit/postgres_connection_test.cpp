// PostgreSQL statements matched to replies over captured segments
// (protocols/postgres/connection.h).
#include "protocols/postgres/connection.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "postgres_wire.h"
#include "protocols/postgres/postgres.h"

namespace loupe::postgres {
namespace {

using namespace wire;
using protocols::Direction;
using protocols::Request;
using protocols::Segment;
using protocols::Side;

// One finished operation, copied out of the Request.
struct Op {
    std::string operation, summary, error, db;
    Side side = Side::kUnknown;
    std::uint64_t start = 0, end = 0;
};

struct Sink final : protocols::RequestSink {
    std::vector<Op> ops;
    void on_request(const Request& r) override {
        EXPECT_EQ(r.protocol, protocols::Protocol::kPostgres);
        ops.push_back({std::string(r.operation), std::string(r.target), std::string(r.error),
                       std::string(r.db_namespace), r.side, r.start_ns, r.end_ns});
    }
};

// A conversation seen from one side: the client writes and reads, the server the reverse.
struct Conversation {
    explicit Conversation(Side seen_from) : side(seen_from), parser(seen_from) {}

    void feed(Direction d, const std::string& bytes, std::uint64_t ts,
              std::size_t captured = SIZE_MAX) {
        Segment s;
        s.tls = tls_plaintext;
        s.direction = d;
        s.timestamp_ns = ts;
        s.length = bytes.size();
        s.head = {reinterpret_cast<const std::uint8_t*>(bytes.data()),
                  std::min(captured, bytes.size())};
        parser.on_segment(s, sink);
    }
    void frontend(const std::string& bytes, std::uint64_t ts, std::size_t captured = SIZE_MAX) {
        feed(side == Side::kClient ? Direction::kEgress : Direction::kIngress, bytes, ts, captured);
    }
    void backend(const std::string& bytes, std::uint64_t ts, std::size_t captured = SIZE_MAX) {
        feed(side == Side::kClient ? Direction::kIngress : Direction::kEgress, bytes, ts, captured);
    }
    void connect(std::string_view database = "bench") {
        frontend(startup({{"user", "loupe"}, {"database", database}}), 1);
        backend(startup_reply(), 2);
    }

    Side side;
    PostgresConnection parser;
    Sink sink;
    bool tls_plaintext = false;  // segments from a TLS library's hooks
};

class PostgresBothSides : public ::testing::TestWithParam<Side> {};
INSTANTIATE_TEST_SUITE_P(Sides, PostgresBothSides, ::testing::Values(Side::kClient, Side::kServer));

TEST_P(PostgresBothSides, SimpleQuery) {
    Conversation c(GetParam());
    c.connect("shop");
    c.frontend(query("SELECT 1"), 10);
    c.backend(row_description() + data_row("1") + complete("SELECT 1") + ready(), 25);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].operation, "SELECT");
    EXPECT_EQ(c.sink.ops[0].summary.rfind("SELECT", 0), 0u);
    EXPECT_EQ(c.sink.ops[0].db, "shop");
    EXPECT_EQ(c.sink.ops[0].error, "");
    EXPECT_EQ(c.sink.ops[0].side, GetParam());
    EXPECT_EQ(c.sink.ops[0].start, 10u);
    EXPECT_EQ(c.sink.ops[0].end, 25u);
    EXPECT_EQ(c.parser.pending(), 0u);
    EXPECT_EQ(c.parser.stats().unmatched_responses, 0u);
}

TEST_P(PostgresBothSides, SeveralStatementsInOneQueryEachEndedByItsReply) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(query("BEGIN; UPDATE t SET a = 1; COMMIT"), 10);
    c.backend(complete("BEGIN"), 11);
    c.backend(complete("UPDATE 1"), 12);
    c.backend(complete("COMMIT") + ready(), 13);
    ASSERT_EQ(c.sink.ops.size(), 3u);
    EXPECT_EQ(c.sink.ops[0].operation, "BEGIN");
    EXPECT_EQ(c.sink.ops[1].operation, "UPDATE");
    EXPECT_EQ(c.sink.ops[2].operation, "COMMIT");
    EXPECT_EQ(c.sink.ops[0].end, 11u);
    EXPECT_EQ(c.sink.ops[1].end, 12u);
    EXPECT_EQ(c.sink.ops[2].start, 10u);
    EXPECT_EQ(c.sink.ops[2].end, 13u);
}

TEST_P(PostgresBothSides, ErrorCarriesSqlstateAndEndsTheQuery) {
    Conversation c(GetParam());
    c.connect();
    const auto pushes = c.parser.stats().pushes;
    c.frontend(query("INSERT INTO t VALUES (1)"), 10);
    c.backend(notice() + error("23505") + ready(), 20);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].operation, "INSERT");
    EXPECT_EQ(c.sink.ops[0].error, "23505");
    EXPECT_EQ(c.parser.stats().pushes, pushes + 1);  // the notice is no reply
    c.frontend(query("SELEC 1"), 30);
    c.backend(error("42601") + ready(), 31);
    ASSERT_EQ(c.sink.ops.size(), 2u);
    EXPECT_EQ(c.sink.ops[1].error, "42601");
}

TEST_P(PostgresBothSides, EmptyQueryIsNoOperation) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(query(""), 10);
    c.backend(msg('I', "") + ready(), 11);
    EXPECT_TRUE(c.sink.ops.empty());
    EXPECT_EQ(c.parser.postgres_stats().empty_queries, 1u);
    EXPECT_EQ(c.parser.pending(), 0u);
}

TEST_P(PostgresBothSides, CopyInAndOut) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(query("COPY t FROM STDIN"), 10);
    c.backend(msg('G', std::string(3, '\0')), 11);
    c.frontend(msg('d', "1\t2\n") + msg('d', "3\t4\n") + msg('c', ""), 12);
    c.backend(complete("COPY 2") + ready(), 13);
    c.frontend(query("COPY t TO STDOUT"), 20);
    c.backend(msg('H', std::string(3, '\0')) + msg('d', "1\t2\n") + msg('c', "") +
                  complete("COPY 1") + ready(),
              21);
    ASSERT_EQ(c.sink.ops.size(), 2u);
    EXPECT_EQ(c.sink.ops[0].operation, "COPY");
    EXPECT_EQ(c.sink.ops[0].start, 10u);
    EXPECT_EQ(c.sink.ops[0].end, 13u);
    EXPECT_EQ(c.sink.ops[1].end, 21u);
}

TEST_P(PostgresBothSides, ExtendedUnnamed) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(parse("", "SELECT abalance FROM pgbench_accounts WHERE aid = $1") + bind("", "") +
                   describe('P', "") + execute("") + sync(),
               10);
    c.backend(parse_complete() + bind_complete() + row_description() + data_row("0") +
                  complete("SELECT 1") + ready(),
              30);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].operation, "SELECT");
    EXPECT_EQ(c.sink.ops[0].start, 10u);
    EXPECT_EQ(c.sink.ops[0].end, 30u);
    EXPECT_EQ(c.parser.pending(), 0u);
}

TEST_P(PostgresBothSides, PipelinedExecutesBeforeOneSyncAreSeveralOperations) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(parse("", "UPDATE t SET a = $1") + bind("", "") + execute(""), 10);
    c.frontend(parse("", "SELECT a FROM t") + bind("", "") + execute(""), 11);
    c.frontend(parse("", "INSERT INTO h VALUES ($1)") + bind("", "") + execute("") + sync(), 12);
    c.backend(parse_complete() + bind_complete() + complete("UPDATE 1"), 20);
    c.backend(parse_complete() + bind_complete() + data_row("1") + complete("SELECT 1"), 21);
    c.backend(parse_complete() + bind_complete() + complete("INSERT 0 1") + ready(), 22);
    ASSERT_EQ(c.sink.ops.size(), 3u);
    EXPECT_EQ(c.sink.ops[0].operation, "UPDATE");
    EXPECT_EQ(c.sink.ops[1].operation, "SELECT");
    EXPECT_EQ(c.sink.ops[2].operation, "INSERT");
    EXPECT_EQ(c.sink.ops[1].start, 11u);
    EXPECT_EQ(c.sink.ops[1].end, 21u);
    EXPECT_EQ(c.sink.ops[2].start, 12u);
}

TEST_P(PostgresBothSides, NamedStatementsAndPortals) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(parse("P0_1", "DELETE FROM t WHERE a = $1") + describe('S', "P0_1") + sync(), 10);
    c.backend(parse_complete() + msg('t', std::string("\0\1", 2) + be32(23)) + no_data() + ready(),
              11);
    EXPECT_TRUE(c.sink.ops.empty());
    for (std::uint64_t i = 0; i < 3; ++i) {
        c.frontend(bind("cur", "P0_1") + execute("cur") + sync(), 20 + 10 * i);
        c.backend(bind_complete() + complete("DELETE 0") + ready(), 25 + 10 * i);
    }
    ASSERT_EQ(c.sink.ops.size(), 3u);
    EXPECT_EQ(c.sink.ops[2].operation, "DELETE");
    EXPECT_EQ(c.sink.ops[2].start, 40u);
    EXPECT_EQ(c.sink.ops[2].end, 45u);
    c.frontend(close_statement("P0_1") + sync(), 50);
    c.backend(close_complete() + ready(), 51);
    EXPECT_EQ(c.parser.prepared_statements(), 0u);
    EXPECT_EQ(c.parser.pending(), 0u);
}

TEST_P(PostgresBothSides, StatementPreparedBeforeLoupeIsExecuteName) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(bind("", "stmt_7") + execute("") + sync(), 10);
    c.backend(bind_complete() + complete("UPDATE 1") + ready(), 11);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].operation, "EXECUTE");
    EXPECT_EQ(c.sink.ops[0].summary, "EXECUTE stmt_7");
    EXPECT_EQ(c.parser.postgres_stats().unknown_statements, 1u);
}

TEST_P(PostgresBothSides, ErrorSkipsTheRestUpToSync) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(parse("", "INSERT INTO t VALUES ($1)") + bind("", "") + execute("") +
                   parse("", "SELECT 1") + bind("", "") + execute("") + sync(),
               10);
    c.backend(parse_complete() + bind_complete() + error("23505") + ready('E'), 20);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].operation, "INSERT");
    EXPECT_EQ(c.sink.ops[0].error, "23505");
    EXPECT_EQ(c.parser.pending(), 0u);
    // A syntax error reported by the Parse itself.
    c.frontend(parse("", "SELEC 1") + bind("", "") + execute("") + sync(), 30);
    c.backend(error("42601") + ready(), 31);
    ASSERT_EQ(c.sink.ops.size(), 2u);
    EXPECT_EQ(c.sink.ops[1].error, "42601");
    EXPECT_EQ(c.parser.pending(), 0u);
    // And the connection goes on.
    c.frontend(query("SELECT 2"), 40);
    c.backend(complete("SELECT 1") + ready(), 41);
    ASSERT_EQ(c.sink.ops.size(), 3u);
    EXPECT_EQ(c.sink.ops[2].error, "");
}

TEST_P(PostgresBothSides, SslRefusedGoesOnInPlaintext) {
    Conversation c(GetParam());
    c.frontend(ssl_request(), 1);
    c.backend("N", 2);
    c.frontend(startup({{"user", "app"}}), 3);
    c.backend(startup_reply(), 4);
    c.frontend(query("SELECT 1"), 10);
    c.backend(complete("SELECT 1") + ready(), 11);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].db, "app");  // no database: the user's name
    EXPECT_EQ(c.parser.postgres_stats().ssl_refused, 1u);
}

TEST_P(PostgresBothSides, SslRefusalGluedToTheNextMessage) {
    Conversation c(GetParam());
    c.frontend(ssl_request(), 1);
    c.backend("N" + error("28000"), 2);  // a server refusing both SSL and the connection
    EXPECT_EQ(c.parser.postgres_stats().ssl_refused, 1u);
    EXPECT_EQ(c.parser.stats().desyncs, 0u);
}

TEST_P(PostgresBothSides, SslAcceptedIsCountedAndNoLongerParsed) {
    Conversation c(GetParam());
    c.frontend(ssl_request(), 1);
    c.backend("S", 2);
    c.frontend("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 3);
    c.backend(complete("SELECT 1") + ready(), 4);
    EXPECT_TRUE(c.sink.ops.empty());
    EXPECT_EQ(c.parser.postgres_stats().tls_connections, 1u);
    EXPECT_EQ(c.parser.stats().desyncs, 0u);
}

TEST_P(PostgresBothSides, SslAcceptedGoesOnWithTheTlsLibrarysPlaintext) {
    Conversation c(GetParam());
    c.frontend(ssl_request(), 1);
    c.backend("S", 2);
    c.tls_plaintext = true;
    c.frontend(startup({{"user", "app"}, {"database", "shop"}}), 3);
    c.backend(startup_reply(), 4);
    c.frontend(query("SELECT 1"), 10);
    c.backend(complete("SELECT 1") + ready(), 11);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].operation, "SELECT");
    EXPECT_EQ(c.sink.ops[0].db, "shop");
    EXPECT_EQ(c.parser.postgres_stats().tls_connections, 1u);
    // A socket segment of the same session (ciphertext) is skipped, not parsed.
    c.tls_plaintext = false;
    c.frontend(query("SELECT 2"), 12);
    c.backend(complete("SELECT 1") + ready(), 13);
    EXPECT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.parser.stats().desyncs, 0u);
}

TEST_P(PostgresBothSides, CancelRequestCounted) {
    Conversation c(GetParam());
    c.frontend(cancel_request(), 1);
    c.parser.on_close(2, c.sink);
    EXPECT_EQ(c.parser.postgres_stats().cancel_requests, 1u);
    EXPECT_TRUE(c.sink.ops.empty());
}

TEST_P(PostgresBothSides, EveryByteInItsOwnSegment) {
    Conversation c(GetParam());
    c.connect();
    const std::string request =
        parse("", "SELECT $1") + bind("", "") + execute("") + sync() + query("BEGIN; COMMIT");
    const std::string reply = parse_complete() + bind_complete() + data_row("1") +
                              complete("SELECT 1") + ready() + complete("BEGIN") +
                              complete("COMMIT") + ready();
    for (std::size_t i = 0; i < request.size(); ++i)
        c.frontend(std::string(1, request[i]), 10 + i);
    for (std::size_t i = 0; i < reply.size(); ++i)
        c.backend(std::string(1, reply[i]), 1000 + i);
    ASSERT_EQ(c.sink.ops.size(), 3u);
    EXPECT_EQ(c.sink.ops[0].operation, "SELECT");
    EXPECT_EQ(c.sink.ops[0].start, 10u);
    EXPECT_EQ(c.sink.ops[1].operation, "BEGIN");
    EXPECT_EQ(c.sink.ops[2].operation, "COMMIT");
    EXPECT_EQ(c.parser.stats().desyncs, 0u);
}

TEST_P(PostgresBothSides, LargeRowSkippedByCount) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(query("SELECT repeat('x', 16000000)"), 10);
    const std::string row = row_description() + data_row(std::string(16'000'000, 'x'));
    c.backend(row, 20, 16384);  // only the first 16 KiB copied
    c.backend(complete("SELECT 1") + ready(), 30);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].end, 30u);
    EXPECT_EQ(c.parser.stats().desyncs, 0u);
}

TEST_P(PostgresBothSides, LostHeaderResynchronises) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(query("SELECT 1"), 10);
    // Two replies in one read of which the second's header was never copied.
    c.backend(data_row(std::string(20000, 'x')) + complete("SELECT 1") + ready(), 20, 16384);
    EXPECT_EQ(c.parser.stats().desyncs, 1u);
    c.frontend(query("SELECT 2"), 30);
    c.backend(complete("SELECT 1") + ready(), 31);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].start, 30u);
}

// Segments as the capture gives them: the first 16 KiB and the last 16 bytes.
Segment capped(Direction d, const std::string& bytes, std::uint64_t ts) {
    Segment s;
    s.direction = d;
    s.timestamp_ns = ts;
    s.length = bytes.size();
    s.head = {reinterpret_cast<const std::uint8_t*>(bytes.data()), 16384};
    s.tail = {reinterpret_cast<const std::uint8_t*>(bytes.data()) + bytes.size() - 16, 16};
    return s;
}

TEST_P(PostgresBothSides, LargeResultReadAtOnceEndingWithReadyForQuery) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(query("SELECT big FROM t"), 10);
    const std::string reply =
        row_description() + data_row(std::string(1 << 20, 'x')) + complete("SELECT 1") + ready();
    const Direction d = GetParam() == Side::kClient ? Direction::kIngress : Direction::kEgress;
    c.parser.on_segment(capped(d, reply, 20), c.sink);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].operation, "SELECT");
    EXPECT_EQ(c.sink.ops[0].end, 20u);
    EXPECT_EQ(c.parser.postgres_stats().unseen_replies, 1u);
    EXPECT_EQ(c.parser.pending(), 0u);
    // In step again at the next read.
    c.frontend(query("SELECT 1"), 30);
    c.backend(complete("SELECT 1") + ready(), 31);
    ASSERT_EQ(c.sink.ops.size(), 2u);
    EXPECT_EQ(c.sink.ops[1].start, 30u);
    EXPECT_EQ(c.parser.stats().unmatched_responses, 0u);
}

TEST_P(PostgresBothSides, ReplyBeforeItsRequestIsUnmatched) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(query("SELECT 1"), 50);
    c.backend(complete("SELECT 1"), 40);
    EXPECT_EQ(c.parser.stats().unmatched_responses, 1u);
    EXPECT_TRUE(c.sink.ops.empty());
}

TEST_P(PostgresBothSides, CloseReportsWaitingStatements) {
    Conversation c(GetParam());
    c.connect();
    c.frontend(query("SELECT pg_sleep(10)"), 10);
    c.parser.on_close(99, c.sink);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].error, "closed");
    EXPECT_EQ(c.sink.ops[0].end, 99u);
}

TEST_P(PostgresBothSides, StatementTableIsBounded) {
    Conversation c(GetParam());
    c.connect();
    for (std::size_t i = 0; i < PostgresConnection::kMaxStatements + 44; ++i) {
        c.frontend(parse("s" + std::to_string(i), "SELECT 1") + sync(), 10 + 2 * i);
        c.backend(parse_complete() + ready(), 11 + 2 * i);
    }
    EXPECT_EQ(c.parser.prepared_statements(), PostgresConnection::kMaxStatements);
    EXPECT_EQ(c.parser.postgres_stats().statements_evicted, 44u);
    EXPECT_LT(c.parser.memory_bytes(), 256u * 1024);
    // The first ones were forgotten: their Execute names the statement.
    c.frontend(bind("", "s0") + execute("") + sync(), 5000);
    c.backend(bind_complete() + complete("SELECT 1") + ready(), 5001);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.sink.ops[0].summary, "EXECUTE s0");
}

TEST(PostgresConnection, SideFromTheStartupMessageWhenNoHint) {
    for (const auto d : {Direction::kEgress, Direction::kIngress}) {
        PostgresConnection p(Side::kUnknown);
        Sink sink;
        const std::string s = startup({{"user", "u"}});
        Segment seg;
        seg.direction = d;
        seg.timestamp_ns = 1;
        seg.length = s.size();
        seg.head = {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
        p.on_segment(seg, sink);
        EXPECT_EQ(p.side(), d == Direction::kEgress ? Side::kClient : Side::kServer);
    }
}

// A connection open before loupe started: picked up at its next Query, Parse or Bind; a statement
// prepared before then is reported by its name.
TEST(PostgresConnection, PickedUpMidStream) {
    for (const auto d : {Direction::kEgress, Direction::kIngress}) {
        PostgresConnection p(Side::kUnknown);
        Sink sink;
        const Direction back = d == Direction::kEgress ? Direction::kIngress : Direction::kEgress;
        auto feed = [&](Direction dir, const std::string& bytes, std::uint64_t ts) {
            Segment seg;
            seg.direction = dir;
            seg.timestamp_ns = ts;
            seg.length = bytes.size();
            seg.head = {reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()};
            p.on_segment(seg, sink);
        };
        feed(d, bind("", "P0_3") + execute("") + sync(), 10);
        feed(back, bind_complete() + complete("UPDATE 1") + ready('T'), 11);
        feed(d, query("SELECT 1"), 20);
        feed(back, complete("SELECT 1") + ready(), 21);
        EXPECT_EQ(p.side(), d == Direction::kEgress ? Side::kClient : Side::kServer);
        ASSERT_EQ(sink.ops.size(), 2u);
        EXPECT_EQ(sink.ops[0].summary, "EXECUTE P0_3");
        EXPECT_EQ(sink.ops[0].db, "");
        EXPECT_EQ(sink.ops[1].operation, "SELECT");
        EXPECT_EQ(p.postgres_stats().midstream, 1u);
        EXPECT_EQ(p.stats().desyncs, 0u);
    }
}

TEST(PostgresConnection, PickedUpMidStreamWithAKnownSide) {
    Conversation c(Side::kClient);
    c.frontend(query("SELECT 1"), 10);
    c.backend(complete("SELECT 1") + ready(), 11);
    ASSERT_EQ(c.sink.ops.size(), 1u);
    EXPECT_EQ(c.parser.postgres_stats().midstream, 1u);
}

TEST(PostgresConnection, GarbageIsGivenUp) {
    Conversation c(Side::kServer);
    const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 20; ++i)
        c.frontend(junk, 10 + i);
    EXPECT_TRUE(c.parser.postgres_stats().not_postgres);
    EXPECT_TRUE(c.sink.ops.empty());
}

TEST(PostgresConnection, PendingQueueIsBounded) {
    Conversation c(Side::kClient);
    c.connect();
    for (std::size_t i = 0; i < PostgresConnection::kMaxPending + 10; ++i)
        c.frontend(query("SELECT 1"), 10 + i);
    EXPECT_EQ(c.parser.pending(), PostgresConnection::kMaxPending);
    EXPECT_EQ(c.parser.stats().dropped_requests, 10u);
}

TEST(PostgresConnection, MakeParser) {
    auto p = make_parser(Side::kClient);
    EXPECT_EQ(p->side(), Side::kClient);
}

}  // namespace
}  // namespace loupe::postgres
