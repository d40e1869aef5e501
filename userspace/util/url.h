// URLs as cpp-httplib takes them: a client for "scheme://host:port", then a path per request.
#pragma once

#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace loupe::util {

// "https://host:6443/api/v1/pods?x=y" -> {"https://host:6443", "/api/v1/pods?x=y"}.
inline std::pair<std::string, std::string> split_url(const std::string& url) {
    const auto scheme = url.find("://");
    const auto path = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    if (path == std::string::npos) return {url, "/"};
    return {url.substr(0, path), url.substr(path)};
}

// What is wrong with `url` as an http(s) endpoint, or nullopt: the scheme is http or https, a
// host follows, then an optional port of 1-65535 and path; no spaces or control characters.
inline std::optional<std::string> http_url_problem(std::string_view url) {
    const std::string expected = "expected an http:// or https:// URL such as http://HOST:PORT";
    for (const char c : url)
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
            return expected + " (without spaces or control characters)";
    std::string_view rest;
    if (url.starts_with("http://"))
        rest = url.substr(7);
    else if (url.starts_with("https://"))
        rest = url.substr(8);
    else
        return expected;
    const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
    std::string_view host = authority;
    std::string_view port;
    if (authority.starts_with('[')) {  // [IPv6]:port
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return expected + " (unclosed '[' in the host)";
        host = authority.substr(0, close + 1);
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty() && !after.starts_with(':'))
            return expected + " (':PORT' may follow the host)";
        if (!after.empty()) port = after.substr(1);
        if (host.size() == 2) host = {};
    } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
        if (port.empty()) return expected + " (no port after ':')";
    }
    if (host.empty()) return expected + " (no host)";
    if (host.find('@') != std::string_view::npos) return expected + " (no user or password in it)";
    if (!port.empty()) {
        int number = 0;
        const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
        if (ec != std::errc() || ptr != port.data() + port.size() || number < 1 || number > 65535)
            return expected + " (the port is a number from 1 to 65535)";
    }
    return std::nullopt;
}

}  // namespace loupe::util
