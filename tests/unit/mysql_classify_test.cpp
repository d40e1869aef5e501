// The kernel's MySQL classifier (bpf/protocol_classify.bpf.h), compiled for user space: what it
// takes for MySQL (a greeting, a HandshakeResponse, a COM_QUERY, each one whole packet), and the
// SQL inside other traffic it must not take (beyla#1745, OBI#1464, beyla#1697).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#pragma GCC diagnostic ignored "-Wunused-function"
#include "protocol_classify.bpf.h"
#pragma GCC diagnostic pop

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes packet(std::uint8_t seq, std::string_view payload) {
    Bytes b = {static_cast<std::uint8_t>(payload.size()),
               static_cast<std::uint8_t>(payload.size() >> 8),
               static_cast<std::uint8_t>(payload.size() >> 16), seq};
    for (char c : payload)
        b.push_back(static_cast<std::uint8_t>(c));
    return b;
}

// What classify_undecided gives the classifiers: CLASSIFY_BYTES bytes (zero past the data) and
// the length of the data (the head copied, at most LOUPE_DATA_HEAD_MAX).
__u8 classify(const Bytes& data, bool* maybe) {
    __u8 start[CLASSIFY_BYTES] = {};
    std::copy_n(data.begin(), std::min<std::size_t>(data.size(), CLASSIFY_BYTES), start);
    *maybe = false;
    const auto len = static_cast<__u32>(std::min<std::size_t>(data.size(), LOUPE_DATA_HEAD_MAX));
    return classify_start(start, len, data.size(), maybe);
}

__u8 classify(const Bytes& data) {
    bool maybe = false;
    return classify(data, &maybe);
}

Bytes text(std::string_view s) {
    return Bytes(s.begin(), s.end());
}

const std::string kGreeting = std::string("\x0a") + "5.5.5-10.11.6-MariaDB-0+deb12u1" + '\0' +
                              std::string("\x07\x00\x00\x00", 4) + "abcdefgh" + '\0' +
                              std::string("\xfe\xf7\x2d\x02\x00\xff\x81\x15", 8) +
                              std::string(10, '\0') + "ijklmnopqrst" + '\0' +
                              "mysql_native_password" + '\0';

TEST(MysqlClassify, GreetingHandshakeResponseAndQuery) {
    EXPECT_EQ(classify(packet(0, kGreeting)), LOUPE_PROTOCOL_MYSQL);
    EXPECT_EQ(classify(packet(0, std::string("\x0a") + "8.0.36" + '\0' + std::string(40, 'x'))),
              LOUPE_PROTOCOL_MYSQL);
    std::string response("\x08\xa2\x2a\x01\x00\x00\x00\x01\x2d", 9);
    response += std::string(23, '\0') + "sbtest" + '\0' + '\0' + "sbtest" + '\0';
    EXPECT_EQ(classify(packet(1, response)), LOUPE_PROTOCOL_MYSQL);
    std::string ssl("\x08\xaa\x2a\x01\x00\x00\x00\x01\x2d", 9);
    ssl += std::string(23, '\0');
    EXPECT_EQ(classify(packet(1, ssl)), LOUPE_PROTOCOL_MYSQL);  // an SSL request: counted
    EXPECT_EQ(classify(packet(0, "\x03SELECT c FROM sbtest1 WHERE id=1")), LOUPE_PROTOCOL_MYSQL);
    EXPECT_EQ(classify(packet(0, "\x03select 1")), LOUPE_PROTOCOL_MYSQL);
    EXPECT_EQ(classify(packet(0,
                              "\x03"
                              "COMMIT")),
              LOUPE_PROTOCOL_MYSQL);
}

TEST(MysqlClassify, APacketHeaderWrittenAloneIsHeldAsMaybe) {
    bool maybe = false;
    const Bytes g = packet(0, kGreeting);
    EXPECT_EQ(classify(Bytes(g.begin(), g.begin() + 4), &maybe), LOUPE_PROTOCOL_UNKNOWN);
    EXPECT_TRUE(maybe);
}

TEST(MysqlClassify, LengthMustMatchTheDataExactly) {
    Bytes q = packet(0, "\x03SELECT 1");
    q.push_back('x');  // one byte too many: not one whole packet
    EXPECT_EQ(classify(q), LOUPE_PROTOCOL_UNKNOWN);
    Bytes g = packet(0, kGreeting);
    g.pop_back();
    bool maybe = false;
    EXPECT_EQ(classify(g, &maybe), LOUPE_PROTOCOL_UNKNOWN);
    EXPECT_FALSE(maybe);
}

TEST(MysqlClassify, SqlInsideOtherTrafficIsNotMysql) {
    const std::vector<Bytes> others = {
        text("POST /q HTTP/1.1\r\nContent-Length: 22\r\n\r\nSELECT * FROM users;"),
        text("SELECT * FROM users WHERE id = 1"),  // SQL alone, as a body read apart
        text("{\"query\": \"SELECT * FROM users\"}"),
        text("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20\r\nSELECT * FROM orders\r\n"),
        text("$20\r\nSELECT * FROM orders\r\n"),  // a Redis reply read alone
        text("+OK\r\n"),
        // PostgreSQL's simple query and its startup message.
        Bytes{'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0},
        Bytes{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f},
        // A TLS record whose length bytes look like a MySQL header.
        Bytes{0x17, 0x03, 0x03, 0x00, 0x03, 'S', 'E', 'L', 'E', 'C', 'T'},
        // A 4-byte little-endian length prefix and a COM_QUERY byte, but words no verb.
        packet(0, "\x03hello world"),
    };
    for (const auto& b : others)
        EXPECT_NE(classify(b), LOUPE_PROTOCOL_MYSQL) << std::string(b.begin(), b.end());
}

}  // namespace

namespace {

// The SSL request after which the kernel stops copying a MySQL connection (socket_capture.bpf.c).
bool ssl_request(const Bytes& data) {
    Bytes head = data;
    head.resize(std::min<std::size_t>(data.size(), LOUPE_DATA_HEAD_MAX));
    return mysql_ssl_request(head.data(), static_cast<__u32>(head.size()), data.size());
}

TEST(MysqlClassify, SslRequestStopsTheCopy) {
    // CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION ..., max packet, charset, filler.
    const std::string ssl = std::string("\x04\xaa\x0a\x00", 4) +
                            std::string("\x00\x00\x00\x01", 4) + '\x2d' + std::string(23, '\0');
    EXPECT_TRUE(ssl_request(packet(1, ssl)));
    // A server's read that holds the ClientHello after it.
    Bytes with_hello = packet(1, ssl);
    for (int b : {0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
        with_hello.push_back(static_cast<std::uint8_t>(b));
    EXPECT_TRUE(ssl_request(with_hello));
    // A whole HandshakeResponse (no CLIENT_SSL, longer), another sequence id, a short prefix.
    std::string no_ssl = ssl;
    no_ssl[1] = '\x02';
    EXPECT_FALSE(ssl_request(packet(1, no_ssl)));
    EXPECT_FALSE(ssl_request(packet(1, ssl + "root" + '\0')));
    EXPECT_FALSE(ssl_request(packet(0, ssl)));
    const Bytes whole = packet(1, ssl);
    EXPECT_FALSE(ssl_request(Bytes(whole.begin(), whole.begin() + 20)));
    // A server that reads the header alone, then the payload.
    EXPECT_TRUE(mysql_ssl_request_header(whole.data(), 4));
    EXPECT_TRUE(mysql_ssl_request_payload(whole.data() + 4, 32, 32));
    EXPECT_FALSE(mysql_ssl_request_header(packet(1, ssl + "root").data(), 4));
    EXPECT_FALSE(mysql_ssl_request_payload(packet(1, no_ssl).data() + 4, 32, 32));
    // CLIENT_PROTOCOL_41 missing: protocol 3.20, no such request.
    std::string old = ssl;
    old[1] = '\x08';
    EXPECT_FALSE(ssl_request(packet(1, old)));
}

}  // namespace
