#include "protocols/http1/http1_parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <utility>

namespace loupe::http1 {
namespace {

constexpr std::size_t kNpos = static_cast<std::size_t>(-1);
// Longest method token considered; anything longer is not a request line.
constexpr std::size_t kMaxMethodLen = 24;

constexpr char kGet[] = "GET";
constexpr char kHead[] = "HEAD";
constexpr char kPost[] = "POST";
constexpr char kPut[] = "PUT";
constexpr char kDelete[] = "DELETE";
constexpr char kConnect[] = "CONNECT";
constexpr char kOptions[] = "OPTIONS";
constexpr char kTrace[] = "TRACE";
constexpr char kPatch[] = "PATCH";
constexpr char kOther[] = "_OTHER";
constexpr const char* kKnownMethods[] = {kGet,     kHead,    kPost,  kPut,  kDelete,
                                         kConnect, kOptions, kTrace, kPatch};

// RFC 9110 tchar, as a table: the method scan is on the hot path.
constexpr std::array<bool, 256> kTchar = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c)
        t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c)
        t[static_cast<std::size_t>(c)] = t[static_cast<std::size_t>(c - 'a' + 'A')] = true;
    for (const char c : std::string_view("!#$%&'*+-.^_`|~"))
        t[static_cast<unsigned char>(c)] = true;
    return t;
}();

constexpr bool is_tchar(std::uint8_t c) noexcept {
    return kTchar[c];
}

constexpr bool is_digit(std::uint8_t c) noexcept {
    return c >= '0' && c <= '9';
}

constexpr int hex_value(std::uint8_t c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

constexpr bool is_ows(std::uint8_t c) noexcept {
    return c == ' ' || c == '\t';
}

// ASCII case-insensitive comparison against a lower-case literal of the same length.
bool iequals(const std::uint8_t* s, const char* lower, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        std::uint8_t c = s[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<std::uint8_t>(c + ('a' - 'A'));
        if (c != static_cast<std::uint8_t>(lower[i])) return false;
    }
    return true;
}

const char* lookup_method(const std::uint8_t* d, std::size_t n) noexcept {
    for (const char* m : kKnownMethods)
        if (std::strlen(m) == n && std::memcmp(d, m, n) == 0) return m;
    return kOther;
}

bool is_known_method_prefix(const std::uint8_t* d, std::size_t n) noexcept {
    for (const char* m : kKnownMethods)
        if (std::strlen(m) >= n && std::memcmp(d, m, n) == 0) return true;
    return false;
}

// Path of a request target: origin-form as is, absolute-form reduced to its path, query and
// fragment removed, bounded length.
std::string extract_path(const std::uint8_t* t, std::size_t n) {
    std::size_t begin = 0;
    if (n > 0 && t[0] != '/') {
        // absolute-form "scheme://authority/path": keep what follows the authority
        const std::size_t scan = std::min<std::size_t>(n, 16);
        for (std::size_t i = 0; i < scan; ++i) {
            const std::uint8_t c = t[i];
            if (c == ':' && i > 0 && i + 2 < n && t[i + 1] == '/' && t[i + 2] == '/') {
                std::size_t p = i + 3;
                while (p < n && t[p] != '/' && t[p] != '?' && t[p] != '#')
                    ++p;
                if (p == n || t[p] != '/') return std::string("/");
                begin = p;
                break;
            }
            const bool scheme_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                     (i > 0 && (is_digit(c) || c == '+' || c == '-' || c == '.'));
            if (!scheme_char) break;  // authority-form (CONNECT) or asterisk-form: kept as is
        }
    }
    std::size_t end = begin;
    while (end < n && t[end] != '?' && t[end] != '#')
        ++end;
    end = std::min(end, begin + Http1Connection::kMaxPathBytes);
    return std::string(reinterpret_cast<const char*>(t + begin), end - begin);
}

}  // namespace

// A segment as positions in the byte stream of one syscall: [0, cap) visible in head,
// [len - tail_len, len) visible in tail, the rest only counted.
struct Http1Connection::View {
    const std::uint8_t* head = nullptr;
    std::size_t cap = 0;
    std::uint64_t len = 0;
    const std::uint8_t* tail = nullptr;
    std::size_t tail_len = 0;
    std::uint64_t ts = 0;        // when the segment's last bytes moved: messages end then
    std::uint64_t first_ts = 0;  // when its first bytes moved: messages start then

    explicit View(const Segment& s)
        : head(s.head.data()),
          cap(s.head.size()),
          ts(s.timestamp_ns),
          first_ts(s.first_timestamp_ns != 0 && s.first_timestamp_ns < s.timestamp_ns
                       ? s.first_timestamp_ns
                       : s.timestamp_ns) {
        len = std::max<std::uint64_t>(s.length, cap);
        if (len > cap && !s.tail.empty()) {
            tail_len = static_cast<std::size_t>(std::min<std::uint64_t>(s.tail.size(), len - cap));
            tail = s.tail.data() + (s.tail.size() - tail_len);
        }
    }
    bool captured() const noexcept { return cap == len; }
    bool byte_at(std::uint64_t p, std::uint8_t& b) const noexcept {
        if (p < cap) {
            b = head[p];
            return true;
        }
        if (tail_len != 0 && p >= len - tail_len && p < len) {
            b = tail[p - (len - tail_len)];
            return true;
        }
        return false;
    }
};

struct detail::StartLine {
    enum class State : std::uint8_t { kInvalid, kPartial, kComplete };
    State state = State::kInvalid;
    bool usable = false;     // kPartial: enough is visible to act on (target / status code known)
    bool strong = false;     // kPartial request: known method and an origin-form target
    std::size_t length = 0;  // kComplete: bytes up to and including the LF
    const char* method = nullptr;
    const std::uint8_t* target = nullptr;
    std::size_t target_len = 0;
    int status = 0;
};

namespace {

using detail::StartLine;

StartLine partial(StartLine r, bool usable) {
    r.state = StartLine::State::kPartial;
    r.usable = usable;
    return r;
}

// request-line = method SP request-target SP HTTP-version CRLF (a bare LF is accepted).
StartLine parse_request_line(const std::uint8_t* d, std::size_t n) {
    StartLine r;
    std::size_t i = 0;
    while (i < n && i <= kMaxMethodLen && is_tchar(d[i]))
        ++i;
    if (i == n) {
        // Only a method prefix is visible: plausible only for a known method, so that a stray
        // token buffered here cannot glue itself to the next request line.
        if (n > 0 && is_known_method_prefix(d, n)) return partial(r, false);
        return r;
    }
    if (i == 0 || i > kMaxMethodLen || d[i] != ' ') return r;
    r.method = lookup_method(d, i);
    const std::size_t t0 = i + 1;
    std::size_t j = t0;
    while (j < n && d[j] > 0x20 && d[j] != 0x7f)
        ++j;
    r.target = d + t0;
    r.target_len = j - t0;
    if (j == n) {
        r = partial(r, j > t0);
        r.strong = r.usable && r.method != kOther && d[t0] == '/';
        return r;
    }
    if (j == t0 || d[j] != ' ') return StartLine{};
    static constexpr char kVersion[] = "HTTP/1.";
    const bool known = r.method != kOther;
    auto cut = [&](StartLine line) {
        line = partial(line, true);
        line.strong = known;
        return line;
    };
    std::size_t k = j + 1;
    for (std::size_t m = 0; m < 7; ++m, ++k) {
        if (k == n) return cut(r);
        if (d[k] != static_cast<std::uint8_t>(kVersion[m])) return StartLine{};
    }
    if (k == n) return cut(r);
    if (!is_digit(d[k])) return StartLine{};
    if (++k == n) return cut(r);
    if (d[k] == '\r') {
        if (++k == n) return cut(r);
        if (d[k] != '\n') return StartLine{};
    } else if (d[k] != '\n') {
        return StartLine{};
    }
    r.state = StartLine::State::kComplete;
    r.length = k + 1;
    return r;
}

// status-line = HTTP-version SP 3DIGIT [SP reason-phrase] CRLF (bare LF accepted).
StartLine parse_status_line(const std::uint8_t* d, std::size_t n) {
    StartLine r;
    static constexpr char kVersion[] = "HTTP/1.";
    std::size_t k = 0;
    for (; k < 7; ++k) {
        if (k == n) return n > 0 ? partial(r, false) : r;
        if (d[k] != static_cast<std::uint8_t>(kVersion[k])) return r;
    }
    if (k == n) return partial(r, false);
    if (!is_digit(d[k])) return r;
    if (++k == n) return partial(r, false);
    if (d[k] != ' ') return r;
    ++k;
    int status = 0;
    for (int m = 0; m < 3; ++m, ++k) {
        if (k == n) return partial(r, false);
        if (!is_digit(d[k])) return r;
        status = status * 10 + (d[k] - '0');
    }
    if (status < 100) return r;
    r.status = status;
    if (k == n) return partial(r, true);
    if (d[k] == ' ') {
        const void* nl = std::memchr(d + k, '\n', n - k);
        if (nl == nullptr) return partial(r, true);
        r.length = static_cast<std::size_t>(static_cast<const std::uint8_t*>(nl) - d) + 1;
    } else if (d[k] == '\r') {
        if (k + 1 == n) return partial(r, true);
        if (d[k + 1] != '\n') return StartLine{};
        r.length = k + 2;
    } else if (d[k] == '\n') {
        r.length = k + 1;
    } else {
        return StartLine{};
    }
    r.state = StartLine::State::kComplete;
    return r;
}

// Content-Length: 1*DIGIT, or a list of identical values ("42, 42").
void parse_content_length(detail::Framing& f, const std::uint8_t* v, std::size_t n) {
    std::uint64_t value = 0;
    bool have = false;
    std::size_t i = 0;
    while (true) {
        while (i < n && is_ows(v[i]))
            ++i;
        std::uint64_t x = 0;
        std::size_t digits = 0;
        while (i < n && is_digit(v[i])) {
            if (++digits > 18) {
                f.bad_length = true;
                return;
            }
            x = x * 10 + static_cast<std::uint64_t>(v[i] - '0');
            ++i;
        }
        if (digits == 0 || (have && x != value)) {
            f.bad_length = true;
            return;
        }
        value = x;
        have = true;
        while (i < n && is_ows(v[i]))
            ++i;
        if (i == n) break;
        if (v[i] != ',') {
            f.bad_length = true;
            return;
        }
        ++i;
    }
    if (f.has_length && f.content_length != value) f.bad_length = true;
    f.has_length = true;
    f.content_length = value;
}

// Transfer-Encoding: the body is chunked when chunked is the last coding applied.
void parse_transfer_encoding(detail::Framing& f, const std::uint8_t* v, std::size_t n) {
    std::size_t end = n;
    while (end > 0 && (is_ows(v[end - 1]) || v[end - 1] == ','))
        --end;
    std::size_t begin = end;
    while (begin > 0 && v[begin - 1] != ',')
        --begin;
    while (begin < end && is_ows(v[begin]))
        ++begin;
    f.has_te = true;
    f.chunked = end - begin == 7 && iequals(v + begin, "chunked", 7);
}

// traceparent (W3C Trace Context, version 00): kept only when exactly well formed.
void parse_traceparent(detail::Framing& f, const std::uint8_t* v, std::size_t n) {
    constexpr std::size_t kLength = Traceparent::kLength;
    if (n != kLength || v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return;
    bool trace_zero = true, span_zero = true;
    for (std::size_t i = 0; i < kLength; ++i) {
        if (i == 2 || i == 35 || i == 52) continue;
        const std::uint8_t c = v[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return;
        if (c != '0' && i >= 3 && i < 35) trace_zero = false;
        if (c != '0' && i >= 36 && i < 52) span_zero = false;
    }
    if (trace_zero || span_zero) return;
    std::memcpy(f.traceparent.text.data(), v, kLength);
    f.traceparent.valid = true;
}

void parse_header_line(detail::Framing& f, const std::uint8_t* s, std::size_t n) {
    // Three headers matter (two for framing); reject everything else on its first byte.
    const std::uint8_t first = static_cast<std::uint8_t>(s[0] | 0x20);
    std::size_t name_len;
    if (first == 'c') {
        name_len = 14;
    } else if (first == 't') {
        name_len = n > 11 && s[11] == ':' ? 11 : 17;
    } else {
        return;
    }
    if (n <= name_len || s[name_len] != ':') return;  // no OWS allowed before the colon
    std::size_t b = name_len + 1;
    std::size_t e = n;
    while (b < e && is_ows(s[b]))
        ++b;
    while (e > b && is_ows(s[e - 1]))
        --e;
    if (name_len == 14 && iequals(s, "content-length", 14))
        parse_content_length(f, s + b, e - b);
    else if (name_len == 17 && iequals(s, "transfer-encoding", 17))
        parse_transfer_encoding(f, s + b, e - b);
    else if (name_len == 11 && iequals(s, "traceparent", 11))
        parse_traceparent(f, s + b, e - b);
}

// Walks header lines from `line` (the start of a line), parsing each complete one into `f`.
// Returns the offset just past the empty line ending the block, or kNpos with `line` set to the
// start of the first incomplete line.
std::size_t scan_headers(const std::uint8_t* d, std::size_t n, std::size_t& line,
                         detail::Framing& f) {
    std::size_t p = line;
    while (p < n) {
        if (d[p] == '\n') return p + 1;
        if (d[p] == '\r') {
            if (p + 1 == n) break;
            if (d[p + 1] == '\n') return p + 2;
        }
        const void* nl = std::memchr(d + p, '\n', n - p);
        if (nl == nullptr) break;
        const std::size_t lf = static_cast<std::size_t>(static_cast<const std::uint8_t*>(nl) - d);
        std::size_t e = lf;
        if (e > p && d[e - 1] == '\r') --e;
        if (e > p) parse_header_line(f, d + p, e - p);
        p = lf + 1;
    }
    line = p;
    return kNpos;
}

StartLine parse_start_line(const std::uint8_t* d, std::size_t n, bool request) {
    return request ? parse_request_line(d, n) : parse_status_line(d, n);
}

}  // namespace

Http1Connection::Http1Connection(Role hint) : role_(hint) {}

Role Http1Connection::role() const noexcept {
    return role_;
}
bool Http1Connection::seen_http() const noexcept {
    return seen_http_;
}
const ParserStats& Http1Connection::stats() const noexcept {
    return stats_;
}

std::size_t Http1Connection::memory_bytes() const noexcept {
    auto heap = [](const std::string& s) { return s.capacity() > 15 ? s.capacity() + 1 : 0; };
    std::size_t bytes = sizeof(*this) + requests_.buf.capacity() + responses_.buf.capacity() +
                        pending_.capacity() * sizeof(Pending) + heap(current_.path);
    for (const auto& p : pending_)
        bytes += heap(p.path);
    return bytes;
}

Direction Http1Connection::request_direction() const noexcept {
    return role_ == Role::kClient ? Direction::kEgress : Direction::kIngress;
}

void Http1Connection::reset_stream(Stream& st, Phase phase) {
    st.phase = phase;
    st.body = Body::kNone;
    st.chunk = Chunk::kSize;
    st.chunk_digits = false;
    st.start_done = false;
    st.suffix_len = 0;
    st.status = 0;
    st.remaining = 0;
    st.line_len = 0;
    st.scan_from = 0;
    st.framing = Framing{};
    st.buf.clear();
}

// A segment begins a message when its head starts with a complete start line, or with a start
// line cut short by the capture (a request line longer than the head, with a known method and an
// origin-form target; a status line whose code is visible).
bool Http1Connection::starts_message(const View& v, bool request) const {
    if (v.cap == 0) return false;
    const StartLine line = parse_start_line(v.head, v.cap, request);
    if (line.state == StartLine::State::kComplete) return true;
    return line.state == StartLine::State::kPartial && !v.captured() &&
           (request ? line.strong : line.usable);
}

bool Http1Connection::infer_role(const View& v, Direction direction) {
    const bool ingress = direction == Direction::kIngress;
    if (starts_message(v, true))
        role_ = ingress ? Role::kServer : Role::kClient;
    else if (starts_message(v, false))
        role_ = ingress ? Role::kClient : Role::kServer;
    else
        return false;
    // Picked up mid-stream: both directions synchronise on their next start line.
    reset_stream(requests_, Phase::kResync);
    reset_stream(responses_, Phase::kResync);
    return true;
}

void Http1Connection::on_segment(const Segment& segment, std::vector<Exchange>& out) {
    const View v(segment);
    if (v.len == 0) return;
    if (tunnel_ || (role_ == Role::kUnknown && !infer_role(v, segment.direction))) {
        ++framing_.skipped_segments;
        return;
    }
    const bool request = segment.direction == request_direction();
    process(request ? requests_ : responses_, v, request, out);
}

void Http1Connection::process(Stream& st, const View& v, bool request, std::vector<Exchange>& out) {
    std::uint64_t pos = 0;
    while (pos < v.len && !tunnel_) {
        switch (st.phase) {
            case Phase::kStart:
                pos = begin_message(st, v, pos, request, out);
                break;
            case Phase::kHeaders:
                // Entered only with the whole rest of a segment buffered: pos is 0 here.
                pos = continue_headers(st, v, request, out);
                break;
            case Phase::kBody:
                pos = consume_body(st, v, pos, request, out);
                break;
            case Phase::kResync:
                // After lost boundaries a segment often starts inside a request line ("ET /a
                // HTTP/1.1" of a read that began one byte into "GET /a HTTP/1.1"): only a known
                // method resynchronises requests.
                if (pos == 0 && starts_message(v, request) &&
                    (!request || parse_start_line(v.head, v.cap, true).method != kOther)) {
                    st.phase = Phase::kStart;
                    break;
                }
                ++framing_.skipped_segments;
                return;
        }
    }
}

std::uint64_t Http1Connection::begin_message(Stream& st, const View& v, std::uint64_t pos,
                                             bool request, std::vector<Exchange>& out) {
    // Stray CRLFs between messages (RFC 9112 2.2) are skipped.
    while (pos < v.cap && (v.head[pos] == '\r' || v.head[pos] == '\n'))
        ++pos;
    if (pos >= v.len) return v.len;
    if (pos >= v.cap) {
        lose_sync(st, request);
        return v.len;
    }
    const std::uint8_t* d = v.head + pos;
    const std::size_t n = v.cap - static_cast<std::size_t>(pos);
    const StartLine line = parse_start_line(d, n, request);
    if (line.state == StartLine::State::kInvalid) {
        ++stats_.unparsed_segments;
        return v.len;
    }
    std::size_t scan = line.length;
    Framing framing;
    if (line.state == StartLine::State::kComplete) {
        const std::size_t end = scan_headers(d, n, scan, framing);
        if (end != kNpos) {  // the whole header block is visible: the hot path
            st.start_ns = v.first_ts;
            act_on_start_line(st, line, v.first_ts, request, out);
            set_framing(st, framing, v.ts, request, out);
            return pos + end;
        }
    }
    if (v.captured() && n <= kMaxHeaderBytes) {
        // Everything the syscall moved is here but the header block goes on in the next segment.
        st.phase = Phase::kHeaders;
        st.start_ns = v.first_ts;
        st.start_done = false;
        st.framing = framing;
        st.scan_from = scan;
        st.line_len = line.length;
        if (st.buf.capacity() < n)
            st.buf.reserve(std::min(kMaxHeaderBytes, std::max<std::size_t>(n, 512)));
        st.buf.assign(d, d + n);
        if (line.state == StartLine::State::kComplete) {
            act_on_start_line(st, line, v.first_ts, request, out);
            st.start_done = true;
        }
        return v.len;
    }
    if (line.state == StartLine::State::kComplete || line.usable) {
        // The end of the header block is in bytes we will never see.
        st.start_ns = v.first_ts;
        act_on_start_line(st, line, v.first_ts, request, out);
        give_up_headers(st, v.ts, request, out);
        return v.len;
    }
    // A start line cut before anything usable (a pipelined message at the very end of the head).
    lose_sync(st, request);
    return v.len;
}

std::uint64_t Http1Connection::continue_headers(Stream& st, const View& v, bool request,
                                                std::vector<Exchange>& out) {
    const std::size_t old = st.buf.size();
    const std::size_t take = std::min(v.cap, kMaxHeaderBytes - std::min(old, kMaxHeaderBytes));
    if (old + take > st.buf.capacity())
        st.buf.reserve(std::min(kMaxHeaderBytes, std::max(old + take, 2 * st.buf.capacity())));
    st.buf.insert(st.buf.end(), v.head, v.head + take);
    const std::uint8_t* d = st.buf.data();
    const std::size_t n = st.buf.size();

    StartLine line;
    if (st.start_done) {
        line.state = StartLine::State::kComplete;
        line.length = st.line_len;
    } else {
        line = parse_start_line(d, n, request);
        if (line.state == StartLine::State::kInvalid) {
            // What was buffered was not a message after all: count it and read this segment afresh.
            ++stats_.unparsed_segments;
            reset_stream(st, Phase::kStart);
            return 0;
        }
        if (line.state == StartLine::State::kComplete) {
            act_on_start_line(st, line, request ? st.start_ns : v.ts, request, out);
            st.start_done = true;
            st.line_len = line.length;
            st.scan_from = line.length;
        }
    }
    if (st.start_done) {
        const std::size_t end = scan_headers(d, n, st.scan_from, st.framing);
        if (end != kNpos) {
            const Framing framing = st.framing;
            const std::uint64_t consumed = end > old ? end - old : 0;
            st.buf.clear();
            st.start_done = false;
            set_framing(st, framing, v.ts, request, out);
            return consumed;
        }
    }
    if (v.captured() && st.buf.size() < kMaxHeaderBytes) return v.len;  // wait for more
    // Too large to reassemble, or the rest was not captured.
    st.buf.clear();
    if (st.start_done || line.usable) {
        if (!st.start_done) act_on_start_line(st, line, request ? st.start_ns : v.ts, request, out);
        st.start_done = false;
        give_up_headers(st, v.ts, request, out);
    } else {
        ++stats_.unparsed_segments;
        st.phase = Phase::kResync;
    }
    return v.len;
}

void Http1Connection::enqueue(const char* method, std::string path, std::uint64_t ts) {
    if (pending_requests() >= kMaxPending) {
        ++stats_.dropped_requests;
        if (dropped_tail_ != UINT32_MAX) ++dropped_tail_;
        return;
    }
    if (pending_head_ != 0 && pending_.size() == pending_.capacity()) {
        pending_.erase(pending_.begin(),
                       pending_.begin() + static_cast<std::ptrdiff_t>(pending_head_));
        pending_head_ = 0;
    }
    pending_.push_back(Pending{method, std::move(path), ts, dropped_tail_, {}});
    dropped_tail_ = 0;
}

// ts: for a request, the timestamp of its first segment; for a response, of the segment where
// its status line became known (the response cannot end before it).
void Http1Connection::act_on_start_line(Stream& st, const StartLine& line, std::uint64_t ts,
                                        bool request, std::vector<Exchange>& out) {
    seen_http_ = true;
    if (request) {
        // A response of unknown extent ends when the next request starts.
        if (responses_.phase == Phase::kBody &&
            (responses_.body == Body::kUntilClose || responses_.body == Body::kChunkedLost)) {
            finish_open_response(out);
            reset_stream(responses_, Phase::kResync);
        }
        enqueue(line.method, extract_path(line.target, line.target_len), ts);
        return;
    }
    st.status = line.status;
    if (line.status < 200 && line.status != 101) {
        ++framing_.interim_responses;
        return;
    }
    finish_open_response(out);  // defensive: a response still open ends where this one starts
    current_.active = true;
    current_.matched = false;
    current_.status = line.status;
    current_.last_ns = ts;
    if (pending_head_ < pending_.size()) {
        Pending& p = pending_[pending_head_];
        if (p.dropped_before > 0) {
            --p.dropped_before;  // the response of a request dropped from the queue
            return;
        }
        current_.matched = true;
        current_.method = p.method;
        current_.path = std::move(p.path);
        current_.start_ns = p.start_ns;
        current_.traceparent = p.traceparent;
        if (++pending_head_ == pending_.size()) {
            pending_.clear();
            pending_head_ = 0;
        }
    } else if (dropped_tail_ > 0) {
        --dropped_tail_;
    } else {
        ++stats_.unmatched_responses;
    }
}

bool Http1Connection::response_without_body(Stream& st, std::uint64_t ts,
                                            std::vector<Exchange>& out) {
    const int s = st.status;
    if (s < 200 && s != 101) {
        st.phase = Phase::kStart;  // interim: the final response follows
        return true;
    }
    const bool matched = current_.active && current_.matched;
    if (s == 101 || (matched && current_.method == kConnect && s >= 200 && s < 300)) {
        complete_response(ts, out);
        tunnel_ = true;  // the connection no longer speaks HTTP/1
        st.phase = Phase::kStart;
        return true;
    }
    if (s == 204 || s == 304 || (matched && current_.method == kHead)) {
        complete_response(ts, out);
        st.phase = Phase::kStart;
        return true;
    }
    return false;
}

void Http1Connection::set_framing(Stream& st, const Framing& f, std::uint64_t ts, bool request,
                                  std::vector<Exchange>& out) {
    st.body = Body::kNone;
    st.remaining = 0;
    // The request was queued at its start line; its headers are known now (not when dropped).
    if (request && f.traceparent.valid && pending_requests() > 0 && dropped_tail_ == 0)
        pending_.back().traceparent = f.traceparent;
    if (!request && response_without_body(st, ts, out)) return;
    if (f.has_te) {
        if (f.chunked) {
            st.body = Body::kChunked;
            st.chunk = Chunk::kSize;
            st.chunk_digits = false;
            st.phase = Phase::kBody;
        } else if (request) {
            ++framing_.desyncs;  // a request body whose end cannot be known
            st.phase = Phase::kResync;
        } else {
            st.body = Body::kUntilClose;
            st.phase = Phase::kBody;
        }
        return;
    }
    if (f.bad_length) {
        if (request) {
            ++framing_.desyncs;
            st.phase = Phase::kResync;
        } else {
            st.body = Body::kUntilClose;
            st.phase = Phase::kBody;
        }
        return;
    }
    if (f.has_length) {
        if (f.content_length == 0) {
            end_body(st, ts, request, out);
        } else {
            st.body = Body::kLength;
            st.remaining = f.content_length;
            st.phase = Phase::kBody;
        }
        return;
    }
    if (request) {
        st.phase = Phase::kStart;  // no body
    } else {
        st.body = Body::kUntilClose;  // close-delimited
        st.phase = Phase::kBody;
    }
}

void Http1Connection::give_up_headers(Stream& st, std::uint64_t ts, bool request,
                                      std::vector<Exchange>& out) {
    ++framing_.oversized_headers;
    ++stats_.unparsed_segments;
    st.buf.clear();
    st.body = Body::kNone;
    if (!request) {
        if (response_without_body(st, ts, out)) {
            st.phase = Phase::kResync;  // the rest of the header block is still to come
            return;
        }
        if (current_.active) {
            st.body = Body::kUntilClose;  // framing unknown: ends at the next message or close
            st.phase = Phase::kBody;
            abandon_pending();  // later responses may be hidden in the same uncaptured bytes
            return;
        }
    }
    st.phase = Phase::kResync;
}

void Http1Connection::lose_sync(Stream& st, bool request) {
    ++framing_.desyncs;
    reset_stream(st, Phase::kResync);
    if (!request) abandon_pending();
}

// Responses went by in bytes we could not frame: they answered the oldest pending requests, but
// how many is unknown. Pairing later responses with those requests could pair strangers, so they
// are given up (counted). Without pipelining nothing is pending here and nothing is lost.
void Http1Connection::abandon_pending() {
    framing_.abandoned_requests += pending_requests() + dropped_tail_;
    pending_.clear();
    pending_head_ = 0;
    dropped_tail_ = 0;
}

void Http1Connection::end_body(Stream& st, std::uint64_t ts, bool request,
                               std::vector<Exchange>& out) {
    st.body = Body::kNone;
    st.phase = Phase::kStart;
    if (!request) complete_response(ts, out);
}

void Http1Connection::complete_response(std::uint64_t end_ns, std::vector<Exchange>& out) {
    if (current_.active && current_.matched) {
        Exchange ex;
        ex.role = role_;
        ex.method = current_.method;
        ex.path = std::move(current_.path);
        ex.status = current_.status;
        ex.start_ns = current_.start_ns;
        ex.end_ns = end_ns;
        ex.traceparent = current_.traceparent;
        out.push_back(std::move(ex));
    }
    current_.active = false;
    current_.matched = false;
    current_.path.clear();
    current_.traceparent.valid = false;
}

void Http1Connection::finish_open_response(std::vector<Exchange>& out) {
    if (current_.active) complete_response(current_.last_ns, out);
}

namespace {

bool ends_with_last_chunk(const std::uint8_t* s, std::size_t n) {
    static constexpr std::uint8_t kLast[] = {'0', '\r', '\n', '\r', '\n'};
    if (n < 5 || std::memcmp(s + n - 5, kLast, 5) != 0) return false;
    return n == 5 || s[n - 6] == '\n';
}

}  // namespace

std::uint64_t Http1Connection::consume_body(Stream& st, const View& v, std::uint64_t pos,
                                            bool request, std::vector<Exchange>& out) {
    const std::uint64_t previous_last_ns = current_.last_ns;
    if (!request && current_.active) current_.last_ns = v.ts;
    switch (st.body) {
        case Body::kLength: {
            const std::uint64_t n = std::min(st.remaining, v.len - pos);
            st.remaining -= n;
            if (st.remaining == 0) end_body(st, v.ts, request, out);
            return pos + n;
        }
        case Body::kChunked:
            switch (run_chunks(st, v, pos)) {
                case ChunkResult::kDone:
                    end_body(st, v.ts, request, out);
                    return pos;
                case ChunkResult::kMore:
                    return v.len;
                case ChunkResult::kLost:
                    // A chunk-size line we cannot see (or cannot read): from now on the body
                    // ends at a segment whose data ends with the last chunk.
                    ++framing_.desyncs;
                    st.body = Body::kChunkedLost;
                    st.suffix_len = 0;
                    if (!request) abandon_pending();
                    break;
            }
            [[fallthrough]];
        case Body::kChunkedLost:
        case Body::kUntilClose:
            if (pos == 0 && starts_message(v, request)) {
                // The previous message ended, unseen, with the previous segment.
                if (!request) {
                    current_.last_ns = previous_last_ns;
                    finish_open_response(out);
                }
                st.body = Body::kNone;
                st.phase = Phase::kStart;
                return 0;
            }
            if (st.body == Body::kChunkedLost && track_last_chunk(st, v, pos))
                end_body(st, v.ts, request, out);
            return v.len;
        case Body::kNone:
            break;
    }
    st.phase = Phase::kStart;
    return pos;
}

// Chunked framing over the visible bytes; chunk data is skipped by count, visible or not.
// Advances `pos` to the first byte after the body (kDone), to the end of the segment (kMore), or
// to the byte that could not be read (kLost).
Http1Connection::ChunkResult Http1Connection::run_chunks(Stream& st, const View& v,
                                                         std::uint64_t& pos) {
    while (pos < v.len) {
        if (st.chunk == Chunk::kData) {
            const std::uint64_t n = std::min(st.remaining, v.len - pos);
            st.remaining -= n;
            pos += n;
            if (st.remaining == 0) st.chunk = Chunk::kDataCr;
            continue;
        }
        std::uint8_t c = 0;
        if (!v.byte_at(pos, c)) return ChunkResult::kLost;
        switch (st.chunk) {
            case Chunk::kSize: {
                const int h = hex_value(c);
                if (h >= 0) {
                    if (st.remaining >> 56) return ChunkResult::kLost;
                    st.remaining = st.remaining * 16 + static_cast<std::uint64_t>(h);
                    st.chunk_digits = true;
                    break;
                }
                if (!st.chunk_digits) return ChunkResult::kLost;
                st.chunk = Chunk::kSizeExt;
                [[fallthrough]];
            }
            case Chunk::kSizeExt:
                if (c == '\n') {
                    st.chunk_digits = false;
                    st.chunk = st.remaining == 0 ? Chunk::kTrailerStart : Chunk::kData;
                }
                break;
            case Chunk::kDataCr:
                if (c == '\r')
                    st.chunk = Chunk::kDataLf;
                else if (c == '\n')
                    st.chunk = Chunk::kSize;
                else
                    return ChunkResult::kLost;
                break;
            case Chunk::kDataLf:
                if (c != '\n') return ChunkResult::kLost;
                st.chunk = Chunk::kSize;
                break;
            case Chunk::kTrailerStart:
                if (c == '\n') {
                    ++pos;
                    return ChunkResult::kDone;
                }
                st.chunk = c == '\r' ? Chunk::kTrailerEndLf : Chunk::kTrailerLine;
                break;
            case Chunk::kTrailerLine:
                if (c == '\n') st.chunk = Chunk::kTrailerStart;
                break;
            case Chunk::kTrailerEndLf:
                if (c != '\n') return ChunkResult::kLost;
                ++pos;
                return ChunkResult::kDone;
            case Chunk::kData:
                break;
        }
        ++pos;
    }
    return ChunkResult::kMore;
}

// kChunkedLost: keeps the last bytes of the stream, as far as they are known, and tells whether
// the data [pos, len) of this segment ends the body with the last chunk "0\r\n\r\n".
bool Http1Connection::track_last_chunk(Stream& st, const View& v, std::uint64_t pos) {
    const std::uint8_t* run = nullptr;
    std::size_t run_len = 0;
    bool contiguous = false;  // the run continues the stream right after the previous suffix
    if (v.captured()) {
        run = v.head + pos;
        run_len = static_cast<std::size_t>(v.len - pos);
        contiguous = true;
    } else if (v.tail_len != 0) {
        const std::uint64_t tail_start = v.len - v.tail_len;
        const std::uint64_t from = std::max(tail_start, pos);
        run = v.tail + (from - tail_start);
        run_len = static_cast<std::size_t>(v.len - from);
        contiguous = from == pos;
    }
    constexpr std::size_t kKeep = sizeof(st.suffix);
    std::uint8_t joined[kKeep * 2];
    std::size_t n = 0;
    if (contiguous && run_len < kKeep) {
        std::memcpy(joined, st.suffix, st.suffix_len);
        n = st.suffix_len;
    }
    const std::size_t take = std::min(run_len, kKeep);
    if (take != 0) std::memcpy(joined + n, run + (run_len - take), take);
    n += take;
    const std::size_t keep = std::min(n, kKeep);
    std::memcpy(st.suffix, joined + (n - keep), keep);
    st.suffix_len = static_cast<std::uint8_t>(keep);
    return ends_with_last_chunk(st.suffix, keep);
}

void Http1Connection::on_close(std::uint64_t timestamp_ns, std::vector<Exchange>& out) {
    // A response in progress (close-delimited, unknown framing, or cut short) ends with its last
    // segment; requests still waiting were never answered.
    finish_open_response(out);
    for (std::size_t i = pending_head_; i < pending_.size(); ++i) {
        Pending& p = pending_[i];
        Exchange ex;
        ex.role = role_;
        ex.method = p.method;
        ex.path = std::move(p.path);
        ex.status = 0;
        ex.start_ns = p.start_ns;
        ex.end_ns = timestamp_ns;
        ex.traceparent = p.traceparent;
        out.push_back(std::move(ex));
    }
    pending_.clear();
    pending_head_ = 0;
    dropped_tail_ = 0;
    tunnel_ = false;
    current_ = Current{};
    const Phase phase = role_ == Role::kUnknown ? Phase::kResync : Phase::kStart;
    reset_stream(requests_, phase);
    reset_stream(responses_, phase);
}

}  // namespace loupe::http1
