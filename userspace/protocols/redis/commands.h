// Redis command names: which are known, which are containers of subcommands (CONFIG GET), what
// each does to the parser's state, and how a command becomes an operation label.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocols/redis/types.h"

namespace loupe::redis {

struct CommandInfo {
    std::string_view name;  // upper case
    CommandKind kind = CommandKind::kPlain;
    bool container = false;  // the first argument is a subcommand, part of the operation name
};

// Case-insensitive lookup among the commands of Redis 7 (plus a few later ones). nullptr when
// unknown.
const CommandInfo* find_command(std::string_view name) noexcept;

// A word that may stand for a command in a label: letters, digits, '-', '_', '.', ':', at most
// 32 bytes (so that a key or a value sent where a command belongs never becomes a label).
bool is_command_token(std::string_view word) noexcept;

struct NamedCommand {
    const CommandInfo* info = nullptr;  // nullptr: not a known command
    CommandKind kind = CommandKind::kPlain;
};

// The operation name of a command from its first two words: the name upper-cased ("_OTHER" if
// it is no command token); a known container's subcommand appended ("CONFIG GET", or
// "CONFIG _OTHER" when the subcommand is no token). `argc` counts the name too.
NamedCommand name_command(const Text& name, const Text* subcommand, std::int64_t argc,
                          OpName& out) noexcept;

// The error prefix of an error reply's text: its first word, upper-cased, any byte outside
// [A-Z0-9_] replaced by '_', at most kMaxErrorBytes; "ERR" when there is no word.
inline constexpr std::size_t kMaxErrorBytes = Text::kCapacity;
std::size_t error_prefix(const Text& text, char (&out)[kMaxErrorBytes]) noexcept;

// The kind of a pub/sub message (RESP3 push, or RESP2 array in subscribed mode) from its first
// element.
enum class PushKind : std::uint8_t {
    kOther,    // "invalidate" (client tracking) and any other push
    kMessage,  // message, pmessage, smessage: a published message
    kSubscribe,
    kPsubscribe,
    kSsubscribe,
    kUnsubscribe,
    kPunsubscribe,
    kSunsubscribe,
};
PushKind push_kind(const Text& first) noexcept;
// The command a confirmation answers (SUBSCRIBE for "subscribe", ...), kPlain for the others.
CommandKind confirmed_command(PushKind kind) noexcept;

}  // namespace loupe::redis
