// The values the Redis parser works with: summaries of RESP values (never whole payloads), the
// commands waiting for their replies, and the parser's own counters.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace loupe::redis {

// The first bytes of a string value: enough for a command name, a subcommand, a push kind or an
// error prefix. Longer strings keep their first kCapacity bytes and are marked partial.
struct Text {
    static constexpr std::size_t kCapacity = 32;
    std::array<char, kCapacity> bytes{};
    std::uint8_t size = 0;
    bool partial = false;  // longer than kCapacity, or some of its first bytes were never seen

    std::string_view view() const noexcept { return {bytes.data(), size}; }
    // Complete and equal to `upper` when ASCII letters are upper-cased.
    bool equals_upper(std::string_view upper) const noexcept;
};

// What the parser keeps of one RESP value.
struct Value {
    // The RESP type byte ('$', '*', '+', '-', ':', '%', '>', '_', ...); 'i' for an inline command.
    char type = 0;
    bool null = false;  // $-1, *-1 (RESP2), _ (RESP3)
    // ':' and '#': the value; aggregates: the element count (pairs for maps); strings: the length;
    // inline commands: the number of words.
    std::int64_t integer = 0;
    std::uint32_t null_elements = 0;  // aggregates: direct elements that are null
    Text text;                        // '+', '-', '$', '!', '=', inline words: the first bytes

    bool is_error() const noexcept { return type == '-' || type == '!'; }
    bool is_aggregate() const noexcept {
        return type == '*' || type == '%' || type == '~' || type == '>';
    }
    bool is_string() const noexcept { return type == '$' || type == '+' || type == '='; }
};

// What a command does to the parser's state or to the cache counters.
enum class CommandKind : std::uint8_t {
    kPlain,
    kLookup,        // one key read, nil reply = miss (GET, HGET, LINDEX, ...)
    kKeysLookup,    // MGET: one lookup per key, nil element = miss
    kFieldsLookup,  // HMGET, ZMSCORE: one lookup per field/member after the key
    kExists,        // EXISTS: the integer reply counts the keys found
    kMulti,
    kExec,
    kDiscard,
    kSelect,
    kHello,
    kMonitor,
    kReset,
    kClient,  // CLIENT: CLIENT REPLY OFF|SKIP change which commands get replies
    kSubscribe,
    kPsubscribe,
    kSsubscribe,
    kUnsubscribe,
    kPunsubscribe,
    kSunsubscribe,
};

constexpr bool is_subscribe_family(CommandKind k) noexcept {
    return k >= CommandKind::kSubscribe && k <= CommandKind::kSunsubscribe;
}

// The operation name as reported: "GET", "CONFIG GET", "_OTHER". At most a 32-byte command and
// a 32-byte subcommand joined by a space.
struct OpName {
    static constexpr std::size_t kCapacity = 2 * Text::kCapacity + 1;
    std::array<char, kCapacity> bytes{};
    std::uint8_t size = 0;

    std::string_view view() const noexcept { return {bytes.data(), size}; }
    void assign(std::string_view s) noexcept;
    void append(std::string_view s) noexcept;
};

// A command sent and not yet answered (or queued by MULTI until EXEC).
struct Pending {
    std::uint64_t start_ns = 0;     // first byte written (client) or read (server)
    std::uint64_t last_end_ns = 0;  // unsubscribe-all: the end of its last confirmation so far
    OpName op;
    CommandKind kind = CommandKind::kPlain;
    // An unknown number of commands were lost (in bytes never captured) just before this one.
    bool gap_before = false;
    std::uint32_t keys = 0;  // lookups this command makes (EXISTS/MGET keys, HMGET fields)
    // SELECT: the database; HELLO: the protocol version asked for (0: none); subscribe family:
    // the confirmations to expect (0: unsubscribe from all).
    std::uint32_t arg = 0;
    std::uint32_t confirmations = 0;   // subscribe family: confirmations seen so far
    std::uint32_t dropped_before = 0;  // commands dropped (queue full) just before this one
};

// Counters beyond the pipeline-wide ParserStats; all monotonic.
struct RedisStats {
    // Segments ignored: before the side or the stream position was known (picked up
    // mid-stream), while resynchronising, or after the connection was found not to be Redis.
    std::uint64_t skipped_segments = 0;
    // Replies that went by while commands were lost in bytes never captured (not matched to
    // anything, not reported).
    std::uint64_t gap_replies = 0;
    // Commands reported without their reply: the reply stream lost its boundaries in bytes
    // never captured where these replies were due (reported with end = that segment).
    std::uint64_t unseen_replies = 0;
    std::uint64_t queued_commands = 0;       // +QUEUED inside MULTI
    std::uint64_t aborted_transactions = 0;  // DISCARD, EXEC nil (WATCH) or EXEC error
    // Commands queued by MULTI that were never executed (transaction aborted or the connection
    // closed before EXEC): not reported, as Redis does not count them either.
    std::uint64_t discarded_commands = 0;
    std::uint64_t confirmations = 0;        // (un)subscribe confirmations matched to their command
    std::uint64_t stray_confirmations = 0;  // confirmations with no matching command
    std::uint64_t no_reply_commands = 0;    // CLIENT REPLY OFF/SKIP: reported when sent
    bool not_redis = false;                 // gave up: the connection does not speak RESP
};

}  // namespace loupe::redis
