#include "util/logging.h"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

namespace loupe::util {
namespace {

TEST(Logging, JsonEscapeKeepsLinesParseable) {
    const std::string nasty = "quote\" backslash\\ newline\n tab\t ctrl\x01 bad-utf8\xff end";
    const std::string line = "{\"msg\":\"" + json_escape(nasty) + "\"}";
    const auto parsed = nlohmann::json::parse(line);  // throws if the escaping were wrong
    EXPECT_NE(parsed["msg"].get<std::string>().find("newline\n tab\t"), std::string::npos);
    EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(Logging, ParsesFormatsAndLevels) {
    EXPECT_EQ(parse_log_format("json"), LogFormat::kJson);
    EXPECT_EQ(parse_log_format("text"), LogFormat::kText);
    EXPECT_FALSE(parse_log_format("xml"));
    EXPECT_EQ(parse_log_level("debug"), spdlog::level::debug);
    EXPECT_EQ(parse_log_level("warning"), spdlog::level::warn);
    EXPECT_EQ(parse_log_level("warn"), spdlog::level::warn);
    EXPECT_EQ(parse_log_level("error"), spdlog::level::err);
    EXPECT_FALSE(parse_log_level("loud"));
}

TEST(Logging, LibbpfMessagesKeepTheEndOfAVerifierLog) {
    EXPECT_EQ(tidy_libbpf_message("libbpf: prog 'x': failed to load: -22\n"),
              "prog 'x': failed to load: -22");
    std::string log = "prog 'x': -- BEGIN PROG LOAD LOG --\n";
    for (int i = 0; i < 20000; ++i)
        log += "12: (85) call bpf_something#1 ; R0=scalar()\n";
    log +=
        "program of this type cannot use helper bpf_ktime_get_coarse_ns#160\n-- END PROG LOAD LOG "
        "--\n";
    const std::string kept = tidy_libbpf_message(log);
    EXPECT_LT(kept.size(), 9000u);
    EXPECT_TRUE(kept.starts_with("prog 'x': -- BEGIN PROG LOAD LOG --\n[... "));
    EXPECT_TRUE(
        kept.ends_with("cannot use helper bpf_ktime_get_coarse_ns#160\n-- END PROG LOAD LOG --"));
}

}  // namespace
}  // namespace loupe::util
