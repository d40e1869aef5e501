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

}  // namespace
}  // namespace loupe::util
