// Text from the system (process names, routes, peers, error messages) made safe to print on a
// terminal. Any local user can name a process "\e]0;title\a" or "\e[2J" with prctl(PR_SET_NAME):
// printed raw, that sets the window title or clears the screen of whoever runs `loupe top`.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace loupe::util {

enum class TerminalCharset {
    kUtf8,   // the terminal decodes UTF-8: printable non-ASCII characters are kept
    kAscii,  // anything else: every non-ASCII character becomes '?'
};

// The only way text from the system reaches a terminal. Returns valid UTF-8 (ASCII for kAscii)
// where:
// - bytes that are not well-formed UTF-8 become U+FFFD as util::valid_utf8 replaces them (one per
//   maximal invalid subpart, as the agent's API does), '?' for kAscii;
// - C0 controls (tab and newline included), DEL, C1 controls (U+0080-U+009F) and the invisible
//   characters that reorder or hide text (bidi overrides and isolates, zero-width characters,
//   line/paragraph separators, BOM) become '?'.
// Idempotent, so it can be applied both to a cell and to the line that contains it.
std::string terminal_safe(std::string_view text, TerminalCharset charset = TerminalCharset::kUtf8);

// Columns taken by `text`, terminal_safe's output (valid UTF-8), counted as one per code point.
// East Asian wide characters and combining marks are counted as one column too: they can
// misalign a table, never escape it.
std::size_t text_columns(std::string_view text);

// The longest prefix of `text` (valid UTF-8) that fits in `columns` columns, never cutting a
// UTF-8 sequence.
std::string_view truncate_to_columns(std::string_view text, std::size_t columns);

// The charset to print with on stdout: UTF-8 when the user's locale (LC_ALL, LC_CTYPE, LANG) says
// so, else ASCII. Does not change the process's locale.
TerminalCharset charset_from_environment();

}  // namespace loupe::util
