#include "util/logging.h"

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>

#include <bpf/libbpf.h>
#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace loupe::util {
namespace {

std::atomic<int> g_quiet_depth{0};

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
    va_list measure;
    va_copy(measure, args);
    const int n = std::vsnprintf(nullptr, 0, format, measure);
    va_end(measure);
    if (n < 0) return n;
    std::string formatted(static_cast<std::size_t>(n) + 1, '\0');
    std::vsnprintf(formatted.data(), formatted.size(), format, args);
    formatted.resize(static_cast<std::size_t>(n));
    const std::string text = tidy_libbpf_message(formatted);
    spdlog::level::level_enum mapped = spdlog::level::debug;
    if (level == LIBBPF_WARN)
        mapped = g_quiet_depth.load() > 0 ? spdlog::level::debug : spdlog::level::warn;
    else if (level == LIBBPF_INFO)
        mapped = spdlog::level::info;
    spdlog::log(mapped, "libbpf: {}", text);
    return n;
}

// One JSON object per line; the message is escaped, so a log line can never break the stream.
class JsonFormatter final : public spdlog::formatter {
  public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        using namespace std::chrono;
        const auto since_epoch = msg.time.time_since_epoch();
        const auto secs = duration_cast<seconds>(since_epoch);
        const auto millis = duration_cast<milliseconds>(since_epoch - secs).count();
        std::time_t t = secs.count();
        std::tm tm{};
        gmtime_r(&t, &tm);
        char stamp[32];
        std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        const auto level = spdlog::level::to_string_view(msg.level);
        fmt::format_to(std::back_inserter(dest), R"({{"ts":"{}.{:03d}Z","level":"{}","msg":"{}"}})",
                       stamp, millis, std::string_view(level.data(), level.size()),
                       json_escape(std::string_view(msg.payload.data(), msg.payload.size())));
        dest.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonFormatter>();
    }
};

}  // namespace

std::optional<LogFormat> parse_log_format(std::string_view name) {
    if (name == "text") return LogFormat::kText;
    if (name == "json") return LogFormat::kJson;
    return std::nullopt;
}

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name) {
    for (int l = spdlog::level::trace; l < spdlog::level::n_levels; ++l) {
        const auto level = static_cast<spdlog::level::level_enum>(l);
        const auto text = spdlog::level::to_string_view(level);
        if (name == std::string_view(text.data(), text.size())) return level;
    }
    if (name == "warn" || name == "warning") return spdlog::level::warn;
    if (name == "error") return spdlog::level::err;
    return std::nullopt;
}

void setup_logging(LogFormat format, spdlog::level::level_enum level) {
    auto logger = std::make_shared<spdlog::logger>(
        "loupe", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    if (format == LogFormat::kJson)
        logger->set_formatter(std::make_unique<JsonFormatter>());
    else
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
    logger->set_level(level);
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(std::move(logger));
    libbpf_set_print(libbpf_print);
}

QuietLibbpf::QuietLibbpf() {
    ++g_quiet_depth;
}
QuietLibbpf::~QuietLibbpf() {
    --g_quiet_depth;
}

std::string tidy_libbpf_message(std::string_view text) {
    // A rejected program's verifier log runs to megabytes, and the reason for the rejection is at
    // its end.
    constexpr std::size_t kTailBytes = 8192;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.remove_suffix(1);
    if (text.starts_with("libbpf: ")) text.remove_prefix(8);  // the log line names libbpf already
    if (text.size() <= 2 * kTailBytes) return std::string(text);
    const std::size_t first_line = std::min(text.find('\n'), std::size_t{512});
    return std::string(text.substr(0, first_line)) + "\n[... " +
           std::to_string(text.size() - first_line - kTailBytes) + " bytes left out ...]\n" +
           std::string(text.substr(text.size() - kTailBytes));
}

std::string json_escape(std::string_view text) {
    // nlohmann's serializer handles control characters and replaces invalid UTF-8, so nothing a
    // message carries can break the JSON line; strip the surrounding quotes it adds.
    const std::string quoted = nlohmann::json(std::string(text))
                                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return quoted.substr(1, quoted.size() - 2);
}

}  // namespace loupe::util
