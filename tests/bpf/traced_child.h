// Test helpers shared by the socket capture's BPF tests: a child process that talks to itself
// over loopback TCP connections (loupe never traces itself), traced by a fresh SocketCapture;
// its events come back as plain values, a read or write's chunks joined to it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "capture/event_decoder.h"
#include "capture/segment_assembler.h"
#include "capture/socket_capture.h"

namespace loupe::capture::traced {

inline bool bpf_required() {
    const char* v = std::getenv("LOUPE_REQUIRE_BPF");
    return v && std::string(v) == "1";
}

#define REQUIRE_ROOT()                                                        \
    do {                                                                      \
        if (::geteuid() != 0) {                                               \
            if (bpf_required()) FAIL() << "LOUPE_REQUIRE_BPF=1 but not root"; \
            GTEST_SKIP() << "needs root";                                     \
        }                                                                     \
    } while (0)

// One event of the child, with what the tests look at (a data event's head with its chunks).
struct Seen {
    std::uint16_t kind = 0;
    std::uint8_t protocol = 0;
    std::int32_t fd = -1;
    bool egress = false;
    std::uint64_t length = 0;
    std::uint32_t spread_ns = 0;
    std::uint32_t head_len = 0;  // of the data event alone
    std::uint32_t captured = 0;
    std::uint8_t syscall = 0;
    std::string head;  // with its chunks' bytes
    std::string tail;
};

// The two ends of the child's connection, as the child numbered them.
struct Ends {
    int client = -1;
    int server = -1;
};

// A loopback TCP connection, both ends in the calling process (exits the child on failure).
inline Ends connect_over_loopback() {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener, 1) != 0 ||
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        _exit(1);
    Ends ends;
    ends.client = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(ends.client, reinterpret_cast<sockaddr*>(&addr), len) != 0) _exit(1);
    ends.server = ::accept(listener, nullptr, nullptr);
    ::close(listener);
    return ends;
}

// Writes `data` on `from` and reads exactly as much on `to`: one write and one read event.
inline void send_and_receive(int from, int to, const std::string& data) {
    if (::write(from, data.data(), data.size()) != static_cast<ssize_t>(data.size())) _exit(1);
    std::string got(data.size(), '\0');
    std::size_t have = 0;
    while (have < data.size()) {
        const ssize_t n = ::read(to, got.data() + have, data.size() - have);
        if (n <= 0) _exit(1);
        have += static_cast<std::size_t>(n);
    }
}

constexpr int kMaxConnections = 16;

// Starts a capture, runs `script` in a child over `connections` loopback connections of its own,
// and returns the child's events in the order user space got them, with the child's fds in
// `ends`. `chunk_events`: how many chunk events came, per fd.
inline std::vector<Seen> trace_child(const std::function<void(const std::vector<Ends>&)>& script,
                                     std::vector<Ends>& ends, int connections = 1,
                                     CaptureOptions options = {},
                                     std::map<int, int>* chunk_events = nullptr) {
    std::vector<Seen> seen;
    pid_t child = -1;
    std::string error;
    SegmentAssembler assembler;
    auto take = [&](const DecodedEvent& event) {
        Seen s;
        if (const auto* open = std::get_if<ConnOpen>(&event)) {
            if (static_cast<pid_t>(open->event->header.conn.tgid) != child) return;
            s.kind = LOUPE_EVENT_CONN_OPEN;
            s.protocol = open->event->header.protocol;
            s.fd = open->event->header.conn.fd;
        } else if (const auto* data = std::get_if<DataSegment>(&event)) {
            const auto& e = *data->event;
            if (static_cast<pid_t>(e.header.conn.tgid) != child) return;
            s.kind = LOUPE_EVENT_DATA;
            s.protocol = e.header.protocol;
            s.fd = e.header.conn.fd;
            s.egress = e.direction == LOUPE_DIR_EGRESS;
            s.length = e.length;
            s.spread_ns = e.spread_ns;
            s.head_len = e.head_len;
            s.captured = e.captured;
            s.syscall = e.syscall;
            s.head.assign(data->head().begin(), data->head().end());
            s.tail.assign(data->tail().begin(), data->tail().end());
        } else if (const auto* close = std::get_if<ConnClose>(&event)) {
            if (static_cast<pid_t>(close->event->header.conn.tgid) != child) return;
            s.kind = LOUPE_EVENT_CONN_CLOSE;
            s.protocol = close->event->header.protocol;
            s.fd = close->event->header.conn.fd;
        } else {
            ADD_FAILURE() << "malformed event";
            return;
        }
        seen.push_back(std::move(s));
    };
    auto capture = SocketCapture::start(
        options,
        [&](std::span<const std::uint8_t> record) {
            const DecodedEvent event = decode_event(record);
            if (const auto* chunk = std::get_if<DataChunk>(&event)) {
                if (static_cast<pid_t>(chunk->event->header.conn.tgid) != child) return;
                if (chunk_events) ++(*chunk_events)[chunk->event->header.conn.fd];
            }
            assembler.add(event, take);
        },
        error);
    EXPECT_TRUE(capture) << error;
    if (!capture) return seen;
    int fds[2];
    if (::pipe(fds) != 0) return seen;
    child = fork();
    if (child == 0) {
        ::close(fds[0]);
        std::vector<Ends> mine;
        for (int i = 0; i < connections && i < kMaxConnections; ++i)
            mine.push_back(connect_over_loopback());
        const auto bytes = static_cast<ssize_t>(mine.size() * sizeof(Ends));
        if (::write(fds[1], mine.data(), static_cast<std::size_t>(bytes)) != bytes) _exit(1);
        script(mine);
        _exit(0);
    }
    ::close(fds[1]);
    ends.assign(static_cast<std::size_t>(connections), Ends{});
    const auto bytes = static_cast<ssize_t>(ends.size() * sizeof(Ends));
    if (::read(fds[0], ends.data(), static_cast<std::size_t>(bytes)) != bytes)
        ADD_FAILURE() << "child failed";
    ::close(fds[0]);
    int status = -1;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    // Past the batch timer (10 ms) and the merger's hold-back (40 ms).
    for (int i = 0; i < 6; ++i) {
        capture->wait(50);
        capture->drain();
        assembler.flush(take);
    }
    capture->flush();
    assembler.flush(take);
    EXPECT_EQ(capture->drops().ringbuf_full, 0u);
    return seen;
}

inline std::vector<Seen> data_of(const std::vector<Seen>& events, int fd) {
    std::vector<Seen> out;
    for (const auto& e : events)
        if (e.kind == LOUPE_EVENT_DATA && e.fd == fd) out.push_back(e);
    return out;
}

}  // namespace loupe::capture::traced
