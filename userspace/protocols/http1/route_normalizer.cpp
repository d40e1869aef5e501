#include "protocols/http1/route_normalizer.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace loupe::http1 {
namespace {

// ASCII classes without the C library's locale-aware calls (this runs for every path byte).
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_lower(char c) {
    return c >= 'a' && c <= 'z';
}
bool is_upper(char c) {
    return c >= 'A' && c <= 'Z';
}
bool is_alpha(char c) {
    return is_lower(c) || is_upper(c);
}
bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
bool is_vowel(char c) {
    switch (c | 0x20) {
        case 'a':
        case 'e':
        case 'i':
        case 'o':
        case 'u':
        case 'y':
            return true;
        default:
            return false;
    }
}
bool is_base64url(char c) {
    return is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '=';
}

bool is_uuid(std::string_view s) {
    if (s.size() != 36) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i])) return false;
    }
    return true;
}

// Valid UTF-8 without control characters (C0, DEL, C1): text a person could have typed.
bool is_clean_text(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto lead = static_cast<unsigned char>(s[i]);
        if (lead < 0x20 || lead == 0x7f) return false;
        if (lead < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        std::uint32_t code = 0, least = 0;
        if ((lead & 0xe0) == 0xc0) {
            length = 2, code = lead & 0x1fu, least = 0x80;
        } else if ((lead & 0xf0) == 0xe0) {
            length = 3, code = lead & 0x0fu, least = 0x800;
        } else if ((lead & 0xf8) == 0xf0) {
            length = 4, code = lead & 0x07u, least = 0x10000;
        } else {
            return false;
        }
        if (i + length > s.size()) return false;
        for (std::size_t k = 1; k < length; ++k) {
            const auto next = static_cast<unsigned char>(s[i + k]);
            if ((next & 0xc0) != 0x80) return false;
            code = (code << 6) | (next & 0x3fu);
        }
        if (code < least || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff) ||
            (code >= 0x80 && code <= 0x9f))
            return false;
        i += length;
    }
    return true;
}

// A phone number, a date, an IP address: digits with + - . ( ) and spaces, at least 7 digits.
bool is_digit_run(std::string_view s) {
    std::size_t digits = 0;
    for (char c : s) {
        if (is_digit(c))
            ++digits;
        else if (c != '+' && c != '-' && c != '.' && c != '(' && c != ')' && c != ' ')
            return false;
    }
    return digits >= 7;
}

// A JWT (header.payload.signature) or other base64-encoded JSON: '{"' encodes to "eyJ".
bool is_base64_json(std::string_view s) {
    if (s.size() < 16 || s.substr(0, 3) != "eyJ") return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_base64url(c) || c == '.'; });
}

enum class CharClass { kLower, kUpper, kDigit, kOther };
CharClass class_of(char c) {
    if (is_lower(c)) return CharClass::kLower;
    if (is_upper(c)) return CharClass::kUpper;
    if (is_digit(c)) return CharClass::kDigit;
    return CharClass::kOther;
}

// Changes between lower case, upper case and digits that words do not make: camelCase word starts
// ("getUser", "4User") and a capital starting a word are explained; "aB3dE" is not.
std::size_t unexplained_class_changes(std::string_view s) {
    std::size_t changes = 0;
    for (std::size_t i = 1; i < s.size(); ++i) {
        const CharClass a = class_of(s[i - 1]), b = class_of(s[i]);
        if (a == b || a == CharClass::kOther || b == CharClass::kOther) continue;
        const CharClass next = i + 1 < s.size() ? class_of(s[i + 1]) : CharClass::kOther;
        const CharClass before = i >= 2 ? class_of(s[i - 2]) : CharClass::kOther;
        if ((a == CharClass::kLower || a == CharClass::kDigit) && b == CharClass::kUpper &&
            next == CharClass::kLower)
            continue;
        if (a == CharClass::kUpper && b == CharClass::kLower && before != CharClass::kUpper)
            continue;
        ++changes;
    }
    return changes;
}

// Characters in pronounceable words: a capital or not, then three or more lower-case letters
// with a vowel among them.
std::size_t characters_in_words(std::string_view s) {
    std::size_t in_words = 0;
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t start = i;
        if (is_upper(s[i]) && i + 1 < s.size() && is_lower(s[i + 1])) ++i;
        const std::size_t lower_start = i;
        bool vowel = start != lower_start && is_vowel(s[start]);
        while (i < s.size() && is_lower(s[i]))
            vowel |= is_vowel(s[i++]);
        if (i - lower_start >= 3 && vowel) in_words += i - start;
        if (i == start) ++i;
    }
    return in_words;
}

}  // namespace

bool RouteNormalizer::looks_random(std::string_view s) {
    // A file extension (".png", ".woff2") says nothing either way.
    if (const auto dot = s.rfind('.'); dot != std::string_view::npos) {
        const auto extension = s.substr(dot + 1);
        if (!extension.empty() && extension.size() <= 5 &&
            std::all_of(extension.begin(), extension.end(),
                        [](char c) { return is_alpha(c) || is_digit(c); }))
            s = s.substr(0, dot);
    }
    if (s.size() < 16) return false;
    bool lower = false, upper = false, digit = false;
    std::size_t alnum = 0;
    for (char c : s) {
        lower |= is_lower(c);
        upper |= is_upper(c);
        digit |= is_digit(c);
        if (is_alpha(c) || is_digit(c))
            ++alnum;
        else if (c != '-' && c != '_' && c != '.' && c != '+' && c != '=' && c != '~')
            return false;
    }
    // Upper case and digits only: base32, access key ids.
    if (!lower) return upper && digit;
    // Tuned on random base62/base64url/base36/base32 tokens against real route names (file
    // names with versions, camelCase, kebab-case with digits): see route_normalizer_test.cpp.
    if (characters_in_words(s) * 10 < alnum * 4) return true;
    return unexplained_class_changes(s) >= std::max<std::size_t>(4, s.size() / 5);
}

bool RouteNormalizer::is_id_segment(std::string_view s) {
    if (s.empty()) return false;
    if (s.size() > kMaxSegmentLength) return true;
    bool all_digits = true, all_hex = true, has_digit = false;
    for (char c : s) {
        all_digits &= is_digit(c);
        all_hex &= is_hex(c);
        has_digit |= is_digit(c);
        if (c == '@' && s.size() > 1) return true;  // e-mail addresses, @handles
    }
    if (all_digits) return true;
    if (is_uuid(s)) return true;
    if (all_hex && has_digit && s.size() >= 8) return true;  // hashes, object ids
    return is_digit_run(s) || is_base64_json(s) || looks_random(s);
}

std::string RouteNormalizer::normalize(std::string_view path) const {
    if (const auto cut = path.find_first_of("?#"); cut != std::string_view::npos)
        path = path.substr(0, cut);
    if (path.empty() || path.front() != '/') return "/";
    std::string route;
    route.reserve(std::min<std::size_t>(path.size(), 128));
    std::size_t segments = 0;
    std::size_t pos = 1;
    std::array<char, kMaxSegmentLength + 1> decoded{};
    while (true) {
        const std::size_t end = std::min(path.find('/', pos), path.size());
        std::string_view segment = path.substr(pos, end - pos);
        route += '/';
        if (++segments > kMaxSegments) {
            route += "{rest}";
            break;
        }
        // Decoded for classification, up to a ';' (sent or encoded): matrix parameters are
        // dropped. Past kMaxSegmentLength decoded bytes the segment is an id whatever follows.
        std::size_t length = 0;
        for (std::size_t i = 0; i < segment.size() && length < decoded.size(); ++i) {
            char c = segment[i];
            const std::size_t at = i;
            if (c == '%' && i + 2 < segment.size() && hex_value(segment[i + 1]) >= 0 &&
                hex_value(segment[i + 2]) >= 0) {
                c = static_cast<char>(hex_value(segment[i + 1]) * 16 + hex_value(segment[i + 2]));
                i += 2;
            }
            if (c == ';') {
                segment = segment.substr(0, at);
                break;
            }
            decoded[length++] = c;
        }
        const std::string_view text(decoded.data(), length);
        if (!is_clean_text(text) || is_id_segment(text)) {
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

}  // namespace loupe::http1
