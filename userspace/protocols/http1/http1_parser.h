// HTTP/1.x request/response matching over the segments loupe captures per connection.
// Used by pipeline/ConnectionTracker; how segments are read is documented on Http1Connection.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "protocols/protocol.h"

namespace loupe::http1 {

// The pipeline's types (protocols/protocol.h): a connection's side is its role here.
using protocols::Direction;
using protocols::Segment;
using Role = protocols::Side;

// A W3C traceparent header's value, kept only when well formed ("00-<32 hex>-<16 hex>-<2 hex>",
// lower-case, ids not all zero): nothing but hex digits and dashes ever leaves the parser.
struct Traceparent {
    static constexpr std::size_t kLength = 55;
    std::array<char, kLength> text{};
    bool valid = false;
    std::string_view view() const { return valid ? std::string_view(text.data(), kLength) : ""; }
};

struct Exchange {
    Role role = Role::kUnknown;
    std::string method;          // GET, POST, ... or "_OTHER" for an unknown method token
    std::string path;            // request target without query string and fragment
    int status = 0;              // response status; 0 = connection closed without a response
    std::uint64_t start_ns = 0;  // server: first request byte read; client: first byte written
    std::uint64_t end_ns = 0;    // server: last response byte written; client: last byte read
    Traceparent traceparent;     // the request's, when it carried a valid one
};

struct ParserStats {
    std::uint64_t unparsed_segments = 0;    // data where a request/status line was expected
    std::uint64_t unmatched_responses = 0;  // a response with no pending request
    std::uint64_t dropped_requests = 0;     // pending-request queue cap exceeded
};

// Finer counters of how framing went; all monotonic (never reset, not even by on_close).
struct FramingStats {
    // Header blocks that could not be framed: larger than kMaxHeaderBytes, or their end lies in
    // bytes that were not captured. Each is also counted once in ParserStats::unparsed_segments.
    std::uint64_t oversized_headers = 0;
    // Message boundaries lost: in uncaptured bytes (e.g. a pipelined message after a body that
    // ends beyond the captured head, a chunk-size line not captured) or unknowable (a request
    // with an invalid Content-Length or a non-chunked Transfer-Encoding). The stream then
    // resynchronises at the next start line (chunked: at the last-chunk terminator).
    std::uint64_t desyncs = 0;
    // Segments ignored while resynchronising, before the role of the connection was known, or
    // after the connection left HTTP/1 (101 Switching Protocols, CONNECT tunnel).
    std::uint64_t skipped_segments = 0;
    // Pending requests given up when the response stream lost sync: their responses went by in
    // uncaptured bytes, so pairing later responses with them would pair strangers.
    std::uint64_t abandoned_requests = 0;
    // Interim 1xx responses (100 Continue, 103 Early Hints); 101 is final.
    std::uint64_t interim_responses = 0;
};

namespace detail {
// Parser internals, defined here only because the connection state holds them.
// What a header block says about the body of its message.
struct Framing {
    std::uint64_t content_length = 0;
    bool has_length = false;
    bool bad_length = false;  // unparsable or conflicting Content-Length
    bool has_te = false;
    bool chunked = false;     // the last transfer coding is chunked
    Traceparent traceparent;  // a request's trace context (W3C), when valid
};
struct StartLine;
}  // namespace detail

// One connection's HTTP/1.x state. How it reads the segments:
//  - Role: the hint when the connection was seen opening; otherwise inferred from the first
//    segment that begins with a start line (request line read => server, written => client;
//    status line read => client, written => server). Until then segments are skipped (counted in
//    FramingStats::skipped_segments only), and after inference both directions resynchronise on
//    their next start line.
//  - unparsed_segments counts data found where the parser knew a message had to start (a known
//    role and a synchronised stream) but that is no request/status line (garbage, binary, another
//    protocol, a broken start line), plus header blocks that could not be framed (see
//    FramingStats::oversized_headers). Segments skipped while resynchronising are not counted.
//  - Requests: start line and headers from the head; pipelined messages in one head are all
//    queued with the segment's timestamp; bodies by Content-Length or chunked framing, counted
//    with each segment's length, so uncaptured body bytes never look like a new request. A header
//    block split over fully captured segments is reassembled up to kMaxHeaderBytes; beyond that,
//    or when its end was not captured, the request is still queued but its body is taken as
//    unknown and the stream resynchronises at the next request line.
//  - Responses pair with the oldest pending request. 1xx (but 101) are interim. HEAD, 204 and
//    304 have no body; chunked ends with the last chunk (parsed exactly while the chunk-size lines
//    are visible, then at a segment whose data ends with "0\r\n\r\n"); Content-Length by byte
//    count (sendfile included); otherwise the response is close-delimited. A response of unknown
//    extent (close-delimited, header block not visible, chunk framing lost) ends at the last
//    response segment before the next request, the next status line, or the close.
//  - 101 Switching Protocols and a 2xx answer to CONNECT end HTTP/1 on the connection: later
//    segments are skipped until on_close.
//  - Exchange times: start = the segment holding the first byte of the request, end = the segment
//    holding the last byte of the response; on_close emits every unanswered request with status
//    0 and end = the close timestamp.
class Http1Connection {
  public:
    // Pending (sent, unanswered) requests kept per connection; more are dropped and counted.
    static constexpr std::size_t kMaxPending = 64;
    // Bound of the per-direction reassembly buffer for a header block split across segments.
    static constexpr std::size_t kMaxHeaderBytes = 4096;
    // Longest path stored per request (longer ones are truncated).
    static constexpr std::size_t kMaxPathBytes = 512;

    explicit Http1Connection(Role hint = Role::kUnknown);
    void on_segment(const Segment& segment, std::vector<Exchange>& out);
    void on_close(std::uint64_t timestamp_ns, std::vector<Exchange>& out);
    Role role() const noexcept;
    bool seen_http() const noexcept;
    const ParserStats& stats() const noexcept;

    const FramingStats& framing_stats() const noexcept { return framing_; }
    // Requests waiting for their response.
    std::size_t pending_requests() const noexcept { return pending_.size() - pending_head_; }
    // Heap and inline bytes held by this connection's state (bounded; see the constants above).
    std::size_t memory_bytes() const noexcept;

  private:
    // How the body of the message in progress is delimited.
    enum class Body : std::uint8_t {
        kNone,
        kLength,       // Content-Length: `remaining` bytes left
        kChunked,      // chunked, every chunk-size line seen so far
        kChunkedLost,  // chunked, a chunk-size line fell in uncaptured bytes: ends at a segment
                       // whose data ends with the last-chunk terminator
        kUntilClose,   // close-delimited, or framing unknown (header block not visible)
    };
    enum class Phase : std::uint8_t {
        kStart,    // a start line is expected at the current position
        kHeaders,  // reassembling a header block split across segments
        kBody,     // inside a body delimited by `body`
        kResync,   // boundaries unknown: skip segments until one begins with a start line
    };
    enum class Chunk : std::uint8_t {
        kSize,
        kSizeExt,
        kData,
        kDataCr,
        kDataLf,
        kTrailerStart,
        kTrailerLine,
        kTrailerEndLf,
    };

    using Framing = detail::Framing;
    using StartLine = detail::StartLine;

    struct Stream {
        Phase phase = Phase::kStart;
        Body body = Body::kNone;
        Chunk chunk = Chunk::kSize;
        bool chunk_digits = false;      // kSize: at least one hex digit read
        bool start_done = false;        // kHeaders: start line already acted upon
        std::uint8_t suffix_len = 0;    // kChunkedLost: valid bytes of suffix
        std::uint8_t suffix[7] = {};    // kChunkedLost: last bytes of the stream, when known
        int status = 0;                 // response stream: status of the message in progress
        std::uint64_t remaining = 0;    // kLength body / chunk data bytes left
        std::uint64_t start_ns = 0;     // timestamp of the segment the message started in
        std::size_t line_len = 0;       // kHeaders: length of the start line once complete
        std::size_t scan_from = 0;      // kHeaders: start of the first line not yet complete
        Framing framing;                // kHeaders: header lines parsed so far
        std::vector<std::uint8_t> buf;  // kHeaders: the message so far (<= kMaxHeaderBytes)
    };

    struct Pending {
        const char* method = nullptr;  // static string
        std::string path;
        std::uint64_t start_ns = 0;
        std::uint32_t dropped_before = 0;  // dropped requests sent just before this one
        Traceparent traceparent;
    };

    // The response in progress, paired (or not) with its request.
    struct Current {
        bool active = false;
        bool matched = false;
        const char* method = nullptr;
        std::string path;
        std::uint64_t start_ns = 0;
        std::uint64_t last_ns = 0;  // last response segment seen
        int status = 0;
        Traceparent traceparent;
    };

    enum class ChunkResult : std::uint8_t { kMore, kDone, kLost };
    struct View;

    Direction request_direction() const noexcept;
    bool infer_role(const View& v, Direction direction);
    bool starts_message(const View& v, bool request) const;
    void process(Stream& st, const View& v, bool request, std::vector<Exchange>& out);
    std::uint64_t begin_message(Stream& st, const View& v, std::uint64_t pos, bool request,
                                std::vector<Exchange>& out);
    std::uint64_t continue_headers(Stream& st, const View& v, bool request,
                                   std::vector<Exchange>& out);
    std::uint64_t consume_body(Stream& st, const View& v, std::uint64_t pos, bool request,
                               std::vector<Exchange>& out);
    void act_on_start_line(Stream& st, const StartLine& line, std::uint64_t ts, bool request,
                           std::vector<Exchange>& out);
    void set_framing(Stream& st, const Framing& framing, std::uint64_t ts, bool request,
                     std::vector<Exchange>& out);
    bool response_without_body(Stream& st, std::uint64_t ts, std::vector<Exchange>& out);
    void give_up_headers(Stream& st, std::uint64_t ts, bool request, std::vector<Exchange>& out);
    ChunkResult run_chunks(Stream& st, const View& v, std::uint64_t& pos);
    static bool track_last_chunk(Stream& st, const View& v, std::uint64_t pos);
    void lose_sync(Stream& st, bool request);
    void abandon_pending();
    void end_body(Stream& st, std::uint64_t ts, bool request, std::vector<Exchange>& out);
    void complete_response(std::uint64_t end_ns, std::vector<Exchange>& out);
    void finish_open_response(std::vector<Exchange>& out);
    void enqueue(const char* method, std::string path, std::uint64_t ts);
    static void reset_stream(Stream& st, Phase phase);

    Role role_;
    bool seen_http_ = false;
    bool tunnel_ = false;  // after 101 Switching Protocols or a successful CONNECT
    ParserStats stats_;
    FramingStats framing_;
    Stream requests_;
    Stream responses_;
    std::vector<Pending> pending_;  // FIFO from pending_head_
    std::size_t pending_head_ = 0;
    std::uint32_t dropped_tail_ = 0;  // dropped requests after the last pending one
    Current current_;
};

}  // namespace loupe::http1
