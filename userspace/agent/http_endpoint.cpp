#include "agent/http_endpoint.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include "util/unique_fd.h"

namespace loupe::agent {
namespace {

using Clock = std::chrono::steady_clock;

// The kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).
constexpr int kListenBacklog = 4096;
// Descriptors the agent needs besides its connections: BPF maps, links and rings, /proc files.
constexpr rlim_t kReservedDescriptors = 1024;
// Response bytes gathered before a send: a small response goes out in one segment.
constexpr std::size_t kCoalesceBytes = 64 * 1024;
// Accepts per wake-up: a connection flood must not starve the connections already open.
constexpr int kAcceptBatch = 64;

// cpp-httplib's request processing (parse one request, route it, write the response to a
// stream) is protected: the endpoint feeds it requests it has read whole.
class Router : public httplib::Server {
  public:
    bool handle(httplib::Stream& stream, bool close_connection, bool& connection_closed) {
        return process_request(stream, close_connection, connection_closed, nullptr);
    }
};

enum class State {
    kReading,  // idle, or receiving a request: the event loop's
    kBusy,     // a complete request queued for or held by a worker: the worker's
    kWriting,  // a response the socket did not take at once: the event loop's
};

struct Connection {
    util::UniqueFd fd;
    State state = State::kReading;
    std::string in;                 // received and not answered yet (pipelined requests too)
    std::size_t request_bytes = 0;  // kBusy: the complete request at the front of `in`
    bool probe = false;             // kBusy: that request is for /health*
    bool request_started = false;   // kReading: a byte of the next request arrived
    bool peer_closed = false;       // the client shut its side: answer what came, then close
    std::string out;                // response bytes not sent yet, from out_sent on
    std::size_t out_sent = 0;
    std::size_t out_accounted = 0;  // counted in the pending output budget
    bool send_failed = false;
    bool keep_alive = true;  // after the response being sent
    std::size_t requests = 0;
    Clock::time_point since;     // when the state began: eviction takes the oldest
    Clock::time_point deadline;  // of the state (none while kBusy)

    std::size_t unsent() const { return out.size() - out_sent; }
};

// Sends what the socket takes now. False when the connection is broken.
bool send_pending(Connection& c) {
    while (c.out_sent < c.out.size()) {
        const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_sent, c.out.size() - c.out_sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c.out_sent += static_cast<std::size_t>(n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            return false;
        }
    }
    c.out.clear();
    c.out_sent = 0;
    return true;
}

std::string format_address(const sockaddr_storage& address, socklen_t length, int& port) {
    char host[NI_MAXHOST] = {};
    char service[NI_MAXSERV] = {};
    if (::getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host, sizeof(host),
                      service, sizeof(service), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return {};
    port = std::atoi(service);
    return host;
}

// A stream over one request read whole: cpp-httplib reads the request from the buffer and
// writes the response here, which gathers it and sends it without ever blocking.
class BufferedStream : public httplib::Stream {
  public:
    explicit BufferedStream(Connection& connection) : c_(connection) {}

    bool is_readable() const override { return true; }
    bool is_writable() const override { return !c_.send_failed; }

    ssize_t read(char* ptr, size_t size) override {
        const std::size_t n = std::min(size, c_.request_bytes - read_);
        std::memcpy(ptr, c_.in.data() + read_, n);
        read_ += n;
        return static_cast<ssize_t>(n);
    }

    ssize_t write(const char* ptr, size_t size) override {
        if (c_.send_failed) return -1;
        if (c_.unsent() + size <= kCoalesceBytes) {
            c_.out.append(ptr, size);
            return static_cast<ssize_t>(size);
        }
        // A large response: straight to the socket as far as it takes it, the rest kept.
        if (!send_pending(c_)) {
            c_.send_failed = true;
            return -1;
        }
        std::size_t sent = 0;
        while (c_.unsent() == 0 && sent < size) {
            const ssize_t n =
                ::send(c_.fd.get(), ptr + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += static_cast<std::size_t>(n);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else {
                c_.send_failed = true;
                return -1;
            }
        }
        c_.out.append(ptr + sent, size - sent);
        return static_cast<ssize_t>(size);
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override {
        sockaddr_storage address{};
        socklen_t length = sizeof(address);
        if (::getpeername(c_.fd.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0)
            ip = format_address(address, length, port);
    }

    void get_local_ip_and_port(std::string& ip, int& port) const override {
        sockaddr_storage address{};
        socklen_t length = sizeof(address);
        if (::getsockname(c_.fd.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0)
            ip = format_address(address, length, port);
    }

    // cpp-httplib uses the socket only to refuse (500) one numbered FD_SETSIZE or more, a limit
    // of select(), which nothing here calls: the endpoint serves up to max_connections.
    socket_t socket() const override { return INVALID_SOCKET; }

  private:
    Connection& c_;
    std::size_t read_ = 0;
};

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

struct RequestScan {
    enum class Outcome { kNeedMore, kComplete, kReject };
    Outcome outcome = Outcome::kNeedMore;
    std::size_t bytes = 0;  // kComplete: request line, headers and body
    bool probe = false;     // for /health*
    int status = 0;         // kReject
    const char* error = "";
};

// Where the request at the front of `in` ends, from its headers alone: the endpoint reads
// whole requests, and cpp-httplib never reads past the end found here.
RequestScan scan_request(std::string_view in, const HttpEndpointLimits& limits) {
    RequestScan scan;
    auto reject = [&](int status, const char* error) {
        scan.outcome = RequestScan::Outcome::kReject;
        scan.status = status;
        scan.error = error;
        return scan;
    };
    const auto head_end = in.substr(0, limits.max_head_bytes).find("\r\n\r\n");
    if (head_end == std::string_view::npos)
        return in.size() >= limits.max_head_bytes ? reject(431, "request headers too large") : scan;
    const std::string_view head = in.substr(0, head_end + 2);  // each line ends with CRLF
    const auto line_end = head.find("\r\n");
    const std::string_view request_line = head.substr(0, line_end);
    if (const auto space = request_line.find(' '); space != std::string_view::npos)
        scan.probe = request_line.substr(space + 1).starts_with("/health");
    std::size_t content_length = 0;
    bool has_length = false;
    for (std::size_t pos = line_end + 2; pos < head.size();) {
        const auto end = head.find("\r\n", pos);
        const std::string_view line = head.substr(pos, end - pos);
        pos = end + 2;
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        const std::string_view name = line.substr(0, colon);
        if (iequals(name, "transfer-encoding"))
            return reject(411, "a request body needs a Content-Length");
        if (!iequals(name, "content-length")) continue;
        const std::string_view value = trim(line.substr(colon + 1));
        std::size_t length = 0;
        const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
        if (value.empty() || ec != std::errc() || ptr != value.data() + value.size() ||
            (has_length && length != content_length))
            return reject(400, "invalid Content-Length");
        content_length = length;
        has_length = true;
    }
    if (content_length > limits.max_body_bytes) return reject(413, "request body too large");
    scan.bytes = head_end + 4 + content_length;
    if (in.size() >= scan.bytes) scan.outcome = RequestScan::Outcome::kComplete;
    return scan;
}

const char* reason_phrase(int status) {
    switch (status) {
        case 400:
            return "Bad Request";
        case 408:
            return "Request Timeout";
        case 411:
            return "Length Required";
        case 413:
            return "Payload Too Large";
        case 431:
            return "Request Header Fields Too Large";
        default:
            return "Service Unavailable";
    }
}

// An answer from the endpoint itself, before routing; the connection closes after it.
void send_final_answer(int fd, int status, std::string_view error) {
    const std::string body = fmt::format(R"({{"error":"{}"}})", error);
    const std::string response = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n{}",
        status, reason_phrase(status), body.size(), body);
    // Best effort: a client that does not read does not get it.
    [[maybe_unused]] const ssize_t n =
        ::send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

std::string host_port(const std::string& host, int port) {
    return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                               : fmt::format("{}:{}", host, port);
}

// Each connection is a descriptor, and the soft limit is often 1024: raise it to fit
// max_connections besides the agent's own descriptors, or lower the cap to fit the limit.
void fit_descriptor_limit(HttpEndpointLimits& limits) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    const rlim_t wanted = static_cast<rlim_t>(limits.max_connections) + kReservedDescriptors;
    if (limit.rlim_cur >= wanted) return;
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    if (limit.rlim_cur >= wanted) return;
    const rlim_t fitting = limit.rlim_cur > kReservedDescriptors + 64
                               ? limit.rlim_cur - kReservedDescriptors
                               : rlim_t{64};
    spdlog::warn(
        "the open-file limit ({}) leaves room for {} HTTP connections instead of {}: raise it "
        "(ulimit -n, LimitNOFILE=) to serve more",
        limit.rlim_cur, fitting, limits.max_connections);
    limits.max_connections = static_cast<std::size_t>(fitting);
}

struct Counters {
    std::atomic<std::uint64_t> connections_accepted{0};
    std::atomic<std::uint64_t> connections_evicted{0};
    std::atomic<std::uint64_t> connections_refused{0};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> requests_rejected{0};
    std::atomic<std::uint64_t> requests_overloaded{0};
    std::atomic<std::uint64_t> request_timeouts{0};
    std::atomic<std::uint64_t> idle_timeouts{0};
    std::atomic<std::uint64_t> write_timeouts{0};
    std::atomic<std::uint64_t> output_overflows{0};
};

}  // namespace

struct HttpEndpoint::Impl {
    struct Lane {
        std::deque<Connection*> queue;  // guarded by lanes_mutex
        std::condition_variable wake;
        std::vector<std::thread> threads;
    };

    Impl(const HttpEndpointLimits& endpoint_limits, std::atomic<std::size_t>& open)
        : limits(endpoint_limits), open_connections(open) {}

    void run();
    void accept_connections(Clock::time_point now);
    void on_ready(Connection& c, Clock::time_point now);
    void read_request(Connection& c, Clock::time_point now);
    // A request may be complete in `in`: dispatch it, reject it, or wait for more.
    void advance(Connection& c, Clock::time_point now);
    void dispatch(Connection& c);
    void finish_answered(Clock::time_point now);
    void after_response(Connection& c, Clock::time_point now);
    void sweep(Clock::time_point now);
    bool evict_oldest();
    void answer_and_close(Connection& c, int status, std::string_view error);
    void close_connection(Connection& c);
    bool arm(Connection& c, std::uint32_t events);
    void set_deadline(Connection& c, Clock::time_point deadline);
    int wait_timeout_ms(Clock::time_point now) const;
    void work(Lane& lane);
    void answer(Connection& c);
    void stop();

    const HttpEndpointLimits& limits;
    std::atomic<std::size_t>& open_connections;
    Router router;
    util::UniqueFd listener;
    util::UniqueFd epoll;
    util::UniqueFd wake;  // eventfd: workers hand answered connections back, close() stops

    // The event loop's own (kBusy ones are a worker's meanwhile).
    std::unordered_map<int, std::unique_ptr<Connection>> connections;
    Clock::time_point next_sweep = Clock::time_point::max();
    bool accepting_paused = false;  // out of descriptors: the listener rests a moment
    Clock::time_point resume_accepting;

    std::mutex lanes_mutex;
    Lane general;
    Lane probes;
    std::mutex answered_mutex;
    std::vector<Connection*> answered;  // by workers, for the event loop

    std::atomic<bool> stopping{false};
    std::atomic<std::size_t> pending_output{0};
    Counters counters;
    std::thread loop;
};

HttpEndpoint::HttpEndpoint(HttpEndpointLimits limits)
    : limits_(limits), impl_(std::make_unique<Impl>(limits_, open_connections_)) {
    // The Keep-Alive header cpp-httplib writes states these.
    impl_->router.set_keep_alive_max_count(limits_.max_requests_per_connection);
    impl_->router.set_keep_alive_timeout(
        std::chrono::duration_cast<std::chrono::seconds>(limits_.idle_timeout).count());
}

HttpEndpoint::~HttpEndpoint() {
    close();
}

httplib::Server& HttpEndpoint::routes() {
    return impl_->router;
}

bool HttpEndpoint::open(const std::string& host, int port, std::string& error) {
    fit_descriptor_limit(limits_);
    const std::string where = host_port(host, port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = std::to_string(port);
    if (const int rc =
            ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
        rc != 0) {
        error = fmt::format("cannot listen on {}: {}", where, ::gai_strerror(rc));
        return false;
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, ::freeaddrinfo);
    int last_errno = 0;
    for (const addrinfo* a = found; a && !impl_->listener.valid(); a = a->ai_next) {
        util::UniqueFd fd(
            ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
        if (!fd.valid()) {
            last_errno = errno;
            continue;
        }
        // SO_REUSEADDR lets a restarted agent bind despite its old connections in TIME_WAIT; it
        // never lets two sockets listen on one port. SO_REUSEPORT would (cpp-httplib sets it),
        // and scrapes would then alternate between two agents.
        const int yes = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
        if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 ||
            ::listen(fd.get(), kListenBacklog) != 0) {
            last_errno = errno;
            continue;
        }
        impl_->listener = std::move(fd);
    }
    if (!impl_->listener.valid()) {
        error = fmt::format("cannot listen on {}: {}", where, std::strerror(last_errno));
        if (last_errno == EADDRINUSE)
            error +=
                " (another process listens there: another loupe agent? pick another port "
                "with --listen)";
        return false;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    if (::getsockname(impl_->listener.get(), reinterpret_cast<sockaddr*>(&bound), &length) == 0)
        format_address(bound, length, port_);
    return true;
}

void HttpEndpoint::start() {
    Impl& impl = *impl_;
    impl.epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
    impl.wake.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    for (const int fd : {impl.listener.get(), impl.wake.get()}) {
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = fd;
        ::epoll_ctl(impl.epoll.get(), EPOLL_CTL_ADD, fd, &event);
    }
    for (unsigned i = 0; i < std::max(1u, limits_.workers); ++i)
        impl.general.threads.emplace_back([&impl] { impl.work(impl.general); });
    for (unsigned i = 0; i < std::max(1u, limits_.probe_workers); ++i)
        impl.probes.threads.emplace_back([&impl] { impl.work(impl.probes); });
    impl.loop = std::thread([&impl] { impl.run(); });
}

void HttpEndpoint::close() {
    if (impl_) impl_->stop();
}

HttpEndpointCounters HttpEndpoint::counters() const {
    const Counters& c = impl_->counters;
    return {c.connections_accepted.load(), c.connections_evicted.load(),
            c.connections_refused.load(),  c.requests.load(),
            c.requests_rejected.load(),    c.requests_overloaded.load(),
            c.request_timeouts.load(),     c.idle_timeouts.load(),
            c.write_timeouts.load(),       c.output_overflows.load()};
}

void HttpEndpoint::Impl::stop() {
    if (stopping.exchange(true)) return;
    if (wake.valid()) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(wake.get(), &one, sizeof(one));
    }
    if (loop.joinable()) loop.join();
    {
        std::lock_guard lock(lanes_mutex);  // no worker between its check and its wait
    }
    general.wake.notify_all();
    probes.wake.notify_all();
    for (Lane* lane : {&general, &probes})
        for (auto& thread : lane->threads)
            if (thread.joinable()) thread.join();
    connections.clear();
    listener.reset();
    open_connections = 0;
}

int HttpEndpoint::Impl::wait_timeout_ms(Clock::time_point now) const {
    Clock::time_point next = next_sweep;
    if (accepting_paused) next = std::min(next, resume_accepting);
    if (next == Clock::time_point::max()) return -1;
    if (next <= now) return 0;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
    return static_cast<int>(std::min<long long>(ms, 60'000));
}

void HttpEndpoint::Impl::run() {
    std::array<epoll_event, 256> events{};
    while (!stopping) {
        const int n = ::epoll_wait(epoll.get(), events.data(), static_cast<int>(events.size()),
                                   wait_timeout_ms(Clock::now()));
        if (n < 0 && errno != EINTR) {
            spdlog::error("HTTP endpoint: epoll_wait: {}", std::strerror(errno));
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        const auto now = Clock::now();
        for (int i = 0; i < n && !stopping; ++i) {
            const int fd = events[static_cast<std::size_t>(i)].data.fd;
            if (fd == listener.get()) {
                accept_connections(now);
            } else if (fd == wake.get()) {
                std::uint64_t count = 0;
                [[maybe_unused]] const ssize_t r = ::read(wake.get(), &count, sizeof(count));
            } else if (const auto it = connections.find(fd); it != connections.end()) {
                on_ready(*it->second, now);
            }
        }
        if (stopping) break;
        finish_answered(now);
        if (accepting_paused && now >= resume_accepting) {
            accepting_paused = false;
            epoll_event event{};
            event.events = EPOLLIN;
            event.data.fd = listener.get();
            ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, listener.get(), &event);
        }
        if (now >= next_sweep) sweep(now);
    }
}

void HttpEndpoint::Impl::accept_connections(Clock::time_point now) {
    for (int i = 0; i < kAcceptBatch; ++i) {
        const int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                if (evict_oldest()) continue;
                // A level-triggered listener would wake the loop again at once: rest it.
                accepting_paused = true;
                resume_accepting = now + std::chrono::milliseconds(100);
                ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, listener.get(), nullptr);
                spdlog::warn("HTTP endpoint: cannot accept connections: {}", std::strerror(errno));
            }
            return;
        }
        counters.connections_accepted.fetch_add(1, std::memory_order_relaxed);
        // Connections answered with "Connection: close" free their place first: their clients
        // reconnect at once.
        if (connections.size() >= limits.max_connections) finish_answered(now);
        if (connections.size() >= limits.max_connections && !evict_oldest()) {
            counters.connections_refused.fetch_add(1, std::memory_order_relaxed);
            send_final_answer(fd, 503, "too many connections");
            ::close(fd);
            continue;
        }
        // Responses are gathered and sent whole: nothing to gain from Nagle's delay.
        const int yes = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
        auto connection = std::make_unique<Connection>();
        connection->fd.reset(fd);
        connection->since = now;
        epoll_event event{};
        event.events = EPOLLIN | EPOLLONESHOT;
        event.data.fd = fd;
        if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &event) != 0) continue;  // closes it
        Connection& c = *connections.emplace(fd, std::move(connection)).first->second;
        open_connections = connections.size();
        set_deadline(c, now + limits.idle_timeout);
    }
}

void HttpEndpoint::Impl::on_ready(Connection& c, Clock::time_point now) {
    if (c.state == State::kReading) {
        read_request(c, now);
    } else if (c.state == State::kWriting) {
        if (!send_pending(c)) return close_connection(c);
        if (c.unsent() > 0) {
            arm(c, EPOLLOUT);
            return;
        }
        after_response(c, now);
    }
}

void HttpEndpoint::Impl::read_request(Connection& c, Clock::time_point now) {
    // Up to one whole request of the largest size allowed; pipelined ones wait in the kernel.
    const std::size_t capacity = limits.max_head_bytes + limits.max_body_bytes;
    std::array<char, 16 * 1024> buffer;
    while (c.in.size() < capacity) {
        const std::size_t want = std::min(buffer.size(), capacity - c.in.size());
        const ssize_t n = ::recv(c.fd.get(), buffer.data(), want, 0);
        if (n > 0) {
            c.in.append(buffer.data(), static_cast<std::size_t>(n));
            if (static_cast<std::size_t>(n) < want) break;
        } else if (n == 0) {
            c.peer_closed = true;
            break;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            return close_connection(c);
        }
    }
    if (!c.request_started && !c.in.empty()) {
        c.request_started = true;
        set_deadline(c, now + limits.request_timeout);
    }
    advance(c, now);
}

void HttpEndpoint::Impl::advance(Connection& c, Clock::time_point) {
    const RequestScan scan = scan_request(c.in, limits);
    switch (scan.outcome) {
        case RequestScan::Outcome::kReject:
            counters.requests_rejected.fetch_add(1, std::memory_order_relaxed);
            return answer_and_close(c, scan.status, scan.error);
        case RequestScan::Outcome::kNeedMore:
            if (c.peer_closed) return close_connection(c);
            arm(c, EPOLLIN);
            return;
        case RequestScan::Outcome::kComplete:
            c.request_bytes = scan.bytes;
            c.probe = scan.probe;
            return dispatch(c);
    }
}

void HttpEndpoint::Impl::dispatch(Connection& c) {
    Lane& lane = c.probe ? probes : general;
    {
        std::lock_guard lock(lanes_mutex);
        // /health* requests are never refused: at most one per connection, each takes
        // microseconds, and a liveness probe refused gets the agent restarted.
        if (c.probe || lane.queue.size() < limits.max_queued_requests) {
            c.state = State::kBusy;
            lane.queue.push_back(&c);
        }
    }
    if (c.state != State::kBusy) {
        counters.requests_overloaded.fetch_add(1, std::memory_order_relaxed);
        return answer_and_close(c, 503, "too many requests waiting, retry later");
    }
    lane.wake.notify_one();
}

void HttpEndpoint::Impl::work(Lane& lane) {
    while (true) {
        Connection* c = nullptr;
        {
            std::unique_lock lock(lanes_mutex);
            lane.wake.wait(lock, [&] { return stopping || !lane.queue.empty(); });
            if (stopping) return;
            c = lane.queue.front();
            lane.queue.pop_front();
        }
        answer(*c);
        {
            std::lock_guard lock(answered_mutex);
            answered.push_back(c);
        }
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(wake.get(), &one, sizeof(one));
    }
}

void HttpEndpoint::Impl::answer(Connection& c) {
    BufferedStream stream(c);
    const bool last = c.peer_closed || c.requests + 1 >= limits.max_requests_per_connection;
    bool connection_closed = false;
    const bool ok = router.handle(stream, last, connection_closed);
    ++c.requests;
    counters.requests.fetch_add(1, std::memory_order_relaxed);
    c.in.erase(0, c.request_bytes);
    c.request_bytes = 0;
    c.keep_alive = ok && !connection_closed && !last;
    if (!c.send_failed && !send_pending(c)) c.send_failed = true;
    if (c.send_failed) {
        c.out.clear();
        c.out_sent = 0;
        c.keep_alive = false;
        return;
    }
    const std::size_t left = c.unsent();
    if (left == 0) return;
    // The event loop sends the rest; the budget bounds what slow readers can make the agent hold.
    std::size_t pending = pending_output.load();
    while (pending == 0 || pending + left <= limits.max_pending_output_bytes) {
        if (pending_output.compare_exchange_weak(pending, pending + left)) {
            c.out_accounted = left;
            return;
        }
    }
    counters.output_overflows.fetch_add(1, std::memory_order_relaxed);
    c.out.clear();
    c.out_sent = 0;
    c.keep_alive = false;
}

void HttpEndpoint::Impl::finish_answered(Clock::time_point now) {
    std::vector<Connection*> done;
    {
        std::lock_guard lock(answered_mutex);
        done.swap(answered);
    }
    for (Connection* c : done) {
        c->since = now;
        if (c->unsent() == 0) {
            after_response(*c, now);
            continue;
        }
        c->state = State::kWriting;
        set_deadline(*c, now + limits.write_timeout);
        arm(*c, EPOLLOUT);
    }
}

void HttpEndpoint::Impl::after_response(Connection& c, Clock::time_point now) {
    pending_output -= c.out_accounted;
    c.out_accounted = 0;
    if (c.out.capacity() > kCoalesceBytes) std::string().swap(c.out);
    if (!c.keep_alive) return close_connection(c);
    c.state = State::kReading;
    c.since = now;
    c.request_started = !c.in.empty();
    set_deadline(c, now + (c.request_started ? limits.request_timeout : limits.idle_timeout));
    if (c.in.empty()) {
        if (c.in.capacity() > 4096) std::string().swap(c.in);
        if (c.peer_closed) return close_connection(c);
        arm(c, EPOLLIN);
        return;
    }
    advance(c, now);  // a pipelined request, maybe whole already
}

void HttpEndpoint::Impl::sweep(Clock::time_point now) {
    next_sweep = Clock::time_point::max();
    std::vector<Connection*> expired;
    for (const auto& [fd, c] : connections) {
        if (c->state == State::kBusy) continue;
        if (c->deadline <= now)
            expired.push_back(c.get());
        else
            next_sweep = std::min(next_sweep, c->deadline);
    }
    for (Connection* c : expired) {
        if (c->state == State::kWriting) {
            counters.write_timeouts.fetch_add(1, std::memory_order_relaxed);
            close_connection(*c);
        } else if (c->request_started) {
            counters.request_timeouts.fetch_add(1, std::memory_order_relaxed);
            answer_and_close(*c, 408, "the request did not arrive in time");
        } else {
            counters.idle_timeouts.fetch_add(1, std::memory_order_relaxed);
            close_connection(*c);
        }
    }
}

bool HttpEndpoint::Impl::evict_oldest() {
    Connection* oldest = nullptr;
    for (const auto& [fd, c] : connections)
        if (c->state != State::kBusy && (!oldest || c->since < oldest->since)) oldest = c.get();
    if (!oldest) return false;
    counters.connections_evicted.fetch_add(1, std::memory_order_relaxed);
    close_connection(*oldest);
    return true;
}

void HttpEndpoint::Impl::answer_and_close(Connection& c, int status, std::string_view error) {
    send_final_answer(c.fd.get(), status, error);
    close_connection(c);
}

void HttpEndpoint::Impl::close_connection(Connection& c) {
    pending_output -= c.out_accounted;
    open_connections = connections.size() - 1;  // before a client can see the close
    connections.erase(c.fd.get());              // closing the descriptor takes it out of epoll
}

bool HttpEndpoint::Impl::arm(Connection& c, std::uint32_t events) {
    epoll_event event{};
    event.events = events | EPOLLONESHOT;
    event.data.fd = c.fd.get();
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_MOD, c.fd.get(), &event) == 0) return true;
    close_connection(c);
    return false;
}

void HttpEndpoint::Impl::set_deadline(Connection& c, Clock::time_point deadline) {
    c.deadline = deadline;
    next_sweep = std::min(next_sweep, deadline);
}

}  // namespace loupe::agent
