#include "aggregate/route_normalizer.h"

#include <algorithm>

namespace loupe::aggregate {
namespace {

// ASCII classes without the C library's locale-aware calls (this runs for every path byte).
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_uuid(std::string_view s) {
    if (s.size() != 36) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i])) return false;
    }
    return true;
}

}  // namespace

bool RouteNormalizer::is_id_segment(std::string_view s) {
    if (s.empty()) return false;
    bool all_digits = true, all_hex = true, has_digit = false, has_alpha = false, token = true;
    for (char c : s) {
        all_digits &= is_digit(c);
        all_hex &= is_hex(c);
        has_digit |= is_digit(c);
        has_alpha |= is_alpha(c);
        token &= is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '=' || c == '+';
    }
    if (all_digits) return true;
    if (is_uuid(s)) return true;
    if (all_hex && has_digit && s.size() >= 8) return true;  // hashes, object ids
    // Session tokens, base64 ids: long, and mixing letters with digits.
    return token && has_digit && has_alpha && s.size() >= 20;
}

std::string RouteNormalizer::normalize(std::string_view path) const {
    if (const auto cut = path.find_first_of("?#"); cut != std::string_view::npos)
        path = path.substr(0, cut);
    if (path.empty() || path.front() != '/') return "/";
    std::string route;
    route.reserve(std::min<std::size_t>(path.size(), 128));
    std::size_t segments = 0;
    std::size_t pos = 1;
    while (true) {
        const std::size_t end = std::min(path.find('/', pos), path.size());
        const std::string_view segment = path.substr(pos, end - pos);
        route += '/';
        if (++segments > kMaxSegments) {
            route += "{rest}";
            break;
        }
        if (is_id_segment(segment)) {
            route += "{id}";
        } else {
            const auto shown = segment.substr(0, kMaxSegmentLength);
            for (char c : shown)
                route += (c > 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '_';
            if (segment.size() > kMaxSegmentLength) route += "...";
        }
        if (end >= path.size()) break;
        pos = end + 1;
    }
    return route;
}

}  // namespace loupe::aggregate
