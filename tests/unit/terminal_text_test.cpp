#include <gtest/gtest.h>

#include "util/terminal_text.h"
#include "util/utf8.h"

namespace loupe::util {
namespace {

using namespace std::string_literals;

const auto kUtf8 = TerminalCharset::kUtf8;
const auto kAscii = TerminalCharset::kAscii;
const std::string kFffd = "\xEF\xBF\xBD";  // U+FFFD, the replacement character

TEST(TerminalSafe, KeepsPrintableText) {
    EXPECT_EQ(terminal_safe("nginx: worker", kUtf8), "nginx: worker");
    EXPECT_EQ(terminal_safe("default/web-7f9/app", kAscii), "default/web-7f9/app");
    const std::string mixed = "caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80";  // é, 中, 😀
    EXPECT_EQ(terminal_safe(mixed, kUtf8), mixed);
    EXPECT_EQ(terminal_safe("", kUtf8), "");
}

TEST(TerminalSafe, ReplacesC0ControlsAndDel) {
    // The window-title (OSC) and clear-screen (CSI) sequences a process can name itself with.
    EXPECT_EQ(terminal_safe("\x1b]0;pwned\x07x", kUtf8), "?]0;pwned?x");
    EXPECT_EQ(terminal_safe("\x1b[2Jy", kAscii), "?[2Jy");
    EXPECT_EQ(terminal_safe("a\tb\nc\rd\x7f"s + '\0' + "e", kUtf8), "a?b?c?d??e");
    for (int c = 0; c < 0x20; ++c)
        EXPECT_EQ(terminal_safe(std::string(1, static_cast<char>(c)), kUtf8), "?") << c;
}

TEST(TerminalSafe, ReplacesC1ControlsEncodedOrRaw) {
    // U+009B (CSI) as UTF-8, and the raw 8-bit byte 0x9B that 8-bit terminals act on.
    EXPECT_EQ(terminal_safe("\xC2\x9B"s + "2J", kUtf8), "?2J");
    EXPECT_EQ(terminal_safe("\xC2\x80\xC2\x9F", kUtf8), "??");
    EXPECT_EQ(terminal_safe("\x9B"s + "2J", kUtf8), kFffd + "2J");
    EXPECT_EQ(terminal_safe("\x9B"s + "2J", kAscii), "?2J");
    EXPECT_EQ(terminal_safe("\xC2\xA0", kUtf8), "\xC2\xA0");  // U+00A0 is printable
}

TEST(TerminalSafe, ReplacesInvisibleReorderingCharacters) {
    // RLO (U+202E), LRI (U+2066), ZWSP (U+200B), line separator (U+2028), BOM (U+FEFF).
    const std::string text =
        "a\xE2\x80\xAE"s + "b\xE2\x81\xA6" + "c\xE2\x80\x8B" + "d\xE2\x80\xA8" + "e\xEF\xBB\xBF";
    EXPECT_EQ(terminal_safe(text, kUtf8), "a?b?c?d?e?");
}

TEST(TerminalSafe, InvalidUtf8BecomesReplacementCharacters) {
    EXPECT_EQ(terminal_safe("\xff\xfe"s + "ab", kUtf8), kFffd + kFffd + "ab");
    EXPECT_EQ(terminal_safe("\xff\xfe"s + "ab", kAscii), "??ab");
    // One per maximal invalid subpart, as util::valid_utf8 (and so the agent's API): a truncated
    // sequence is one; overlong '/', surrogate U+D800, beyond U+10FFFF, a lone continuation.
    EXPECT_EQ(terminal_safe("\xE4\xB8", kAscii), "?");
    EXPECT_EQ(terminal_safe("\xC0\xAF", kAscii), "??");
    EXPECT_EQ(terminal_safe("\xE0\x80\xAF", kAscii), "???");
    EXPECT_EQ(terminal_safe("\xED\xA0\x80", kAscii), "???");
    EXPECT_EQ(terminal_safe("\xF4\x90\x80\x80", kAscii), "????");
    EXPECT_EQ(terminal_safe("\x80x", kAscii), "?x");
    // An escape right behind an invalid lead byte is still caught.
    EXPECT_EQ(terminal_safe("\xE4\x1b[2J", kUtf8), kFffd + "?[2J");
}

TEST(TerminalSafe, AsciiReplacesEveryNonAsciiCharacter) {
    EXPECT_EQ(terminal_safe("caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80", kAscii), "caf? ? ?");
    EXPECT_EQ(terminal_safe(kFffd, kAscii), "?");  // U+FFFD from an agent that repaired a name
}

TEST(TerminalSafe, IsIdempotentAndAlwaysValid) {
    // Every byte value, alone and before a few others: the result is stable, valid UTF-8 (ASCII
    // for kAscii) and without a control character.
    for (int a = 0; a < 256; ++a)
        for (const int b : {0x1b, 0x41, 0x80, 0x9b, 0xbf, 0xc3, 0xff}) {
            const std::string text{static_cast<char>(a), static_cast<char>(b)};
            for (const auto charset : {kUtf8, kAscii}) {
                const std::string once = terminal_safe(text, charset);
                EXPECT_EQ(terminal_safe(once, charset), once) << a << " " << b;
                EXPECT_TRUE(is_valid_utf8(once));
                for (const char c : once) {
                    const auto byte = static_cast<unsigned char>(c);
                    EXPECT_TRUE(byte >= 0x20 && byte != 0x7f) << a << " " << b;
                    if (charset == kAscii) {
                        EXPECT_LT(byte, 0x80) << a << " " << b;
                    }
                }
            }
        }
}

TEST(TextColumns, CountsCodePointsAndCutsBetweenThem) {
    EXPECT_EQ(text_columns("abc"), 3u);
    EXPECT_EQ(text_columns("caf\xC3\xA9"), 4u);
    EXPECT_EQ(text_columns(terminal_safe("\xff\xfe", kUtf8)), 2u);  // two U+FFFD
    EXPECT_EQ(truncate_to_columns("caf\xC3\xA9s", 4), "caf\xC3\xA9");
    EXPECT_EQ(truncate_to_columns("caf\xC3\xA9s", 3), "caf");
    EXPECT_EQ(truncate_to_columns("ab", 5), "ab");
    EXPECT_EQ(truncate_to_columns("ab", 0), "");
}

}  // namespace
}  // namespace loupe::util
