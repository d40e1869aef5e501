// The agent's HTTP endpoint over real loopback sockets: clients that are slow, idle, too many,
// too large or that never read, against the limits that keep /health/* answered.
#include "agent/http_endpoint.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "util/unique_fd.h"

namespace loupe::agent {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class Client {
  public:
    explicit Client(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        connected_ =
            ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    }

    bool connected() const { return connected_; }
    int fd() const { return fd_.get(); }

    bool send(std::string_view bytes) {
        return ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
               static_cast<ssize_t>(bytes.size());
    }

    // Reads until `count` responses are complete (by Content-Length), the peer closes, or the
    // timeout passes.
    std::string read_responses(int count, std::chrono::milliseconds timeout = 2000ms) {
        const auto deadline = Clock::now() + timeout;
        while (complete_responses() < count && !closed_) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left <= 0ms) break;
            pollfd p{fd_.get(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
            char buffer[65536];
            const ssize_t n = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
            if (n <= 0) {
                closed_ = true;
                break;
            }
            received_.append(buffer, static_cast<std::size_t>(n));
        }
        return received_;
    }

    // True when the endpoint closed the connection within the timeout.
    bool closed_within(std::chrono::milliseconds timeout) {
        read_responses(1'000'000, timeout);
        return closed_;
    }

  private:
    int complete_responses() const {
        int count = 0;
        std::size_t pos = 0;
        while (true) {
            const auto head_end = received_.find("\r\n\r\n", pos);
            if (head_end == std::string::npos) return count;
            const auto length_at = received_.find("Content-Length: ", pos);
            std::size_t length = 0;
            if (length_at != std::string::npos && length_at < head_end)
                length = std::stoul(received_.substr(length_at + 16, 20));
            if (received_.size() < head_end + 4 + length) return count;
            pos = head_end + 4 + length;
            ++count;
        }
    }

    util::UniqueFd fd_;
    bool connected_ = false;
    bool closed_ = false;
    std::string received_;
};

std::size_t count_of(const std::string& text, std::string_view what) {
    std::size_t count = 0;
    for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1))
        ++count;
    return count;
}

constexpr std::string_view kLive = "GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n";

class HttpEndpointTest : public ::testing::Test {
  protected:
    void start(HttpEndpointLimits limits = {}) {
        endpoint_ = std::make_unique<HttpEndpoint>(limits);
        auto& routes = endpoint_->routes();
        routes.Get("/health/live", [](const httplib::Request&, httplib::Response& res) {
            res.set_content("live", "text/plain");
        });
        routes.Get("/echo-path", [](const httplib::Request& req, httplib::Response& res) {
            res.set_content(req.path + " " + req.remote_addr, "text/plain");
        });
        routes.Get("/slow", [](const httplib::Request&, httplib::Response& res) {
            std::this_thread::sleep_for(300ms);
            res.set_content("slow", "text/plain");
        });
        routes.Get("/big", [](const httplib::Request&, httplib::Response& res) {
            res.set_content(std::string(16u << 20, 'x'), "text/plain");
        });
        std::string error;
        ASSERT_TRUE(endpoint_->open("127.0.0.1", 0, error)) << error;
        endpoint_->start();
        port_ = endpoint_->port();
        ASSERT_GT(port_, 0);
    }

    // A fresh connection's GET /health/live: its latency, or a failure.
    std::chrono::milliseconds probe_latency() {
        const auto start_at = Clock::now();
        Client client(port_);
        EXPECT_TRUE(client.connected());
        client.send(kLive);
        const std::string response = client.read_responses(1, 3000ms);
        EXPECT_NE(response.find("HTTP/1.1 200 OK"), std::string::npos) << response;
        return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_at);
    }

    std::unique_ptr<HttpEndpoint> endpoint_;
    int port_ = 0;
};

TEST_F(HttpEndpointTest, AnswersPipelinedRequestsInOrderOnOneConnection) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.connected());
    // A GET with a body: the body is skipped, not read as the next request.
    client.send(std::string(kLive) +
                "GET /echo-path HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" +
                "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n");
    const std::string got = client.read_responses(3);
    EXPECT_EQ(count_of(got, "HTTP/1.1 200 OK"), 2u) << got;
    EXPECT_EQ(count_of(got, "HTTP/1.1 404 Not Found"), 1u) << got;
    EXPECT_LT(got.find("live"), got.find("/echo-path 127.0.0.1")) << got;
    EXPECT_NE(got.find("Keep-Alive: timeout=5, max=100"), std::string::npos) << got;
    // Still open for more.
    client.send(kLive);
    EXPECT_EQ(count_of(client.read_responses(4), "HTTP/1.1 200 OK"), 3u);
}

TEST_F(HttpEndpointTest, RefusesAPortAnotherSocketListensOn) {
    start();
    HttpEndpoint second;
    std::string error;
    EXPECT_FALSE(second.open("127.0.0.1", port_, error));
    EXPECT_NE(error.find("cannot listen on 127.0.0.1:" + std::to_string(port_) +
                         ": Address already in use"),
              std::string::npos)
        << error;

    // A listener with SO_REUSEPORT (as cpp-httplib sets it) cannot share with the endpoint either.
    util::UniqueFd other(::socket(AF_INET, SOCK_STREAM, 0));
    const int yes = 1;
    ::setsockopt(other.get(), SOL_SOCKET, SO_REUSEPORT, &yes, sizeof(yes));
    ::setsockopt(other.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(other.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(::listen(other.get(), 5), 0);
    socklen_t length = sizeof(address);
    ::getsockname(other.get(), reinterpret_cast<sockaddr*>(&address), &length);
    HttpEndpoint third;
    EXPECT_FALSE(third.open("127.0.0.1", ntohs(address.sin_port), error));
    EXPECT_NE(error.find("Address already in use"), std::string::npos) << error;
}

TEST_F(HttpEndpointTest, SlowlorisClientsAreCutAtTheRequestDeadlineAndProbesStillAnswer) {
    HttpEndpointLimits limits;
    limits.request_timeout = 600ms;
    start(limits);
    // 64 clients each sending a byte every 50 ms: fast enough for any per-read timeout.
    std::vector<std::unique_ptr<Client>> slow;
    for (int i = 0; i < 64; ++i) {
        slow.push_back(std::make_unique<Client>(port_));
        ASSERT_TRUE(slow.back()->connected());
        slow.back()->send("GET /health/live HTTP/1.1\r\n");
    }
    const auto start_at = Clock::now();
    std::chrono::milliseconds worst{0};
    while (Clock::now() - start_at < 400ms) {
        for (auto& client : slow)
            client->send("X");
        worst = std::max(worst, probe_latency());
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_LT(worst, 500ms);
    for (auto& client : slow) {
        for (int i = 0; i < 40 && !client->closed_within(50ms); ++i)
            client->send("X");
        EXPECT_NE(client->read_responses(1).find("HTTP/1.1 408 Request Timeout"),
                  std::string::npos);
    }
    EXPECT_LT(Clock::now() - start_at, 2s);
    EXPECT_EQ(endpoint_->counters().request_timeouts, 64u);
}

TEST_F(HttpEndpointTest, IdleKeepAliveConnectionsAreClosed) {
    HttpEndpointLimits limits;
    limits.idle_timeout = 200ms;
    start(limits);
    Client idle(port_);
    Client used(port_);
    used.send(kLive);
    EXPECT_EQ(count_of(used.read_responses(1), "200 OK"), 1u);
    EXPECT_TRUE(idle.closed_within(1500ms));
    EXPECT_TRUE(used.closed_within(1500ms));
    EXPECT_EQ(endpoint_->counters().idle_timeouts, 2u);
    EXPECT_EQ(endpoint_->open_connections(), 0u);
}

TEST_F(HttpEndpointTest, RejectsOversizedAndUnframedRequests) {
    start();
    const std::pair<std::string, std::string> cases[] = {
        {"GET /health/live HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n",
         "HTTP/1.1 431 "},
        {"POST /health/live HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", "HTTP/1.1 413 "},
        {"POST /health/live HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 411 "},
        {"GET /health/live HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", "HTTP/1.1 400 "},
        {"GET /health/live HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
         "HTTP/1.1 400 "},
    };
    for (const auto& [request, status] : cases) {
        Client client(port_);
        client.send(request);
        const std::string got = client.read_responses(1);
        EXPECT_EQ(got.rfind(status, 0), 0u) << got;
        EXPECT_TRUE(client.closed_within(1000ms));
    }
    EXPECT_EQ(endpoint_->counters().requests_rejected, std::size(cases));
    // cpp-httplib's own checks still apply to what gets through: a malformed request line.
    Client client(port_);
    client.send("NONSENSE\r\n\r\n");
    EXPECT_EQ(client.read_responses(1).rfind("HTTP/1.1 400 ", 0), 0u);
}

TEST_F(HttpEndpointTest, AFullEndpointClosesItsOldestIdleConnectionForANewOne) {
    HttpEndpointLimits limits;
    limits.max_connections = 8;
    start(limits);
    std::vector<std::unique_ptr<Client>> idle;
    for (int i = 0; i < 8; ++i) {
        idle.push_back(std::make_unique<Client>(port_));
        std::this_thread::sleep_for(10ms);  // an order of age
    }
    while (endpoint_->open_connections() < 8)
        std::this_thread::sleep_for(1ms);
    EXPECT_LT(probe_latency(), 500ms);
    EXPECT_TRUE(idle.front()->closed_within(500ms));
    EXPECT_FALSE(idle.back()->closed_within(100ms));
    EXPECT_EQ(endpoint_->counters().connections_evicted, 1u);
}

TEST_F(HttpEndpointTest, AQueueOfSlowRequestsIsCappedAndProbesBypassIt) {
    HttpEndpointLimits limits;
    limits.workers = 1;
    limits.max_queued_requests = 2;
    start(limits);
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 6; ++i) {
        clients.push_back(std::make_unique<Client>(port_));
        clients.back()->send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
        if (i == 0) std::this_thread::sleep_for(50ms);  // the worker has taken it
    }
    std::this_thread::sleep_for(50ms);
    EXPECT_LT(probe_latency(), 500ms);  // while /slow requests hold the only general worker
    std::size_t answered = 0, overloaded = 0;
    for (auto& client : clients) {
        const std::string got = client->read_responses(1, 3000ms);
        answered += count_of(got, "HTTP/1.1 200 OK");
        overloaded += count_of(got, "HTTP/1.1 503 Service Unavailable");
    }
    EXPECT_EQ(answered, 3u);  // one being answered, two queued
    EXPECT_EQ(overloaded, 3u);
    EXPECT_EQ(endpoint_->counters().requests_overloaded, 3u);
}

TEST_F(HttpEndpointTest, AClientThatDoesNotReadHoldsNoWorker) {
    HttpEndpointLimits limits;
    limits.workers = 1;
    limits.write_timeout = 3s;
    limits.max_pending_output_bytes = 16u << 20;
    start(limits);
    Client stuck(port_);
    int small = 4096;  // its socket takes little of the response
    ::setsockopt(stuck.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    stuck.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    // The only general worker answers another request while that response waits for its reader
    // (the worker has only to make a response, never to wait for a client to take it)...
    Client reader(port_);
    reader.send("GET /echo-path HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(count_of(reader.read_responses(1, 2500ms), "200 OK"), 1u);
    EXPECT_EQ(endpoint_->counters().write_timeouts, 0u);
    // ...and a second 16 MiB response, over the pending-output budget with the first one's 12 MiB
    // at least (beyond what its socket took), closes its connection.
    Client over(port_);
    over.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_TRUE(over.closed_within(5000ms));
    EXPECT_EQ(endpoint_->counters().output_overflows, 1u);
    // The client that does not read is cut at the write deadline.
    for (int i = 0; i < 600 && endpoint_->counters().write_timeouts == 0; ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(endpoint_->counters().write_timeouts, 1u);
    EXPECT_EQ(endpoint_->open_connections(), 1u);  // `reader`'s
    EXPECT_LT(probe_latency(), 500ms);
}

}  // namespace
}  // namespace loupe::agent
