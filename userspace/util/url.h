// URLs as cpp-httplib takes them: a client for "scheme://host:port", then a path per request.
#pragma once

#include <string>
#include <utility>

namespace loupe::util {

// "https://host:6443/api/v1/pods?x=y" -> {"https://host:6443", "/api/v1/pods?x=y"}.
inline std::pair<std::string, std::string> split_url(const std::string& url) {
    const auto scheme = url.find("://");
    const auto path = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    if (path == std::string::npos) return {url, "/"};
    return {url.substr(0, path), url.substr(path)};
}

}  // namespace loupe::util
