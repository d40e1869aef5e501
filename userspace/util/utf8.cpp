#include "util/utf8.h"

#include <cstdint>

namespace loupe::util {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

struct Sequence {
    std::size_t expected = 0;  // bytes a well-formed sequence with this lead has; 0: bad lead
    std::size_t matched = 0;   // bytes present that fit it
    bool valid() const { return expected != 0 && matched == expected; }
};

// The sequence starting at a non-ASCII byte text[i], checked against Unicode's table of
// well-formed byte sequences (no overlong forms, surrogates or code points past U+10FFFF).
Sequence sequence_at(std::string_view text, std::size_t i) noexcept {
    const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(text[k]); };
    const std::uint8_t lead = byte(i);
    Sequence s;
    std::uint8_t low = 0x80, high = 0xBF;  // allowed range of the second byte
    if (lead >= 0xC2 && lead <= 0xDF) {
        s.expected = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        s.expected = 3;
        if (lead == 0xE0) low = 0xA0;
        if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        s.expected = 4;
        if (lead == 0xF0) low = 0x90;
        if (lead == 0xF4) high = 0x8F;
    } else {
        return s;
    }
    s.matched = 1;
    while (s.matched < s.expected && i + s.matched < text.size()) {
        const std::uint8_t b = byte(i + s.matched);
        const bool fits = s.matched == 1 ? (b >= low && b <= high) : (b >= 0x80 && b <= 0xBF);
        if (!fits) break;
        ++s.matched;
    }
    return s;
}

}  // namespace

bool is_valid_utf8(std::string_view text) noexcept {
    for (std::size_t i = 0; i < text.size();) {
        if (static_cast<std::uint8_t>(text[i]) < 0x80) {
            ++i;
            continue;
        }
        const Sequence s = sequence_at(text, i);
        if (!s.valid()) return false;
        i += s.expected;
    }
    return true;
}

void append_valid_utf8(std::string& out, std::string_view text) {
    std::size_t clean_from = 0;
    for (std::size_t i = 0; i < text.size();) {
        if (static_cast<std::uint8_t>(text[i]) < 0x80) {
            ++i;
            continue;
        }
        const Sequence s = sequence_at(text, i);
        if (s.valid()) {
            i += s.expected;
            continue;
        }
        // One U+FFFD per maximal invalid subpart (the lead byte and the continuation bytes that
        // still fitted it), as WHATWG's decoder and Python's "replace" do.
        out.append(text.substr(clean_from, i - clean_from));
        out.append(kReplacement);
        i += s.matched ? s.matched : 1;
        clean_from = i;
    }
    out.append(text.substr(clean_from));
}

std::string valid_utf8(std::string_view text) {
    if (is_valid_utf8(text)) return std::string(text);
    std::string out;
    out.reserve(text.size() + 8);
    append_valid_utf8(out, text);
    return out;
}

}  // namespace loupe::util
