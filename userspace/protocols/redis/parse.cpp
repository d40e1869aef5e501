#include "protocols/redis/parse.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "protocols/redis/commands.h"

namespace loupe::redis {
namespace {

constexpr bool is_digit(std::uint8_t c) noexcept {
    return c >= '0' && c <= '9';
}

constexpr bool is_letter(std::uint8_t c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

constexpr std::array<bool, 256> kTokenStart = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c)
        t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c)
        t[static_cast<std::size_t>(c)] = t[static_cast<std::size_t>(c - 'a' + 'A')] = true;
    for (const char c : std::string_view("-_.:"))
        t[static_cast<unsigned char>(c)] = true;
    return t;
}();

constexpr std::array<bool, 256> kReplyType = [] {
    std::array<bool, 256> t{};
    for (const char c : std::string_view("+-:$*%~>|_#,(!="))
        t[static_cast<unsigned char>(c)] = true;
    return t;
}();

// RESP integer: optional sign, 1 to 19 digits.
bool parse_int(const std::uint8_t* d, std::size_t n, std::int64_t& out) noexcept {
    std::size_t i = 0;
    bool negative = false;
    if (n > 0 && (d[0] == '-' || d[0] == '+')) {
        negative = d[0] == '-';
        i = 1;
    }
    if (i == n || n - i > 19) return false;
    std::uint64_t v = 0;
    for (; i < n; ++i) {
        if (!is_digit(d[i])) return false;
        v = v * 10 + (d[i] - '0');
    }
    if (v > static_cast<std::uint64_t>(INT64_MAX)) return false;
    out = negative ? -static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v);
    return true;
}

bool valid_double(const std::uint8_t* d, std::size_t n) noexcept {
    if (n == 0 || n > 64) return false;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t c = d[i];
        if (!(is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || c == 'i' ||
              c == 'n' || c == 'f' || c == 'a'))
            return false;
    }
    return true;
}

void set_text(Text& t, const std::uint8_t* d, std::size_t n, bool truncated) noexcept {
    const std::size_t c = std::min(n, Text::kCapacity);
    std::memcpy(t.bytes.data(), d, c);
    t.size = static_cast<std::uint8_t>(c);
    t.partial = truncated || n > Text::kCapacity;
}

// Reads "<digits>\r\n" at d[i...]: kYes with value and i past the LF, kPrefix when d ends first.
Probe probe_number(const std::uint8_t* d, std::size_t n, std::size_t& i, std::size_t max_digits,
                   std::uint64_t& value) noexcept {
    const std::size_t first = i;
    value = 0;
    while (i < n && is_digit(d[i])) {
        if (i - first >= max_digits) return Probe::kNo;
        value = value * 10 + (d[i] - '0');
        ++i;
    }
    if (i == n) return Probe::kPrefix;
    if (i == first || d[i] != '\r') return Probe::kNo;
    if (++i == n) return Probe::kPrefix;
    if (d[i] != '\n') return Probe::kNo;
    ++i;
    return Probe::kYes;
}

}  // namespace

bool RespReader::has_partial_command() const noexcept {
    return mode_ == Mode::kCommands && open_ && top_.type == '*' && !elements_.empty() &&
           elements_[0].text.size > 0 && !elements_[0].text.partial;
}

void RespReader::reset() noexcept {
    state_ = State::kType;
    open_ = false;
    after_attribute_ = false;
    attributes_open_ = 0;
    levels_.clear();
    line_size_ = 0;
    line_total_ = 0;
    bulk_left_ = 0;
    bulk_len_ = 0;
    bulk_text_ = nullptr;
    inline_total_ = 0;
    inline_in_word_ = false;
    inline_quote_ = 0;
    elements_.clear();
}

std::size_t RespReader::memory_bytes() const noexcept {
    return levels_.capacity() * sizeof(Level) + elements_.capacity() * sizeof(Value);
}

RespReader::Result RespReader::fail(Result r) noexcept {
    failed_at_boundary_ = state_ == State::kType && levels_.empty() && !after_attribute_;
    return r;
}

void RespReader::start_message(const View& v) noexcept {
    open_ = true;
    after_attribute_ = false;
    start_ns_ = v.first_ts;
    keep_ = keep_next_;
    // An EXEC of many commands may have grown the summaries: give that memory back.
    if (elements_.capacity() > 64 && keep_ <= 64) std::vector<Value>().swap(elements_);
    elements_.clear();
    top_ = Value{};
}

void RespReader::begin_value(char type) noexcept {
    if (attributes_open_ > 0) return;
    switch (levels_.size()) {
        case 0:
            top_ = Value{};
            top_.type = type;
            elements_.clear();  // a top-level attribute may have come first
            break;
        case 1:
            element_ = Value{};
            element_.type = type;
            break;
        case 2:
            deep_null_ = false;
            break;
        default:
            break;
    }
}

Value* RespReader::current() noexcept {
    if (attributes_open_ > 0) return nullptr;
    if (levels_.empty()) return &top_;
    if (levels_.size() == 1) return &element_;
    return nullptr;
}

void RespReader::set_null() noexcept {
    if (attributes_open_ > 0) return;
    if (levels_.size() == 2)
        deep_null_ = true;
    else if (Value* c = current())
        c->null = true;
}

bool RespReader::capture_text() const noexcept {
    if (attributes_open_ > 0) return false;
    return levels_.empty() || (levels_.size() == 1 && elements_.size() < keep_);
}

RespReader::Step RespReader::finish_value(const View& v) {
    for (;;) {
        if (levels_.empty()) {
            end_ns_ = v.ts;
            open_ = false;
            state_ = State::kType;
            return Step::kMessage;
        }
        if (attributes_open_ == 0) {
            if (levels_.size() == 1) {
                if (element_.null) ++top_.null_elements;
                if (elements_.size() < keep_) {
                    if (elements_.capacity() == 0) elements_.reserve(4);
                    elements_.push_back(element_);
                }
            } else if (levels_.size() == 2 && deep_null_) {
                ++element_.null_elements;
            }
        }
        Level& parent = levels_.back();
        if (--parent.remaining > 0) {
            state_ = State::kType;
            return Step::kContinue;
        }
        const bool attribute = parent.attribute;
        levels_.pop_back();
        if (attribute) {
            // An attribute describes the value after it and is no element of its parent.
            --attributes_open_;
            if (levels_.empty()) after_attribute_ = true;
            state_ = State::kType;
            return Step::kContinue;
        }
        deep_null_ = false;  // the aggregate just completed, a value of its own, is not null
    }
}

RespReader::Step RespReader::begin_aggregate(char type, std::int64_t count, const View& v) {
    if (count == -1) {
        if (type == '|') return Step::kInvalid;
        if (mode_ == Mode::kCommands) {  // "*-1\r\n": Redis ignores it
            open_ = false;
            return Step::kContinue;
        }
        begin_value(type);
        set_null();
        return finish_value(v);
    }
    if (mode_ == Mode::kCommands && count == 0) {  // "*0\r\n": likewise
        open_ = false;
        return Step::kContinue;
    }
    const std::uint64_t elements =
        static_cast<std::uint64_t>(count) * ((type == '%' || type == '|') ? 2 : 1);
    if (type == '|') {
        if (mode_ == Mode::kCommands) return Step::kInvalid;
        if (elements == 0) {
            if (levels_.empty()) after_attribute_ = true;
            return Step::kContinue;
        }
        if (levels_.size() >= kMaxDepth) return Step::kInvalid;
        if (levels_.capacity() == 0) levels_.reserve(4);
        levels_.push_back(Level{elements, true});
        ++attributes_open_;
        return Step::kContinue;
    }
    begin_value(type);
    if (Value* c = current()) c->integer = count;
    if (elements == 0) return finish_value(v);
    if (levels_.size() >= kMaxDepth) return Step::kInvalid;
    if (levels_.capacity() == 0) levels_.reserve(4);
    levels_.push_back(Level{elements, false});
    return Step::kContinue;
}

RespReader::Step RespReader::on_line(char type, const std::uint8_t* d, std::size_t n,
                                     bool truncated, const View& v) {
    switch (type) {
        case '+':
        case '-': {
            begin_value(type);
            if (Value* c = current()) set_text(c->text, d, n, truncated);
            return finish_value(v);
        }
        case ':': {
            std::int64_t x = 0;
            if (truncated || !parse_int(d, n, x)) return Step::kInvalid;
            begin_value(type);
            if (Value* c = current()) c->integer = x;
            return finish_value(v);
        }
        case '$':
        case '!':
        case '=': {
            std::int64_t len = 0;
            if (truncated || !parse_int(d, n, len) || len < -1 || len > kMaxLength)
                return Step::kInvalid;
            if (len == -1) {
                if (mode_ == Mode::kCommands) return Step::kInvalid;
                begin_value(type);
                set_null();
                return finish_value(v);
            }
            begin_value(type);
            Value* c = current();
            if (c != nullptr) {
                c->integer = len;
                c->text.partial = len > static_cast<std::int64_t>(Text::kCapacity);
            }
            bulk_len_ = static_cast<std::uint64_t>(len);
            bulk_left_ = bulk_len_ + 2;
            bulk_text_ = c != nullptr && capture_text() ? &c->text : nullptr;
            state_ = State::kBulk;
            return Step::kContinue;
        }
        case '*':
        case '%':
        case '~':
        case '>':
        case '|': {
            std::int64_t count = 0;
            if (truncated || !parse_int(d, n, count) || count < -1 || count > kMaxLength)
                return Step::kInvalid;
            return begin_aggregate(type, count, v);
        }
        case '_':
            if (n != 0) return Step::kInvalid;
            begin_value(type);
            set_null();
            return finish_value(v);
        case '#':
            if (n != 1 || (d[0] != 't' && d[0] != 'f')) return Step::kInvalid;
            begin_value(type);
            if (Value* c = current()) c->integer = d[0] == 't';
            return finish_value(v);
        case ',':
            if (truncated || !valid_double(d, n)) return Step::kInvalid;
            begin_value(type);
            return finish_value(v);
        case '(': {
            std::size_t i = (n > 0 && d[0] == '-') ? 1 : 0;
            if (truncated || i == n) return Step::kInvalid;
            for (; i < n; ++i)
                if (!is_digit(d[i])) return Step::kInvalid;
            begin_value(type);
            return finish_value(v);
        }
        default:
            return Step::kInvalid;
    }
}

// Words of an inline command line, as Redis splits them (quotes simplified): the first
// kDefaultKeep are kept as elements, all are counted in top_.integer.
RespReader::Step RespReader::inline_bytes(const std::uint8_t* run, std::size_t n, bool& done,
                                          std::size_t& used) {
    done = false;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t c = run[i];
        if (c == '\n') {
            done = true;
            used = i + 1;
            inline_in_word_ = false;
            return Step::kContinue;
        }
        ++inline_total_;
        if (inline_quote_ == 0 && (c == ' ' || c == '\t' || c == '\r')) {
            inline_in_word_ = false;
            continue;
        }
        if (!inline_in_word_) {
            if (top_.integer == 0 && !kTokenStart[c]) return Step::kInvalid;
            inline_in_word_ = true;
            ++top_.integer;
            if (elements_.size() < kDefaultKeep) {
                if (elements_.capacity() == 0) elements_.reserve(4);
                elements_.push_back(Value{});
                elements_.back().type = '$';
            }
            if (c == '"' || c == '\'') {
                inline_quote_ = static_cast<char>(c);
                continue;
            }
        } else if (inline_quote_ != 0 && c == static_cast<std::uint8_t>(inline_quote_)) {
            inline_quote_ = 0;
            continue;
        }
        if (elements_.size() == static_cast<std::size_t>(top_.integer)) {
            Text& t = elements_.back().text;
            if (t.size < Text::kCapacity)
                t.bytes[t.size++] = static_cast<char>(c);
            else
                t.partial = true;
        }
    }
    used = n;
    return Step::kContinue;
}

RespReader::Result RespReader::next(const View& v, std::uint64_t& pos) {
    while (pos < v.len) {
        const std::uint8_t* run = nullptr;
        const std::size_t n = v.visible(pos, run);
        switch (state_) {
            case State::kType: {
                if (n == 0) return fail(Result::kLost);
                const std::uint8_t type = run[0];
                if (mode_ == Mode::kCommands) {
                    if (levels_.empty() && type != '*') {
                        // An inline command, or blank lines between commands.
                        if (!(kTokenStart[type] || type == ' ' || type == '\t' || type == '\r' ||
                              type == '\n'))
                            return fail(Result::kInvalid);
                        if (!open_) start_message(v);
                        top_.type = 'i';
                        inline_total_ = 0;
                        inline_in_word_ = false;
                        inline_quote_ = 0;
                        state_ = State::kInline;
                        break;
                    }
                    if (!levels_.empty() && type != '$') return fail(Result::kInvalid);
                } else if (!kReplyType[type]) {
                    return fail(Result::kInvalid);
                }
                if (!open_) start_message(v);
                // The whole type line is visible: the hot path.
                const std::size_t scan =
                    static_cast<std::size_t>(std::min<std::uint64_t>(n, kMaxLineBytes + 2));
                const void* lf = scan > 1 ? std::memchr(run + 1, '\n', scan - 1) : nullptr;
                if (lf != nullptr) {
                    const auto* end = static_cast<const std::uint8_t*>(lf);
                    const std::size_t line = static_cast<std::size_t>(end - (run + 1));
                    if (line == 0 || end[-1] != '\r') return fail(Result::kInvalid);
                    pos += line + 2;
                    const Step s = on_line(static_cast<char>(type), run + 1, line - 1, false, v);
                    if (s == Step::kMessage) return Result::kMessage;
                    if (s == Step::kInvalid) return fail(Result::kInvalid);
                    break;
                }
                if (n > kMaxLineBytes) return fail(Result::kInvalid);
                line_type_ = static_cast<char>(type);
                line_total_ = n - 1;
                line_size_ = static_cast<std::uint8_t>(std::min(n - 1, kLineKeep));
                std::memcpy(line_, run + 1, line_size_);
                line_last_ = n > 1 ? run[n - 1] : 0;
                pos += n;
                state_ = State::kLine;
                break;
            }
            case State::kLine: {
                if (n == 0) return fail(Result::kLost);
                const void* lf = std::memchr(run, '\n', n);
                const std::size_t take =
                    lf != nullptr
                        ? static_cast<std::size_t>(static_cast<const std::uint8_t*>(lf) - run)
                        : n;
                if (take > 0) {
                    const std::size_t keep = std::min(take, kLineKeep - line_size_);
                    std::memcpy(line_ + line_size_, run, keep);
                    line_size_ = static_cast<std::uint8_t>(line_size_ + keep);
                    line_total_ += take;
                    line_last_ = run[take - 1];
                }
                pos += take;
                if (line_total_ > kMaxLineBytes) return fail(Result::kInvalid);
                if (lf == nullptr) break;
                ++pos;
                if (line_total_ == 0 || line_last_ != '\r') return fail(Result::kInvalid);
                state_ = State::kType;
                const std::size_t content = static_cast<std::size_t>(line_total_ - 1);
                const Step s =
                    on_line(line_type_, line_, std::min<std::size_t>(content, line_size_),
                            content > line_size_, v);
                if (s == Step::kMessage) return Result::kMessage;
                if (s == Step::kInvalid) return fail(Result::kInvalid);
                break;
            }
            case State::kBulk: {
                if (bulk_left_ > 2) {
                    const std::uint64_t payload_left = bulk_left_ - 2;
                    const std::uint64_t offset = bulk_len_ - payload_left;
                    std::uint64_t take = 0;
                    if (n == 0) {
                        take = std::min(v.hidden(pos), payload_left);
                        if (bulk_text_ != nullptr && offset < Text::kCapacity)
                            bulk_text_->partial = true;
                    } else {
                        take = std::min<std::uint64_t>(n, payload_left);
                        if (bulk_text_ != nullptr && offset < Text::kCapacity) {
                            if (offset == bulk_text_->size) {
                                const std::size_t c = static_cast<std::size_t>(
                                    std::min<std::uint64_t>(take, Text::kCapacity - offset));
                                std::memcpy(bulk_text_->bytes.data() + offset, run, c);
                                bulk_text_->size = static_cast<std::uint8_t>(offset + c);
                            } else {
                                bulk_text_->partial = true;  // a hole before these bytes
                            }
                        }
                    }
                    pos += take;
                    bulk_left_ -= take;
                    break;
                }
                if (n > 0) {
                    if (run[0] != (bulk_left_ == 2 ? '\r' : '\n')) return fail(Result::kInvalid);
                    if (bulk_left_ == 2 && n > 1) {
                        if (run[1] != '\n') return fail(Result::kInvalid);
                        ++pos;
                        --bulk_left_;
                    }
                }
                ++pos;
                --bulk_left_;
                if (bulk_left_ > 0) break;
                bulk_text_ = nullptr;
                state_ = State::kType;
                const Step s = finish_value(v);
                if (s == Step::kMessage) return Result::kMessage;
                if (s == Step::kInvalid) return fail(Result::kInvalid);
                break;
            }
            case State::kInline: {
                if (n == 0) return fail(Result::kLost);
                bool done = false;
                std::size_t used = 0;
                if (inline_bytes(run, n, done, used) == Step::kInvalid)
                    return fail(Result::kInvalid);
                pos += used;
                if (inline_total_ > kMaxLineBytes) return fail(Result::kInvalid);
                if (!done) break;
                state_ = State::kType;
                if (top_.integer == 0) {  // a blank line: Redis skips it
                    open_ = false;
                    break;
                }
                end_ns_ = v.ts;
                open_ = false;
                return Result::kMessage;
            }
        }
    }
    return Result::kNeedMore;
}

Probe starts_command(const std::uint8_t* d, std::size_t n, bool known_only) noexcept {
    if (n == 0) return Probe::kNo;
    if (d[0] == '*') {
        std::size_t i = 1;
        std::uint64_t count = 0;
        Probe p = probe_number(d, n, i, 10, count);
        if (p != Probe::kYes) return p;
        if (count == 0 || count > INT32_MAX) return Probe::kNo;
        if (i == n) return Probe::kPrefix;
        if (d[i++] != '$') return Probe::kNo;
        std::uint64_t m = 0;
        p = probe_number(d, n, i, 2, m);
        if (p != Probe::kYes) return p;
        if (m == 0 || m > Text::kCapacity) return Probe::kNo;
        const std::size_t visible = std::min<std::size_t>(n - i, static_cast<std::size_t>(m));
        const std::string_view name(reinterpret_cast<const char*>(d + i), visible);
        if (visible < m)
            return is_command_token(name) || name.empty() ? Probe::kPrefix : Probe::kNo;
        if (!is_command_token(name)) return Probe::kNo;
        if (known_only && find_command(name) == nullptr) return Probe::kNo;
        i += visible;
        if (i == n) return Probe::kPrefix;
        if (d[i++] != '\r') return Probe::kNo;
        if (i == n) return Probe::kPrefix;
        return d[i] == '\n' ? Probe::kYes : Probe::kNo;
    }
    if (!is_letter(d[0])) return Probe::kNo;
    std::size_t i = 0;
    while (i < n && i <= Text::kCapacity && kTokenStart[d[i]])
        ++i;
    if (i > Text::kCapacity) return Probe::kNo;
    if (i == n) return Probe::kPrefix;
    if (d[i] != ' ' && d[i] != '\t' && d[i] != '\r' && d[i] != '\n') return Probe::kNo;
    if (find_command({reinterpret_cast<const char*>(d), i}) == nullptr) return Probe::kNo;
    // "GET / HTTP/1.1" is HTTP, not an inline GET.
    const auto* lf = static_cast<const std::uint8_t*>(std::memchr(d + i, '\n', n - i));
    const std::string_view line(reinterpret_cast<const char*>(d + i),
                                static_cast<std::size_t>((lf != nullptr ? lf : d + n) - (d + i)));
    return line.find(" HTTP/") == std::string_view::npos ? Probe::kYes : Probe::kNo;
}

bool starts_reply(const std::uint8_t* d, std::size_t n) noexcept {
    if (n < 3 || !kReplyType[d[0]]) return false;
    const void* lf = std::memchr(d + 1, '\n', n - 1);
    if (lf == nullptr) return false;
    const auto* end = static_cast<const std::uint8_t*>(lf);
    if (end == d + 1 || end[-1] != '\r') return false;
    const std::uint8_t* c = d + 1;
    const std::size_t len = static_cast<std::size_t>(end - 1 - c);
    std::int64_t x = 0;
    switch (d[0]) {
        case '+':
            return true;
        case '-':
            return len > 0 && d[1] >= 'A' && d[1] <= 'Z';
        case ':':
            return parse_int(c, len, x);
        case '$':
        case '!':
        case '=':
        case '*':
        case '%':
        case '~':
        case '>':
        case '|':
            return parse_int(c, len, x) && x >= -1 && x <= RespReader::kMaxLength;
        case '_':
            return len == 0;
        case '#':
            return len == 1 && (c[0] == 't' || c[0] == 'f');
        case ',':
            return valid_double(c, len);
        case '(':
            return len > 0 && parse_int(c, std::min<std::size_t>(len, 19), x);
        default:
            return false;
    }
}

}  // namespace loupe::redis
