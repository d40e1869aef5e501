// Text that leaves the agent (label values, JSON strings) must be valid UTF-8: a process name is
// any 15 bytes its owner chose (prctl(PR_SET_NAME)), a request path any bytes a client sent, and
// one invalid byte makes Prometheus reject the node's whole scrape and JSON encoders throw.
#pragma once

#include <string>
#include <string_view>

namespace loupe::util {

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_valid_utf8(std::string_view text) noexcept;

// Appends `text` to `out` with every byte that is not part of a well-formed UTF-8 sequence
// replaced by U+FFFD, as WHATWG's decoder does (one replacement per maximal invalid subpart).
void append_valid_utf8(std::string& out, std::string_view text);

// `text` itself when valid (the common case costs one scan), else its repaired copy.
std::string valid_utf8(std::string_view text);

}  // namespace loupe::util
