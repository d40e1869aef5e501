// How much of each read and write the real programs copy: on a classified connection up to its
// protocol's copy cap, the first LOUPE_DATA_HEAD_MAX bytes in the data event and the rest in
// chunk events (joined back here by SegmentAssembler), from plain buffers, iovecs and msghdrs;
// past the cap the length and the last bytes only; on an unclassified connection the head only.
#include <sys/uio.h>

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "traced_child.h"

namespace loupe::capture {
namespace {

using namespace traced;

std::string pattern(std::size_t n, char seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + (i * 7 + static_cast<std::size_t>(seed)) % 26);
    return s;
}

const std::string kClassify = "GET /copy HTTP/1.1\r\nHost: x\r\n\r\n";

// The one data event of `fd` whose length is `length`.
Seen event_of_length(const std::vector<Seen>& events, int fd, std::uint64_t length) {
    Seen found;
    int n = 0;
    for (const auto& e : data_of(events, fd))
        if (e.length == length) {
            found = e;
            ++n;
        }
    EXPECT_EQ(n, 1) << "fd " << fd << ", length " << length;
    return found;
}

// Reads exactly `n` bytes from `fd` into buffers of the sizes given (readv), each readv taking
// what is there.
void readv_exactly(int fd, std::size_t n, const std::vector<std::size_t>& sizes) {
    std::vector<std::string> buffers;
    for (const std::size_t size : sizes)
        buffers.emplace_back(size, '\0');
    std::size_t have = 0;
    while (have < n) {
        std::vector<iovec> iov;
        for (auto& b : buffers)
            iov.push_back({b.data(), b.size()});
        const ssize_t got = ::readv(fd, iov.data(), static_cast<int>(iov.size()));
        if (got <= 0) _exit(1);
        have += static_cast<std::size_t>(got);
    }
}

TEST(SocketCopy, WholeReadsAndWritesUpToTheCap) {
    REQUIRE_ROOT();
    const std::string data = pattern(3000, 1);
    std::vector<Ends> ends;
    std::map<int, int> chunks;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            send_and_receive(e[0].client, e[0].server, kClassify);
            send_and_receive(e[0].client, e[0].server, data);
        },
        ends, 1, {}, &chunks);
    for (const int fd : {ends[0].client, ends[0].server}) {
        const Seen e = event_of_length(events, fd, data.size());
        EXPECT_EQ(e.protocol, LOUPE_PROTOCOL_HTTP1);
        EXPECT_EQ(e.head_len, static_cast<std::uint32_t>(LOUPE_DATA_HEAD_MAX));
        EXPECT_EQ(e.captured, data.size());
        EXPECT_EQ(e.head, data);
        EXPECT_TRUE(e.tail.empty());
        EXPECT_EQ(chunks[fd], 1) << "fd " << fd;  // [1024, 3000)
    }
}

TEST(SocketCopy, PastTheCapTheLengthAndTheLastBytes) {
    REQUIRE_ROOT();
    const std::string data = pattern(10000, 2);
    std::vector<Ends> ends;
    std::map<int, int> chunks;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            send_and_receive(e[0].client, e[0].server, kClassify);
            send_and_receive(e[0].client, e[0].server, data);
        },
        ends, 1, {}, &chunks);
    const Seen e = event_of_length(events, ends[0].client, data.size());
    EXPECT_EQ(e.captured, static_cast<std::uint32_t>(LOUPE_COPY_CAP_DEFAULT));
    EXPECT_EQ(e.head, data.substr(0, LOUPE_COPY_CAP_DEFAULT));
    EXPECT_EQ(e.tail, data.substr(data.size() - LOUPE_DATA_TAIL_MAX));
    EXPECT_EQ(chunks[ends[0].client], 1);  // [1024, 4096)
}

// iovecs of odd sizes, some empty, written by writev and by sendmsg, read by readv into buffers
// of other sizes: the bytes come out in order, across iovec boundaries and chunk boundaries.
TEST(SocketCopy, IovecsAndMsghdrs) {
    REQUIRE_ROOT();
    const std::vector<std::size_t> sizes = {7, 1500, 0, 3, 2000, 100};  // 3610 bytes
    const std::vector<std::size_t> big = {700, 3000, 0, 2300};          // 6000: past the cap
    std::vector<std::string> parts;
    std::string small_all;
    char seed = 3;
    for (const std::size_t n : sizes) {
        parts.push_back(pattern(n, seed++));
        small_all += parts.back();
    }
    std::vector<std::string> big_parts;
    std::string big_all;
    for (const std::size_t n : big) {
        big_parts.push_back(pattern(n, seed++));
        big_all += big_parts.back();
    }
    auto iovecs = [](std::vector<std::string>& p) {
        std::vector<iovec> iov;
        for (auto& s : p)
            iov.push_back({s.data(), s.size()});
        return iov;
    };
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            send_and_receive(e[0].client, e[0].server, kClassify);
            auto iov = iovecs(parts);
            if (::writev(e[0].client, iov.data(), static_cast<int>(iov.size())) !=
                static_cast<ssize_t>(small_all.size()))
                _exit(1);
            readv_exactly(e[0].server, small_all.size(), {100, 2000, 5000});
            auto big_iov = iovecs(big_parts);
            msghdr msg{};
            msg.msg_iov = big_iov.data();
            msg.msg_iovlen = big_iov.size();
            if (::sendmsg(e[0].client, &msg, 0) != static_cast<ssize_t>(big_all.size())) _exit(1);
            std::string sink(big_all.size(), '\0');
            std::size_t have = 0;
            while (have < sink.size()) {
                const ssize_t n = ::recv(e[0].server, sink.data() + have, sink.size() - have, 0);
                if (n <= 0) _exit(1);
                have += static_cast<std::size_t>(n);
            }
        },
        ends);
    for (const int fd : {ends[0].client, ends[0].server}) {
        const Seen small = event_of_length(events, fd, small_all.size());
        EXPECT_EQ(small.head, small_all) << "fd " << fd;
        EXPECT_TRUE(small.tail.empty());
    }
    EXPECT_EQ(event_of_length(events, ends[0].client, small_all.size()).syscall, LOUPE_SYS_WRITEV);
    EXPECT_EQ(event_of_length(events, ends[0].server, small_all.size()).syscall, LOUPE_SYS_READV);
    const Seen sent = event_of_length(events, ends[0].client, big_all.size());
    EXPECT_EQ(sent.syscall, LOUPE_SYS_SENDMSG);
    EXPECT_EQ(sent.head, big_all.substr(0, LOUPE_COPY_CAP_DEFAULT));
    EXPECT_EQ(sent.tail, big_all.substr(big_all.size() - LOUPE_DATA_TAIL_MAX));
}

// The copy cap is load-time configuration per protocol; connections not classified (yet) get
// their head only, whatever the caps.
TEST(SocketCopy, CapsPerProtocolAndNoneBeforeClassification) {
    REQUIRE_ROOT();
    CaptureOptions options;
    options.copy_caps[LOUPE_PROTOCOL_HTTP1] = 2048;
    options.copy_caps[LOUPE_PROTOCOL_REDIS] = 8192;
    const std::string data = pattern(9000, 9);
    std::string resp;
    while (resp.size() < 7000)
        resp += "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    std::vector<Ends> ends;
    std::map<int, int> chunks;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            send_and_receive(e[0].client, e[0].server, kClassify);
            send_and_receive(e[0].client, e[0].server, data);
            send_and_receive(e[1].client, e[1].server, resp);
            send_and_receive(e[2].client, e[2].server, data);  // garbage: unclassified
        },
        ends, 3, options, &chunks);
    const Seen http = event_of_length(events, ends[0].client, data.size());
    EXPECT_EQ(http.head, data.substr(0, 2048));
    EXPECT_EQ(http.tail, data.substr(data.size() - LOUPE_DATA_TAIL_MAX));
    const Seen redis = event_of_length(events, ends[1].server, resp.size());
    EXPECT_EQ(redis.protocol, LOUPE_PROTOCOL_REDIS);
    EXPECT_EQ(redis.head, resp);  // the whole pipeline of commands, under its 8 KiB cap
    EXPECT_EQ(chunks[ends[1].server], 2);
    const Seen garbage = event_of_length(events, ends[2].client, data.size());
    EXPECT_EQ(garbage.protocol, LOUPE_PROTOCOL_UNKNOWN);
    EXPECT_EQ(garbage.head, data.substr(0, LOUPE_DATA_HEAD_MAX));
    EXPECT_EQ(garbage.tail, data.substr(data.size() - LOUPE_DATA_TAIL_MAX));
    EXPECT_EQ(chunks[ends[2].client], 0);
}

// PostgreSQL's default cap: 16 KiB of each read and write (the backend's 8 KiB writes and libpq's
// 16 KiB reads whole), after the startup message classified the connection.
TEST(SocketCopy, PostgresDefaultCapIs16KiB) {
    REQUIRE_ROOT();
    const std::string startup = std::string("\0\0\0\x17\0\3\0\0user\0loupe\0\0", 23);
    std::string query = "Q";
    const std::string sql = "SELECT '" + pattern(20000, 3) + "'";
    const std::uint32_t length = static_cast<std::uint32_t>(sql.size() + 5);
    query += static_cast<char>(length >> 24);
    query += static_cast<char>(length >> 16);
    query += static_cast<char>(length >> 8);
    query += static_cast<char>(length);
    query += sql + '\0';
    std::vector<Ends> ends;
    const auto events = trace_child(
        [&](const std::vector<Ends>& e) {
            send_and_receive(e[0].client, e[0].server, startup);
            send_and_receive(e[0].client, e[0].server, query);
        },
        ends);
    const Seen q = event_of_length(events, ends[0].server, query.size());
    EXPECT_EQ(q.protocol, LOUPE_PROTOCOL_POSTGRES);
    EXPECT_EQ(q.head, query.substr(0, 16384));
    EXPECT_EQ(q.tail, query.substr(query.size() - LOUPE_DATA_TAIL_MAX));
}

}  // namespace
}  // namespace loupe::capture
