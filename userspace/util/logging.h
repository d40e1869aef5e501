// Process-wide logging: spdlog with a text or JSON line format, and libbpf's messages routed in.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <spdlog/common.h>

namespace loupe::util {

enum class LogFormat { kText, kJson };

std::optional<LogFormat> parse_log_format(std::string_view name);
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// Installs the default logger (stderr) with the given format and level, and routes libbpf's own
// messages into it. Safe to call again to change format or level.
void setup_logging(LogFormat format, spdlog::level::level_enum level);

// While alive, libbpf warnings are logged at debug level instead: for probes whose failure is an
// expected answer (a feature this kernel lacks), not a problem to shout about.
class QuietLibbpf {
  public:
    QuietLibbpf();
    ~QuietLibbpf();
    QuietLibbpf(const QuietLibbpf&) = delete;
    QuietLibbpf& operator=(const QuietLibbpf&) = delete;
};

// A libbpf message as logged: without trailing newlines and libbpf's own prefix, and for a long
// one (a verifier log) its first line and its last 8 KiB, where a rejection's reason is.
std::string tidy_libbpf_message(std::string_view text);

// JSON string escaping for the JSON log format (exposed for tests).
std::string json_escape(std::string_view text);

}  // namespace loupe::util
