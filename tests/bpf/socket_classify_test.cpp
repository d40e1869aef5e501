// The kernel's protocol classification, against real socket reads and writes: a child process
// talks to itself over a loopback TCP connection (loupe never traces itself), and the events the
// real programs sent for it are checked: their protocol, and which ones were sent at all.
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "traced_child.h"

namespace loupe::capture {
namespace {

using namespace traced;

TEST(SocketClassify, HttpRequestAndResponse) {
    REQUIRE_ROOT();
    std::vector<Ends> ends;
    const auto events = trace_child(
        [](const std::vector<Ends>& e) {
            const Ends& c = e[0];
            send_and_receive(c.client, c.server, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
            send_and_receive(c.server, c.client, "HTTP/1.1 204 No Content\r\n\r\n");
        },
        ends);
    for (const int fd : {ends[0].client, ends[0].server}) {
        const auto data = data_of(events, fd);
        ASSERT_EQ(data.size(), 2u) << "fd " << fd;
        for (const auto& d : data)
            EXPECT_EQ(d.protocol, LOUPE_PROTOCOL_HTTP1) << d.head;
    }
}

TEST(SocketClassify, RedisCommandsAsClientsSendThem) {
    REQUIRE_ROOT();
    std::vector<Ends> ends;
    const auto events = trace_child(
        [](const std::vector<Ends>& e) {
            const Ends& c = e[0];
            send_and_receive(c.client, c.server, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
            send_and_receive(c.server, c.client, "$-1\r\n");
        },
        ends);
    for (const int fd : {ends[0].client, ends[0].server}) {
        const auto data = data_of(events, fd);
        ASSERT_EQ(data.size(), 2u);
        EXPECT_EQ(data[0].protocol, LOUPE_PROTOCOL_REDIS);
        EXPECT_EQ(data[1].protocol, LOUPE_PROTOCOL_REDIS);  // the reply: classified by then
    }
}

// redis-benchmark's PING_INLINE, pipelined: the one inline form taken.
TEST(SocketClassify, RedisInlinePing) {
    REQUIRE_ROOT();
    std::vector<Ends> ends;
    const auto events = trace_child(
        [](const std::vector<Ends>& e) {
            const Ends& c = e[0];
            send_and_receive(c.client, c.server, "PING\r\nPING\r\n");
            send_and_receive(c.server, c.client, "+PONG\r\n+PONG\r\n");
        },
        ends);
    const auto data = data_of(events, ends[0].server);
    ASSERT_EQ(data.size(), 2u);
    EXPECT_EQ(data[0].protocol, LOUPE_PROTOCOL_REDIS);
}

// Keywords anywhere but at a message's start, a RESP array of something else than bulk strings,
// replies, other inline words: none classifies a connection (beyla#1745). Each is the first data
// of a connection of its own.
TEST(SocketClassify, KeywordsInArbitraryTrafficDoNotClassify) {
    REQUIRE_ROOT();
    const std::vector<std::string> firsts = {"xxGET / HTTP/1.1\r\n\r\n",
                                             "hello *1\r\n$4\r\nPING\r\n",
                                             "*1\r\n:4\r\n",
                                             "*0\r\n$",
                                             "+OK\r\n",
                                             "PINGS\r\n",
                                             "SET k v\r\n",
                                             std::string("\x16\x05\x01\x02", 4)};
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            for (std::size_t i = 0; i < firsts.size(); ++i)
                send_and_receive(e[i].client, e[i].server, firsts[i]);
        },
        ends, static_cast<int>(firsts.size()));
    for (std::size_t i = 0; i < firsts.size(); ++i) {
        const auto data = data_of(events, ends[i].server);
        ASSERT_EQ(data.size(), 1u) << firsts[i];
        EXPECT_EQ(data[0].protocol, LOUPE_PROTOCOL_UNKNOWN) << firsts[i];
    }
}

std::string be32(std::uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
            static_cast<char>(v)};
}

// PostgreSQL: the untyped message a client sends first, by its code and length. The SSLRequest's
// answer is one byte; the StartupMessage follows in plaintext.
TEST(SocketClassify, PostgresStartupMessages) {
    REQUIRE_ROOT();
    const std::string startup_body = std::string("user\0loupe\0database\0bench\0\0", 27);
    const std::vector<std::string> firsts = {
        be32(8) + be32(80877103),                       // SSLRequest
        be32(8) + be32(80877104),                       // GSSENCRequest
        be32(16) + be32(80877102) + be32(1) + be32(2),  // CancelRequest
        be32(8 + 27) + be32(196608) + startup_body,     // StartupMessage 3.0
        be32(8 + 27) + be32(196610) + startup_body,     // 3.2 (PostgreSQL 18)
    };
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            for (std::size_t i = 0; i < firsts.size(); ++i) {
                send_and_receive(e[i].client, e[i].server, firsts[i]);
                send_and_receive(e[i].server, e[i].client, "N");
            }
        },
        ends, static_cast<int>(firsts.size()));
    for (std::size_t i = 0; i < firsts.size(); ++i)
        for (const int fd : {ends[i].client, ends[i].server}) {
            const auto data = data_of(events, fd);
            ASSERT_EQ(data.size(), 2u) << i;
            EXPECT_EQ(data[0].protocol, LOUPE_PROTOCOL_POSTGRES) << i;
            EXPECT_EQ(data[1].protocol, LOUPE_PROTOCOL_POSTGRES) << i;  // the one-byte answer
        }
}

std::string typed(char type, const std::string& body) {
    return std::string(1, type) + be32(static_cast<std::uint32_t>(body.size() + 4)) + body;
}

// An SSLRequest answered 'S': TLS from the next byte on. The answer's event is sent (user space
// counts the connection), nothing after it is copied.
TEST(SocketClassify, PostgresTlsStopsTheCopy) {
    REQUIRE_ROOT();
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            const Ends& c = e[0];
            send_and_receive(c.client, c.server, be32(8) + be32(80877103));
            send_and_receive(c.server, c.client, "S");
            send_and_receive(c.client, c.server,
                             std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc", 9));
            send_and_receive(c.server, c.client,
                             std::string("\x16\x03\x03\x00\x7a\x02\x00\x00\x76", 9));
        },
        ends);
    for (const int fd : {ends[0].client, ends[0].server}) {
        const auto data = data_of(events, fd);
        ASSERT_EQ(data.size(), 2u) << fd;
        EXPECT_EQ(data[1].head, "S");
    }
}

// A connection open before loupe started: taken at a client's Query (the whole write), Parse or
// Bind of a named statement.
TEST(SocketClassify, PostgresPickedUpMidStream) {
    REQUIRE_ROOT();
    const std::vector<std::string> firsts = {
        typed('Q', std::string("SELECT abalance FROM pgbench_accounts\0", 38)),
        typed('P', std::string("\0SELECT $1::int\0\0\0", 18)) + typed('S', ""),
        typed('B', std::string("\0P0_12\0\0\0\0\0\0\0", 13)) +
            typed('E', std::string("\0\0\0\0\0", 5)) + typed('S', ""),
    };
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            for (std::size_t i = 0; i < firsts.size(); ++i)
                send_and_receive(e[i].client, e[i].server, firsts[i]);
        },
        ends, static_cast<int>(firsts.size()));
    for (std::size_t i = 0; i < firsts.size(); ++i)
        for (const int fd : {ends[i].client, ends[i].server}) {
            const auto data = data_of(events, fd);
            ASSERT_EQ(data.size(), 1u) << i;
            EXPECT_EQ(data[0].protocol, LOUPE_PROTOCOL_POSTGRES) << i;
        }
}

// SQL in other traffic, typed messages without the framing a mid-stream pick-up needs, and
// near-misses of the startup codes: none is PostgreSQL (beyla#1745, OBI#1464).
TEST(SocketClassify, SqlInOtherTrafficIsNotPostgres) {
    REQUIRE_ROOT();
    const std::vector<std::string> firsts = {
        "SELECT * FROM users WHERE id = 1;\n",
        std::string("Q\0\0\0\015SELECT 1\0", 14),
        typed('Q', std::string("SELECT abalance FROM pgbench_accounts\0", 38)) + "x",  // not all
        typed('Q', std::string("\x01\x02"
                               "binary payload here\0",
                               22)),
        typed('B', std::string("\0\0\0\0\0\0\0\0\0\0\0\0", 12)),  // no statement name
        typed('P', std::string("name with space\0SELECT\0", 23)),
        be32(9) + be32(80877103) + "x",  // SSLRequest code, wrong length
        be32(8 + 11) + be32(196608) + std::string("User\0x\0\0", 8) + "xxx",  // not a parameter
        be32(20000) + be32(196608) + std::string("user\0x\0\0", 8),  // beyond PostgreSQL's limit
        be32(8 + 10) + be32(131072) + std::string("user\0x\0\0\0\0", 10),  // protocol 2.0
        "POST /q HTTP/1.1\r\nContent-Length: 20\r\n\r\nINSERT INTO t VALUES",
    };
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            for (std::size_t i = 0; i < firsts.size(); ++i)
                send_and_receive(e[i].client, e[i].server, firsts[i]);
        },
        ends, static_cast<int>(firsts.size()));
    for (std::size_t i = 0; i < firsts.size(); ++i) {
        const auto data = data_of(events, ends[i].server);
        ASSERT_EQ(data.size(), 1u) << i;
        EXPECT_NE(data[0].protocol, LOUPE_PROTOCOL_POSTGRES) << i;
    }
}

// A connection that is none of the enabled protocols stops costing: after the budget of events
// sent for it (user space counts them as garbage), nothing more, in either direction.
TEST(SocketClassify, UnrecognisedConnectionStopsAfterItsBudget) {
    REQUIRE_ROOT();
    std::vector<Ends> ends;
    const auto events = trace_child(
        [](const std::vector<Ends>& e) {
            const Ends& c = e[0];
            for (int i = 0; i < 20; ++i)
                send_and_receive(c.client, c.server, std::string("\x01\x03\x01\x00\x10", 5));
            send_and_receive(c.client, c.server, "GET / HTTP/1.1\r\n\r\n");  // too late
        },
        ends);
    const auto client = data_of(events, ends[0].client);
    const auto server = data_of(events, ends[0].server);
    EXPECT_EQ(client.size(), 8u);
    EXPECT_EQ(server.size(), 8u);
    for (const auto& d : client)
        EXPECT_EQ(d.protocol, LOUPE_PROTOCOL_UNKNOWN);
}

// TLS records (the handshake of a library loupe does not hook, or one whose hooks missed it) are
// recognised from their header and send nothing, then or later: ciphertext is never parsed.
TEST(SocketClassify, TlsRecordsSendNothing) {
    REQUIRE_ROOT();
    std::vector<Ends> ends;
    const auto events = trace_child(
        [](const std::vector<Ends>& e) {
            const Ends& c = e[0];
            send_and_receive(c.client, c.server, std::string("\x16\x03\x01\x00\x10", 5));
            send_and_receive(c.server, c.client, std::string("\x16\x03\x03\x00\x7a", 5));
            for (int i = 0; i < 3; ++i)
                send_and_receive(c.client, c.server, std::string("\x17\x03\x03\x00\x20", 5));
            send_and_receive(c.client, c.server, "GET / HTTP/1.1\r\n\r\n");  // still ciphertext
        },
        ends);
    EXPECT_TRUE(data_of(events, ends[0].client).empty());
    EXPECT_TRUE(data_of(events, ends[0].server).empty());
}

// Which protocols are looked for is load-time configuration: with Redis off, a Redis connection
// is one more connection loupe does not parse.
TEST(SocketClassify, DisabledProtocolIsNotClassified) {
    REQUIRE_ROOT();
    CaptureOptions options;
    options.protocols = 1u << LOUPE_PROTOCOL_HTTP1;
    std::vector<Ends> ends;
    const auto events = trace_child(
        [](const std::vector<Ends>& e) {
            const Ends& c = e[0];
            for (int i = 0; i < 12; ++i)
                send_and_receive(c.client, c.server, "*1\r\n$4\r\nPING\r\n");
        },
        ends, 1, options);
    const auto server = data_of(events, ends[0].server);
    EXPECT_EQ(server.size(), 8u);
    for (const auto& d : server)
        EXPECT_EQ(d.protocol, LOUPE_PROTOCOL_UNKNOWN);
}

// Writes `data` on `from` `piece` bytes at a time, each piece read on `to` before the next.
void trickle(int from, int to, const std::string& data, std::size_t piece) {
    for (std::size_t at = 0; at < data.size(); at += piece)
        send_and_receive(from, to, data.substr(at, piece));
}

std::string heads(const std::vector<Seen>& data) {
    std::string all;
    for (const auto& d : data)
        all += d.head;
    return all;
}

// A slow client: its request line 3 bytes a write (each read by the server on its own). The
// pieces before the connection could be classified are held in the kernel and sent in front of
// the piece that classified it: the events hold the request from its first byte, all as HTTP/1,
// the first one starting when the first piece moved.
TEST(SocketClassify, RequestLineThreeBytesAWrite) {
    REQUIRE_ROOT();
    const std::string request = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            trickle(e[0].client, e[0].server, request, 3);
            send_and_receive(e[0].server, e[0].client, "HTTP/1.1 204 No Content\r\n\r\n");
        },
        ends);
    for (const int fd : {ends[0].client, ends[0].server}) {
        auto data = data_of(events, fd);
        ASSERT_FALSE(data.empty());
        data.pop_back();  // the response
        EXPECT_EQ(heads(data), request) << "fd " << fd;
        EXPECT_EQ(data[0].head, "GET /s");  // "GET" held, then " /s" classified it
        EXPECT_EQ(data[0].length, 6u);
        EXPECT_GT(data[0].spread_ns, 0u);  // it started when "GET" moved
        for (const auto& d : data)
            EXPECT_EQ(d.protocol, LOUPE_PROTOCOL_HTTP1);
    }
    // The open event came with the first data event, and carries the protocol too.
    int opens = 0;
    for (const auto& e : events)
        if (e.kind == LOUPE_EVENT_CONN_OPEN) {
            ++opens;
            EXPECT_EQ(e.protocol, LOUPE_PROTOCOL_HTTP1);
        }
    EXPECT_EQ(opens, 2);
}

// The same, a byte at a time, for a Redis command.
TEST(SocketClassify, RedisCommandAByteAWrite) {
    REQUIRE_ROOT();
    const std::string command = "*1\r\n$4\r\nPING\r\n";
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) { trickle(e[0].client, e[0].server, command, 1); }, ends);
    const auto data = data_of(events, ends[0].server);
    ASSERT_FALSE(data.empty());
    EXPECT_EQ(heads(data), command);
    EXPECT_EQ(data[0].head, "*1\r\n$");
    for (const auto& d : data)
        EXPECT_EQ(d.protocol, LOUPE_PROTOCOL_REDIS);
}

// Nine writes of an empty line, then requests: the empty lines send nothing and cost nothing of
// the budget; the requests are all there.
TEST(SocketClassify, EmptyLinesBeforeTheFirstRequest) {
    REQUIRE_ROOT();
    std::vector<Ends> ends;
    const auto events = trace_child(
        [](const std::vector<Ends>& e) {
            for (int i = 0; i < 9; ++i)
                send_and_receive(e[0].client, e[0].server, "\r\n");
            for (int i = 0; i < 20; ++i)
                send_and_receive(e[0].client, e[0].server, "GET /r HTTP/1.1\r\n\r\n");
        },
        ends);
    for (const int fd : {ends[0].client, ends[0].server}) {
        const auto data = data_of(events, fd);
        ASSERT_EQ(data.size(), 20u) << "fd " << fd;
        for (const auto& d : data) {
            EXPECT_EQ(d.head, "GET /r HTTP/1.1\r\n\r\n");
            EXPECT_EQ(d.protocol, LOUPE_PROTOCOL_HTTP1);
        }
    }
}

// The shapes that must not keep a connection undecided for ever: empty lines without end run out
// of their byte budget; a start never finished (the other side answers instead) is garbage and
// spends the event budget; so does a start that turns out to be something else.
TEST(SocketClassify, UndecidedConnectionsStillStop) {
    REQUIRE_ROOT();
    std::vector<Ends> ends;
    const auto events = trace_child(
        [](const std::vector<Ends>& e) {
            for (int i = 0; i < 200; ++i)  // 400 bytes of CR/LF
                send_and_receive(e[0].client, e[0].server, "\r\n");
            send_and_receive(e[0].client, e[0].server, "GET / HTTP/1.1\r\n\r\n");
            for (int i = 0; i < 12; ++i) {
                send_and_receive(e[1].client, e[1].server, "GE");
                send_and_receive(e[1].server, e[1].client, "x");
            }
            for (int i = 0; i < 12; ++i)
                send_and_receive(e[2].client, e[2].server, i % 2 ? "PI" : "NG\r\n");
        },
        ends, 3);
    EXPECT_TRUE(data_of(events, ends[0].server).empty());
    EXPECT_TRUE(data_of(events, ends[0].client).empty());
    // Each "GE" (held, never sent) spends one of the budget when "x" comes the other way, each
    // "x" (sent as garbage) one more: four rounds, four events, then nothing.
    auto on_server = data_of(events, ends[1].server);
    ASSERT_EQ(on_server.size(), 4u);
    for (const auto& d : on_server) {
        EXPECT_EQ(d.head, "x");
        EXPECT_EQ(d.protocol, LOUPE_PROTOCOL_UNKNOWN);
    }
    // "NG\r\n" is garbage, then "PI" is held and "PING\r\n" completes it: Redis.
    on_server = data_of(events, ends[2].server);
    ASSERT_GE(on_server.size(), 2u);
    EXPECT_EQ(on_server[0].protocol, LOUPE_PROTOCOL_UNKNOWN);
    EXPECT_EQ(on_server[1].head, "PING\r\n");
    EXPECT_EQ(on_server[1].protocol, LOUPE_PROTOCOL_REDIS);
}

}  // namespace
}  // namespace loupe::capture
