// The agent's HTTP server. cpp-httplib routes requests and writes responses; this class owns the
// socket work around it, because cpp-httplib 0.11 gives each connection a thread from a pool of 8
// for as long as the client keeps it open: 8 slowloris clients starved every probe.
//
// One event loop accepts connections and reads each request (line, headers, body) whole, with a
// deadline for the whole request, so a slow or idle client costs a buffer, not a thread. Workers
// only ever see complete requests, and never wait on a client: a response the socket cannot take
// at once goes back to the loop, which sends it with a deadline. /health/* requests have their own
// workers, so an expensive /metrics backlog cannot delay a liveness probe.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace httplib {
class Server;
}

namespace loupe::agent {

struct HttpEndpointLimits {
    // Open connections at once. A new connection beyond it closes the oldest one that is only
    // idle, reading or being sent to (not one being answered); with none, it gets a 503.
    std::size_t max_connections = 1024;
    std::chrono::milliseconds idle_timeout{
        5'000};  // keep-alive: from a response to the next request
    // A whole request (request line, headers and body) from its first byte: a client sending one
    // byte a second cannot keep a connection by being just fast enough for a per-read timeout.
    std::chrono::milliseconds request_timeout{5'000};
    std::chrono::milliseconds write_timeout{10'000};  // a whole response, once it is ready
    std::size_t max_head_bytes = 16 * 1024;           // request line and headers: else 431
    std::size_t max_body_bytes = 4 * 1024;            // Content-Length: else 413; chunked: 411
    std::size_t max_requests_per_connection = 100;    // then "Connection: close"
    // Requests waiting for a worker, /health/* apart (those are one per connection at most and
    // take microseconds); more are answered 503 at once rather than queued behind slow ones.
    std::size_t max_queued_requests = 64;
    // Bytes of responses waiting for slow readers, all connections together; a response that
    // would go beyond (other than the only one) closes its connection.
    std::size_t max_pending_output_bytes = 32u << 20;
    unsigned workers = 4;
    unsigned probe_workers = 2;  // /health/* only
};

struct HttpEndpointCounters {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_evicted = 0;  // closed to make room at max_connections
    std::uint64_t connections_refused = 0;  // 503: max_connections, none could be evicted
    std::uint64_t requests = 0;             // answered by the routes
    std::uint64_t requests_rejected = 0;    // 400, 411, 413, 431 before routing
    std::uint64_t requests_overloaded = 0;  // 503: max_queued_requests waiting already
    std::uint64_t request_timeouts = 0;     // 408: the request did not arrive in time
    std::uint64_t idle_timeouts = 0;        // keep-alive connections closed after idle_timeout
    std::uint64_t write_timeouts = 0;       // responses not read within write_timeout
    std::uint64_t output_overflows = 0;     // connections closed at max_pending_output_bytes
};

class HttpEndpoint {
  public:
    explicit HttpEndpoint(HttpEndpointLimits limits = {});
    ~HttpEndpoint();
    HttpEndpoint(const HttpEndpoint&) = delete;
    HttpEndpoint& operator=(const HttpEndpoint&) = delete;

    // Where handlers are registered (Get, set_error_handler...), before start(). Its own
    // listen/bind functions are never used.
    httplib::Server& routes();

    // Binds HOST:PORT (0: any free port) and listens. Never shares the port: SO_REUSEADDR only,
    // no SO_REUSEPORT, so a second agent on a port in use fails here rather than taking half of
    // the scrapes. False with `error` saying why (errno text included).
    bool open(const std::string& host, int port, std::string& error);
    int port() const { return port_; }
    // The connection cap in force: max_connections, or less when RLIMIT_NOFILE is too low.
    std::size_t max_connections() const { return limits_.max_connections; }

    // Serves on background threads until close(). Call once, after open().
    void start();
    // Stops accepting, finishes the requests being answered, closes every connection; idempotent.
    void close();

    HttpEndpointCounters counters() const;
    std::size_t open_connections() const { return open_connections_.load(); }

  private:
    struct Impl;
    HttpEndpointLimits limits_;
    int port_ = 0;
    std::atomic<std::size_t> open_connections_{0};
    std::unique_ptr<Impl> impl_;
};

}  // namespace loupe::agent
