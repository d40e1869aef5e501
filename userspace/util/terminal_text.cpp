#include "util/terminal_text.h"

#include <langinfo.h>
#include <locale.h>

#include <algorithm>
#include <cstring>

#include "util/utf8.h"

namespace loupe::util {
namespace {

bool is_continuation(unsigned char byte) {
    return (byte & 0xC0) == 0x80;
}

// Bytes of the sequence led by `lead`, in well-formed UTF-8.
std::size_t sequence_length(unsigned char lead) {
    if (lead < 0xC0) return 1;
    if (lead < 0xE0) return 2;
    if (lead < 0xF0) return 3;
    return 4;
}

// The code point of one well-formed sequence.
char32_t code_point(std::string_view sequence) {
    const auto lead = static_cast<unsigned char>(sequence[0]);
    if (sequence.size() == 1) return lead;
    char32_t cp = lead & (0x7F >> sequence.size());
    for (std::size_t i = 1; i < sequence.size(); ++i)
        cp = (cp << 6) | (static_cast<unsigned char>(sequence[i]) & 0x3F);
    return cp;
}

// Characters a terminal acts on, or that reorder, hide or break the text around them.
bool is_unsafe(char32_t cp) {
    if (cp < 0x20 || cp == 0x7F) return true;               // C0 controls, DEL
    if (cp >= 0x80 && cp <= 0x9F) return true;              // C1 controls (0x9B is CSI)
    if (cp == 0x061C) return true;                          // Arabic letter mark
    if (cp >= 0x200B && cp <= 0x200F) return true;          // zero-width, LRM, RLM
    if (cp >= 0x2028 && cp <= 0x202E) return true;          // separators, embeddings, overrides
    if (cp >= 0x2060 && cp <= 0x2069) return true;          // word joiner..., isolates
    return cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB);  // BOM, interlinear annotations
}

}  // namespace

std::string terminal_safe(std::string_view text, TerminalCharset charset) {
    const std::string valid = valid_utf8(text);
    std::string out;
    out.reserve(valid.size());
    for (std::size_t pos = 0; pos < valid.size();) {
        const std::size_t length =
            std::min(sequence_length(static_cast<unsigned char>(valid[pos])), valid.size() - pos);
        const std::string_view sequence(valid.data() + pos, length);
        if (is_unsafe(code_point(sequence)) || (charset == TerminalCharset::kAscii && length > 1))
            out += '?';
        else
            out.append(sequence);
        pos += length;
    }
    return out;
}

std::size_t text_columns(std::string_view text) {
    return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return !is_continuation(static_cast<unsigned char>(c));
    }));
}

std::string_view truncate_to_columns(std::string_view text, std::size_t columns) {
    std::size_t taken = 0;
    for (std::size_t pos = 0; pos < text.size(); ++pos) {
        if (is_continuation(static_cast<unsigned char>(text[pos]))) continue;
        if (taken == columns) return text.substr(0, pos);
        ++taken;
    }
    return text;
}

TerminalCharset charset_from_environment() {
    // A private locale object: the process's own locale (and the agent in it) is left alone.
    const locale_t user = ::newlocale(LC_CTYPE_MASK, "", static_cast<locale_t>(0));
    if (user == static_cast<locale_t>(0)) return TerminalCharset::kAscii;
    const char* codeset = ::nl_langinfo_l(CODESET, user);
    const bool utf8 = codeset && std::strcmp(codeset, "UTF-8") == 0;
    ::freelocale(user);
    return utf8 ? TerminalCharset::kUtf8 : TerminalCharset::kAscii;
}

}  // namespace loupe::util
