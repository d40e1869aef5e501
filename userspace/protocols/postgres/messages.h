// PostgreSQL protocol 3.0 framing over the segments loupe captures: a streaming reader per
// direction that finds where each message begins and ends, keeps the first bytes of the bodies
// the matcher needs (SQL text, names, a command tag, an error's fields), and skips by count the
// bytes it never saw. Nothing here pairs requests with replies: that is connection.h's job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "protocols/protocol.h"
#include "protocols/segment_view.h"

namespace loupe::postgres {

// Codes of the untyped messages a client sends first (protocol 3.0: major 3 in the high 16 bits).
inline constexpr std::uint32_t kProtocol30 = 196608;
inline constexpr std::uint32_t kSslRequestCode = 80877103;
inline constexpr std::uint32_t kGssEncRequestCode = 80877104;
inline constexpr std::uint32_t kCancelRequestCode = 80877102;
// PostgreSQL's own limit on a startup-phase message (MAX_STARTUP_PACKET_LENGTH).
inline constexpr std::uint32_t kMaxStartupLength = 10000;
// Largest message length believed (PostgreSQL's own limit on a field is 1 GiB).
inline constexpr std::uint64_t kMaxMessageLength = (std::uint64_t{1} << 30) + 1024;

// One read or write as positions in its connection's byte stream (protocols/segment_view.h).
using View = protocols::SegmentView;

// One complete message as the reader keeps it.
struct Message {
    // The type byte; 0 for an untyped startup-phase message (then `code` says which); for a
    // one-byte SSL/GSS answer, 'S', 'N' or 'G' with `answer` set.
    char type = 0;
    bool answer = false;
    std::uint32_t code = 0;    // untyped messages: the request code or protocol version
    std::uint64_t length = 0;  // the body's length (after type and length)
    // Its first bytes (at most the reader's keep for this type); `truncated`: the body is longer,
    // or some of its bytes were never captured.
    std::string_view body;
    bool truncated = false;
    std::uint64_t start_ns = 0;  // when its first byte moved
    std::uint64_t end_ns = 0;    // when its last byte moved
};

class MessageReader {
  public:
    enum class Framing : std::uint8_t {
        kTyped,     // type byte, int32 length, body
        kStartup,   // int32 length, int32 code, body (StartupMessage, SSLRequest, ...)
        kSslReply,  // one byte 'S'/'N'/'G', or a typed message (an ErrorResponse)
    };
    enum class Result : std::uint8_t {
        kMessage,   // a message is complete: see message(); call again for more
        kNeedMore,  // the segment is used up (a message may still be in progress)
        kLost,      // a header fell in bytes never seen: the rest of the stream is unknown
        kInvalid,   // bytes that are no message header where one had to be
    };
    // Bytes of SQL text kept (a Query's or a Parse's); the summariser reads no more.
    static constexpr std::size_t kMaxSqlBytes = 8192;

    explicit MessageReader(bool frontend) noexcept : frontend_(frontend) {}

    Result next(const View& v, std::uint64_t& pos);
    const Message& message() const noexcept { return message_; }
    void set_framing(Framing f) noexcept { framing_ = f; }
    Framing framing() const noexcept { return framing_; }
    bool idle() const noexcept { return !in_body_ && header_have_ == 0; }
    // Forget the message in progress (to resynchronise), reading typed messages next.
    void reset() noexcept;
    std::size_t memory_bytes() const noexcept { return body_.capacity(); }

  private:
    std::size_t keep_for(char type) const noexcept;
    Result fail(Result r) noexcept;

    bool frontend_;
    Framing framing_ = Framing::kTyped;
    bool in_body_ = false;
    std::uint8_t header_[8] = {};
    std::uint8_t header_have_ = 0;
    std::uint64_t body_left_ = 0;
    std::size_t keep_ = 0;
    bool gap_ = false;  // bytes of the body were never seen: keep nothing after them
    std::string body_;
    Message message_;
};

// Whether `type` is a message type a client (frontend) / a server (backend) sends.
bool is_frontend_type(std::uint8_t type) noexcept;
bool is_backend_type(std::uint8_t type) noexcept;
// The first bytes of a segment are a plausible typed message header of that direction.
bool starts_typed_message(const std::uint8_t* d, std::size_t n, bool frontend) noexcept;
// The first bytes are an untyped startup-phase message (protocol 3.x StartupMessage, SSLRequest,
// GSSENCRequest or CancelRequest, with its fixed length).
bool starts_startup_message(const std::uint8_t* d, std::size_t n) noexcept;

std::uint32_t read_be32(const std::uint8_t* d) noexcept;

// The NUL-terminated string at body[at...] (without the NUL); advances `at` past it. Not
// terminated within body: the rest of it, and `at` = body.size().
std::string_view c_string(std::string_view body, std::size_t& at) noexcept;
// An ErrorResponse's SQLSTATE (field 'C'), or empty when it has none in the kept bytes.
std::string_view error_sqlstate(std::string_view body) noexcept;

}  // namespace loupe::postgres
