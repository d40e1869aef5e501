// RESP2/RESP3 framing over the segments loupe captures: a streaming reader that finds where each
// top-level value (a command, a reply, a push) begins and ends, keeps a small summary of it, and
// skips by count the bytes it never saw. Nothing here knows about commands and replies matching:
// that is the stitcher's job (stitcher.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "protocols/protocol.h"
#include "protocols/segment_view.h"
#include "protocols/redis/types.h"

namespace loupe::redis {

// One read or write as positions in its connection's byte stream (protocols/segment_view.h).
using View = protocols::SegmentView;

class RespReader {
  public:
    enum class Mode : std::uint8_t {
        // What a Redis server accepts: arrays of bulk strings, or inline command lines.
        kCommands,
        // Anything RESP2/RESP3 (replies, pushes); attributes are read and left out.
        kReplies,
    };
    enum class Result : std::uint8_t {
        kMessage,   // a top-level value is complete: see top()/elements(); call again for more
        kNeedMore,  // the segment is used up (a value may still be in progress)
        kLost,      // a boundary fell in bytes never seen: the rest of the stream is unknown
        kInvalid,   // bytes that are not RESP where a value had to be
    };

    // Open aggregates at once; deeper values are not followed (kInvalid).
    static constexpr std::size_t kMaxDepth = 32;
    // Longest line: a simple string, an error, an inline command (Redis's own inline limit).
    static constexpr std::uint64_t kMaxLineBytes = 64 * 1024;
    // Bytes kept of a line split across segments (the rest is only counted).
    static constexpr std::size_t kLineKeep = 64;
    // Largest string length or element count believed.
    static constexpr std::int64_t kMaxLength = std::int64_t{1} << 40;
    // Elements summarised per top-level aggregate by default (command name, subcommand and first
    // argument; a push's kind, channel and count).
    static constexpr std::size_t kDefaultKeep = 3;

    explicit RespReader(Mode mode) noexcept : mode_(mode) {}

    // Reads from pos on, up to the end of the next top-level value or of the segment.
    Result next(const View& v, std::uint64_t& pos);

    // The last complete value (after kMessage) or the one in progress.
    const Value& top() const noexcept { return top_; }
    // Summaries of its first elements (inline commands: of its first words).
    std::span<const Value> elements() const noexcept { return elements_; }
    std::uint64_t start_ns() const noexcept { return start_ns_; }
    std::uint64_t end_ns() const noexcept { return end_ns_; }

    // No value in progress: the next byte starts a new top-level value.
    bool idle() const noexcept { return !open_; }
    // After kLost/kInvalid: whether it happened where a top-level value had to start.
    bool failed_at_boundary() const noexcept { return failed_at_boundary_; }
    // After kLost in kCommands mode: a command whose name was seen before its boundary was lost.
    bool has_partial_command() const noexcept;

    // Elements to summarise for the next top-level value (at most kMaxKeepLimit).
    static constexpr std::size_t kMaxKeepLimit = 1024;
    void set_keep(std::size_t n) noexcept { keep_next_ = n < kMaxKeepLimit ? n : kMaxKeepLimit; }
    // Forget any value in progress (after a loss, to resynchronise).
    void reset() noexcept;
    std::size_t memory_bytes() const noexcept;

  private:
    enum class State : std::uint8_t {
        kType,    // a value's type byte is next
        kLine,    // inside a type line split across segments
        kBulk,    // inside a string's payload or its CRLF (counted, never buffered)
        kInline,  // inside an inline command line
    };
    enum class Step : std::uint8_t { kContinue, kMessage, kInvalid };
    struct Level {
        std::uint64_t remaining = 0;
        bool attribute = false;
    };

    Step on_line(char type, const std::uint8_t* line, std::size_t n, bool truncated, const View& v);
    Step begin_aggregate(char type, std::int64_t count, const View& v);
    Step finish_value(const View& v);
    void begin_value(char type) noexcept;
    Value* current() noexcept;
    void set_null() noexcept;
    bool capture_text() const noexcept;
    void start_message(const View& v) noexcept;
    Step inline_bytes(const std::uint8_t* run, std::size_t n, bool& done, std::size_t& used);
    Result fail(Result r) noexcept;

    Mode mode_;
    State state_ = State::kType;
    bool open_ = false;  // a top-level value (or an attribute before it) is in progress
    bool failed_at_boundary_ = false;
    bool after_attribute_ = false;  // a top-level attribute was read: its value comes next
    std::uint8_t attributes_open_ = 0;
    std::size_t keep_next_ = kDefaultKeep;
    std::size_t keep_ = kDefaultKeep;
    std::vector<Level> levels_;

    // kLine
    char line_type_ = 0;
    std::uint8_t line_size_ = 0;
    std::uint8_t line_last_ = 0;  // the last byte read so far (CR before LF)
    std::uint64_t line_total_ = 0;
    std::uint8_t line_[kLineKeep] = {};

    // kBulk
    std::uint64_t bulk_left_ = 0;  // payload + CRLF still to read
    std::uint64_t bulk_len_ = 0;
    Text* bulk_text_ = nullptr;

    // kInline
    std::uint64_t inline_total_ = 0;
    bool inline_in_word_ = false;
    char inline_quote_ = 0;
    bool inline_started_ = false;

    Value top_;
    Value element_;           // the element of top_ in progress
    bool deep_null_ = false;  // the value in progress at depth >= 2 is null
    std::vector<Value> elements_;
    std::uint64_t start_ns_ = 0;
    std::uint64_t end_ns_ = 0;
};

// Probes for finding one's footing in a stream picked up mid-way. Each looks at the first bytes
// of a segment only.
enum class Probe : std::uint8_t {
    kNo,      // does not start a command / reply
    kYes,     // does
    kPrefix,  // too short to tell: the start of one, if more bytes follow
};
// `*<n>\r\n$<m>\r\n<name>\r\n` whose name is a command token (a known command when
// `known_only`), or an inline line whose first word is a known command.
Probe starts_command(const std::uint8_t* d, std::size_t n, bool known_only) noexcept;
// A complete, valid RESP type line (`+OK\r\n`, `$5\r\n`, `*2\r\n`, `-ERR x\r\n`, `_\r\n` ...).
bool starts_reply(const std::uint8_t* d, std::size_t n) noexcept;

}  // namespace loupe::redis
