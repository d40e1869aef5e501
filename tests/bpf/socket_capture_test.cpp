// Loads the real HTTP capture programs and checks the events they produce for real traffic
// between two other processes (loupe never traces itself): python3's http.server and curl.
#include "capture/socket_capture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "capture/event_decoder.h"

namespace loupe::capture {
namespace {

bool bpf_required() {
    const char* v = std::getenv("LOUPE_REQUIRE_BPF");
    return v && std::string(v) == "1";
}

struct Seen {
    int opens_server = 0, opens_client = 0, closes = 0, malformed = 0;
    int request_reads = 0, request_writes = 0, response_writes = 0, response_reads = 0;
    std::vector<std::uint32_t> tgids;
};

pid_t spawn(const std::vector<std::string>& args) {
    const pid_t pid = fork();
    if (pid == 0) {
        std::vector<char*> argv;
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

TEST(SocketCapture, SeesRequestAndResponseOfOtherProcesses) {
    if (::geteuid() != 0) {
        if (bpf_required()) FAIL() << "LOUPE_REQUIRE_BPF=1 but not root";
        GTEST_SKIP() << "needs root";
    }
    Seen seen;
    const std::string port = "18931";
    std::string error;
    auto capture = SocketCapture::start(
        CaptureOptions{},
        [&](std::span<const std::uint8_t> record) {
            const auto event = decode_event(record);
            if (const auto* open = std::get_if<ConnOpen>(&event)) {
                if (std::to_string(open->event->local_port) == port &&
                    open->event->role == LOUPE_ROLE_SERVER)
                    ++seen.opens_server;
                if (std::to_string(open->event->remote_port) == port &&
                    open->event->role == LOUPE_ROLE_CLIENT)
                    ++seen.opens_client;
            } else if (const auto* data = std::get_if<DataSegment>(&event)) {
                const std::string head(data->head().begin(), data->head().end());
                const bool egress = data->event->direction == LOUPE_DIR_EGRESS;
                if (head.rfind("GET /probe?secret=1 HTTP/1.1", 0) == 0)
                    ++(egress ? seen.request_writes : seen.request_reads);
                if (head.rfind("HTTP/1.0 404", 0) == 0)
                    ++(egress ? seen.response_writes : seen.response_reads);
            } else if (std::get_if<ConnClose>(&event)) {
                ++seen.closes;
            } else {
                ++seen.malformed;
            }
        },
        error);
    ASSERT_TRUE(capture) << error;
    // sock_recv_length, sock_send_length, inet_sock_set_state
    EXPECT_EQ(capture->attached_hooks().size(), 3u);
    EXPECT_TRUE(capture->missing_hooks().empty());

    const pid_t server = spawn(
        {"python3", "-m", "http.server", "--bind", "127.0.0.1", port, "--directory", "/var/empty"});
    // Wait until it listens, then one request.
    int rc = 1;
    for (int i = 0; i < 50 && rc != 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        rc = std::system(
            ("curl -s -o /dev/null http://127.0.0.1:" + port + "/probe?secret=1").c_str());
    }
    ASSERT_EQ(rc, 0) << "curl could not reach python3 http.server";
    for (int i = 0; i < 10; ++i) {
        capture->wait(50);
        capture->drain();
    }
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);

    EXPECT_GE(seen.opens_server, 1);
    EXPECT_GE(seen.opens_client, 1);
    EXPECT_GE(seen.request_writes, 1);  // curl wrote it
    EXPECT_GE(seen.request_reads, 1);   // python read it
    EXPECT_GE(seen.response_writes, 1);
    EXPECT_GE(seen.response_reads, 1);
    EXPECT_GE(seen.closes, 1);
    EXPECT_EQ(seen.malformed, 0);
    const auto drops = capture->drops();
    EXPECT_EQ(drops.ringbuf_full, 0u);
    EXPECT_EQ(drops.recursion_misses, 0u);  // read from the kernel's program info
}

// In a forked child: a TCP connection over loopback, both ends (exits the child on failure).
void connect_over_loopback(int& client, int& server) {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener, 1) != 0 ||
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        _exit(1);
    client = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(client, reinterpret_cast<sockaddr*>(&addr), len) != 0) _exit(1);
    server = ::accept(listener, nullptr, nullptr);
}

// A child process that exchanges keep-alive HTTP/1.1 requests and responses with itself over
// loopback, as fast as it can: `exchanges` of them (each one write and one read on either side)
// and then it sleeps until killed, or without end when exchanges is 0.
pid_t spawn_http_ping_pong(long exchanges = 0) {
    const pid_t pid = fork();
    if (pid != 0) return pid;
    int client = -1, server = -1;
    connect_over_loopback(client, server);
    const std::string request = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    char buffer[256];
    for (long i = 0; exchanges == 0 || i < exchanges; ++i) {
        if (::write(client, request.data(), request.size()) <= 0 ||
            ::read(server, buffer, sizeof(buffer)) <= 0 ||
            ::write(server, response.data(), response.size()) <= 0 ||
            ::read(client, buffer, sizeof(buffer)) <= 0)
            _exit(1);
    }
    for (;;)
        ::pause();
}

// Events wait in per-CPU batches: those of a process that went quiet must still arrive, sent by
// their CPU's batch timer, without any flush from user space. Returns the data events of that
// process seen within 500 ms of its start; `timer_error`: SocketCapture::batch_timer_error().
int data_events_of_quiet_process(const CaptureOptions& options, long exchanges, int& timer_error) {
    int data_events = 0;
    pid_t child = -1;
    std::string error;
    auto capture = SocketCapture::start(
        options,
        [&](std::span<const std::uint8_t> record) {
            const DecodedEvent event = decode_event(record);
            if (const auto* data = std::get_if<DataSegment>(&event))
                if (static_cast<pid_t>(data->event->header.conn.tgid) == child) ++data_events;
        },
        error);
    EXPECT_TRUE(capture) << error;
    if (!capture) return -1;
    child = spawn_http_ping_pong(exchanges);
    // Long enough for the exchanges and for the merger's hold-back.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (std::chrono::steady_clock::now() < until) {
        capture->wait(50);
        capture->drain();
    }
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    EXPECT_EQ(capture->drops().ringbuf_full, 0u);
    EXPECT_EQ(capture->drops().nested, 0u);
    timer_error = capture->batch_timer_error();
    return data_events;
}

// A write's event carries when it happened: the TCP stack's own clock reading when the write was
// sent at once, the clock when TCP held its bytes back (here with TCP_CORK). Either way the
// timestamp lies between CLOCK_MONOTONIC read by the writer just before and just after write().
TEST(SocketCapture, WriteTimestampsLieWithinTheWrite) {
    if (::geteuid() != 0) {
        if (bpf_required()) FAIL() << "LOUPE_REQUIRE_BPF=1 but not root";
        GTEST_SKIP() << "needs root";
    }
    constexpr int kWrites = 40;  // every other one corked
    int windows[2];
    ASSERT_EQ(::pipe(windows), 0);
    std::map<int, std::uint64_t> stamped;  // write number -> its event's timestamp
    pid_t child = -1;
    std::string error;
    auto capture = SocketCapture::start(
        CaptureOptions{},
        [&](std::span<const std::uint8_t> record) {
            const DecodedEvent event = decode_event(record);
            const auto* data = std::get_if<DataSegment>(&event);
            if (!data || static_cast<pid_t>(data->event->header.conn.tgid) != child ||
                data->event->direction != LOUPE_DIR_EGRESS)
                return;
            const std::string head(data->head().begin(), data->head().end());
            if (head.rfind("GET /w/", 0) == 0)
                stamped[std::atoi(head.c_str() + 7)] = data->event->header.timestamp_ns;
        },
        error);
    ASSERT_TRUE(capture) << error;

    child = fork();
    if (child == 0) {
        int client = -1, server = -1;
        connect_over_loopback(client, server);
        char buffer[256];
        for (int i = 0; i < kWrites; ++i) {
            const int cork = i % 2;
            ::setsockopt(client, IPPROTO_TCP, TCP_CORK, &cork, sizeof(cork));
            const std::string request = "GET /w/" + std::to_string(i) + " HTTP/1.1\r\n\r\n";
            timespec before{}, after{};
            ::clock_gettime(CLOCK_MONOTONIC, &before);
            if (::write(client, request.data(), request.size()) <= 0) _exit(1);
            ::clock_gettime(CLOCK_MONOTONIC, &after);
            const std::uint64_t window[2] = {
                static_cast<std::uint64_t>(before.tv_sec) * 1000000000 + before.tv_nsec,
                static_cast<std::uint64_t>(after.tv_sec) * 1000000000 + after.tv_nsec};
            if (::write(windows[1], window, sizeof(window)) != sizeof(window)) _exit(1);
            const int uncork = 0;  // sends a corked request
            ::setsockopt(client, IPPROTO_TCP, TCP_CORK, &uncork, sizeof(uncork));
            if (::read(server, buffer, sizeof(buffer)) <= 0) _exit(1);
        }
        _exit(0);
    }
    ::close(windows[1]);
    int status = -1;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 10; ++i) {
        capture->wait(50);
        capture->drain();
    }
    for (int i = 0; i < kWrites; ++i) {
        std::uint64_t window[2] = {0, 0};
        ASSERT_EQ(::read(windows[0], window, sizeof(window)), static_cast<ssize_t>(sizeof(window)));
        ASSERT_TRUE(stamped.count(i)) << "no event for write " << i;
        EXPECT_GE(stamped[i], window[0]) << "write " << i << (i % 2 ? " (corked)" : "");
        EXPECT_LE(stamped[i], window[1]) << "write " << i << (i % 2 ? " (corked)" : "");
    }
    ::close(windows[0]);
}

TEST(SocketCapture, BatchedEventsOfAProcessThatWentQuietArrive) {
    if (::geteuid() != 0) {
        if (bpf_required()) FAIL() << "LOUPE_REQUIRE_BPF=1 but not root";
        GTEST_SKIP() << "needs root";
    }
    int timer_error = -1;
    EXPECT_EQ(data_events_of_quiet_process(CaptureOptions{}, 50, timer_error), 4 * 50);
    EXPECT_EQ(timer_error, 0) << "the events were sent one by one: the kernel refused the timer";
}

// Without batches (as when the kernel refuses the batch timers) the capture sends each event at
// once: they arrive all the same.
TEST(SocketCapture, EventsArriveUnbatched) {
    if (::geteuid() != 0) {
        if (bpf_required()) FAIL() << "LOUPE_REQUIRE_BPF=1 but not root";
        GTEST_SKIP() << "needs root";
    }
    CaptureOptions options;
    options.batch_events = false;
    int timer_error = -1;
    EXPECT_EQ(data_events_of_quiet_process(options, 50, timer_error), 4 * 50);
    EXPECT_EQ(timer_error, 0);  // never armed
}

// Start-up must not lose what the hooks see: events from the first attached hook on need their
// ring already in place (they once were dropped as ringbuf_full until the rings were created).
TEST(SocketCapture, LosesNothingWhileStarting) {
    if (::geteuid() != 0) {
        if (bpf_required()) FAIL() << "LOUPE_REQUIRE_BPF=1 but not root";
        GTEST_SKIP() << "needs root";
    }
    const pid_t traffic = spawn_http_ping_pong();
    ASSERT_GT(traffic, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // exchanging by now
    std::size_t records = 0;
    std::string error;
    auto capture = SocketCapture::start(
        CaptureOptions{}, [&](std::span<const std::uint8_t>) { ++records; }, error);
    // Longer than the merger's hold-back: what was captured has been handed over.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (capture && std::chrono::steady_clock::now() < until) {
        capture->wait(50);
        capture->drain();
    }
    kill(traffic, SIGKILL);
    int status = 0;
    waitpid(traffic, &status, 0);
    ASSERT_TRUE(capture) << error;
    EXPECT_TRUE(WIFSIGNALED(status)) << "the ping-pong child stopped exchanging early";
    EXPECT_GT(records, 100u);  // the exchange was traced
    EXPECT_EQ(capture->drops().ringbuf_full, 0u);
}

// --comm's kernel side: a process that takes a selected name at exec is selected at once, a
// set_traced_tgids() that does not know it yet (its /proc scan came earlier) leaves it selected
// even when it changes the same bitmap word, and the process's exit unselects it.
TEST(SocketCapture, ProcessFilterKeepsWhatTheKernelSelected) {
    if (::geteuid() != 0) {
        if (bpf_required()) FAIL() << "LOUPE_REQUIRE_BPF=1 but not root";
        GTEST_SKIP() << "needs root";
    }
    char dir[] = "/tmp/loupe-select-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string named = std::string(dir) + "/loupe_selt";  // exec gives it this name
    ASSERT_EQ(::symlink("/bin/sleep", named.c_str()), 0);
    CaptureOptions options;
    options.filter_tgids = true;
    options.select_comms = {"loupe_selt"};
    std::string error;
    auto capture = SocketCapture::start(
        options, [](std::span<const std::uint8_t>) {}, error);
    ASSERT_TRUE(capture) << error;

    const pid_t child = spawn({named, "30"});
    ASSERT_GT(child, 0);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!capture->selects(static_cast<std::uint32_t>(child)) &&
           std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(capture->selects(static_cast<std::uint32_t>(child))) << "not selected at exec";

    // A pid in the same 64-bit word of the bitmap: user space writes that word.
    const auto neighbour = static_cast<std::uint32_t>(child % 64 == 0 ? child + 1 : child - 1);
    capture->set_traced_tgids({neighbour});
    EXPECT_TRUE(capture->selects(neighbour));
    EXPECT_TRUE(capture->selects(static_cast<std::uint32_t>(child)))
        << "user space's write undid the kernel's selection";
    capture->set_traced_tgids({});
    EXPECT_FALSE(capture->selects(neighbour));
    EXPECT_TRUE(capture->selects(static_cast<std::uint32_t>(child)));

    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);  // its exit (and the exit hook) came before this returns
    EXPECT_FALSE(capture->selects(static_cast<std::uint32_t>(child)))
        << "still selected after exit";
    ::unlink(named.c_str());
    ::rmdir(dir);
}

}  // namespace
}  // namespace loupe::capture
