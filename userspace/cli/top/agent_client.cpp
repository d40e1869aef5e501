#include "cli/top/agent_client.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>

#include <httplib.h>

#include "util/unique_fd.h"
#include "util/url.h"
#include "util/utf8.h"

namespace loupe::top {
namespace {

constexpr auto kConnectTimeout = std::chrono::milliseconds(500);
constexpr auto kReadTimeout = std::chrono::seconds(2);

// Why connecting to the URL's host and port fails, with the system's words ("Connection
// refused"): cpp-httplib only says "Connection". Tries again to find out.
std::string connect_failure(const std::string& base_url) {
    const std::string authority = util::split_url(base_url).first;
    const auto scheme_end = authority.find("://");
    std::string host =
        scheme_end == std::string::npos ? authority : authority.substr(scheme_end + 3);
    std::string port = authority.starts_with("https://") ? "443" : "80";
    if (const auto colon = host.rfind(':');
        colon != std::string::npos && host.find(']', colon) == std::string::npos) {
        port = host.substr(colon + 1);
        host = host.substr(0, colon);
    }
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
        return std::string("cannot resolve ") + host + ": " + ::gai_strerror(rc);
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, ::freeaddrinfo);
    std::string failure = "the connection failed";
    for (const addrinfo* a = found; a; a = a->ai_next) {
        util::UniqueFd fd(
            ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
        if (!fd.valid()) {
            failure = std::strerror(errno);
            continue;
        }
        int error = 0;
        if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
            error = errno;
            if (error == EINPROGRESS) {
                pollfd p{fd.get(), POLLOUT, 0};
                if (::poll(&p, 1, static_cast<int>(kConnectTimeout.count())) == 0) {
                    failure = "no answer within 0.5 s (connection timed out)";
                    continue;
                }
                socklen_t length = sizeof(error);
                ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
            }
        }
        if (error == 0) return "";  // it answers now
        failure = std::strerror(error);
    }
    return failure;
}

// A service name in a URL path: pods' services are "<namespace>/<pod>/<container>", kept as path
// segments (the agent's routes take them whole); anything else but unreserved bytes is escaped.
std::string encode_path(const std::string& name) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const unsigned char c : name) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' ||
            c == '@') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
        }
    }
    return out;
}

// doc[key], or null when doc is not an object or lacks it (operator[] would throw or insert).
nlohmann::json member(const nlohmann::json& doc, const char* key) {
    if (!doc.is_object()) return nullptr;
    const auto it = doc.find(key);
    return it == doc.end() ? nlohmann::json(nullptr) : *it;
}

std::uint64_t counter(const nlohmann::json& doc, const char* key) {
    const auto value = member(doc, key);
    return value.is_number_unsigned() ? value.get<std::uint64_t>() : 0;
}

}  // namespace

AgentClient::AgentClient(const std::string& base_url)
    : base_url_(base_url), client_(std::make_unique<httplib::Client>(base_url)) {
    // A stuck agent must not freeze the view: short timeouts, then "disconnected, retrying".
    client_->set_connection_timeout(kConnectTimeout);
    client_->set_read_timeout(kReadTimeout);
}

AgentClient::~AgentClient() = default;

std::optional<nlohmann::json> AgentClient::get(const std::string& path, std::string& error) {
    const auto res = client_->Get(path);
    if (!res) {
        std::string why;
        if (res.error() == httplib::Error::Connection) why = connect_failure(base_url_);
        if (res.error() == httplib::Error::ConnectionTimeout)
            why = "no answer within 0.5 s (connection timed out)";
        if (res.error() == httplib::Error::Read)
            why = "connected, but no complete answer within 2 s";
        if (why.empty()) why = httplib::to_string(res.error());
        error = "cannot reach the agent at " + base_url_ + ": " + why;
        return std::nullopt;
    }
    if (res->status != 200) {
        error = base_url_ + path + " answered " + std::to_string(res->status);
        return std::nullopt;
    }
    // An agent from before names were made valid UTF-8 can send a process name's raw bytes, which
    // the JSON parser refuses: each invalid byte becomes U+FFFD instead (the terminal sanitizer
    // replaces them the same way), so the rest of the answer is still shown.
    auto doc = nlohmann::json::parse(res->body, nullptr, false);
    if (doc.is_discarded())
        doc = nlohmann::json::parse(util::valid_utf8(res->body), nullptr, false);
    if (doc.is_discarded()) {
        error = base_url_ + path + " did not answer JSON";
        return std::nullopt;
    }
    return doc;
}

bool AgentClient::alive() {
    const auto res = client_->Get("/health/live");
    return res && res->status == 200;
}

std::optional<Snapshot> AgentClient::snapshot(std::string& error) {
    auto services = get("/api/v1/services", error);
    if (!services) return std::nullopt;
    auto node = get("/api/v1/node", error);
    auto agent = get("/api/v1/agent", error);
    if (!node || !agent) return std::nullopt;
    const auto at = std::chrono::steady_clock::now();
    Snapshot snap;
    const auto service_docs = member(*services, "services");
    snap.services = parse_services(service_docs);
    apply_rates(snap.services, service_rates_, at);
    snap.node = parse_node(*node);
    snap.agent.events_total = counter(*agent, "events_total");
    snap.agent.alerts_firing = counter(*agent, "alerts_firing");
    if (const auto drops = member(*agent, "kernel_drops"); drops.is_object())
        for (const auto& [kind, _] : drops.items())
            snap.agent.drops += counter(drops, kind.c_str());
    if (last_at_.time_since_epoch().count() != 0 && snap.agent.events_total >= last_events_) {
        const double dt = std::chrono::duration<double>(at - last_at_).count();
        if (dt > 0)
            snap.agent.events_per_second =
                static_cast<double>(snap.agent.events_total - last_events_) / dt;
    }
    last_events_ = snap.agent.events_total;
    last_at_ = at;
    snap.raw = {{"services", service_docs}, {"node", *node}, {"agent", *agent}};
    return snap;
}

std::optional<Endpoints> AgentClient::endpoints(const std::string& service, std::string& error) {
    if (service != endpoint_rates_service_) {
        route_rates_.clear();
        database_rates_.clear();
        endpoint_rates_service_ = service;
    }
    auto doc = get("/api/v1/services/" + encode_path(service) + "/endpoints", error);
    if (!doc) return std::nullopt;
    auto endpoints = parse_endpoints(member(*doc, "endpoints"));
    const auto at = std::chrono::steady_clock::now();
    apply_rates(endpoints.routes, route_rates_, at);
    apply_rates(endpoints.databases, database_rates_, at);
    return endpoints;
}

std::optional<std::vector<HotFunction>> AgentClient::hot_functions(const std::string& service,
                                                                   std::string& error) {
    auto doc =
        get("/api/v1/services/" + encode_path(service) + "/profile?seconds=60&format=top", error);
    if (!doc) return std::nullopt;
    return parse_hot_functions(member(*doc, "functions"));
}

std::optional<std::vector<ProcessRow>> AgentClient::processes(const std::string& service,
                                                              std::string& error) {
    auto doc = get("/api/v1/services/" + encode_path(service) + "/processes", error);
    if (!doc) return std::nullopt;
    return parse_processes(member(*doc, "processes"));
}

std::optional<std::vector<SlowRow>> AgentClient::slow(const std::string& service, std::size_t limit,
                                                      std::string& error) {
    std::string query = encode_path(service);
    // '/' and '@' are kept by encode_path; in a query value only '&', '=', '+' and '#' matter.
    auto doc = get("/api/v1/slow?service=" + query + "&limit=" + std::to_string(limit), error);
    if (!doc) return std::nullopt;
    return parse_slow(member(*doc, "slow_operations"));
}

}  // namespace loupe::top
