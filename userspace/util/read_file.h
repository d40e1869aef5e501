// Reads a small file whole: /proc and /sys entries, service account tokens.
#pragma once

#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace loupe::util {

// The file's content; nullopt when it cannot be opened (a process that exited, a missing file).
inline std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace loupe::util
