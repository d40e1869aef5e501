#include "protocols/postgres/messages.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace loupe::postgres {
namespace {

constexpr std::array<bool, 256> type_table(std::string_view types) {
    std::array<bool, 256> t{};
    for (const char c : types)
        t[static_cast<unsigned char>(c)] = true;
    return t;
}

// Bind, Close, Describe, Execute, FunctionCall, Flush, Parse, Query, Sync, Terminate, CopyDone,
// CopyData, CopyFail, and 'p' (password, SASL and GSS responses).
constexpr auto kFrontendTypes = type_table("BCDEFHPQSXcdfp");
// ParseComplete, BindComplete, CloseComplete, NotificationResponse, CommandComplete, DataRow,
// ErrorResponse, CopyInResponse, CopyOutResponse, EmptyQueryResponse, BackendKeyData,
// NoticeResponse, Authentication*, ParameterStatus, RowDescription, FunctionCallResponse,
// CopyBothResponse, ReadyForQuery, CopyDone, CopyData, NoData, PortalSuspended,
// ParameterDescription, NegotiateProtocolVersion.
constexpr auto kBackendTypes = type_table("123ACDEGHIKNRSTVWZcdnstv");

}  // namespace

std::uint32_t read_be32(const std::uint8_t* d) noexcept {
    return (std::uint32_t{d[0]} << 24) | (std::uint32_t{d[1]} << 16) | (std::uint32_t{d[2]} << 8) |
           std::uint32_t{d[3]};
}

bool is_frontend_type(std::uint8_t type) noexcept {
    return kFrontendTypes[type];
}

bool is_backend_type(std::uint8_t type) noexcept {
    return kBackendTypes[type];
}

bool starts_typed_message(const std::uint8_t* d, std::size_t n, bool frontend) noexcept {
    if (n < 5) return false;
    if (!(frontend ? is_frontend_type(d[0]) : is_backend_type(d[0]))) return false;
    const std::uint32_t length = read_be32(d + 1);
    return length >= 4 && length <= kMaxMessageLength;
}

bool starts_startup_message(const std::uint8_t* d, std::size_t n) noexcept {
    if (n < 8) return false;
    const std::uint32_t length = read_be32(d);
    const std::uint32_t code = read_be32(d + 4);
    if (code == kSslRequestCode || code == kGssEncRequestCode) return length == 8;
    if (code == kCancelRequestCode) return length == 16;
    return (code >> 16) == 3 && length > 8 && length <= kMaxStartupLength;
}

std::string_view c_string(std::string_view body, std::size_t& at) noexcept {
    if (at >= body.size()) {
        at = body.size();
        return {};
    }
    const std::size_t end = body.find('\0', at);
    const std::size_t stop = end == std::string_view::npos ? body.size() : end;
    const std::string_view s = body.substr(at, stop - at);
    at = end == std::string_view::npos ? body.size() : end + 1;
    return s;
}

std::string_view error_sqlstate(std::string_view body) noexcept {
    std::size_t at = 0;
    while (at < body.size() && body[at] != '\0') {
        const char field = body[at++];
        const std::string_view value = c_string(body, at);
        if (field != 'C') continue;
        if (value.size() != 5) return {};
        for (const char c : value)
            if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))) return {};
        return value;
    }
    return {};
}

std::size_t MessageReader::keep_for(char type) const noexcept {
    if (frontend_) {
        switch (type) {
            case 0:
                return kMaxStartupLength;  // StartupMessage: the database parameter
            case 'Q':
            case 'P':
                return kMaxSqlBytes;
            case 'B':
                return 2 * 64 + 2;  // portal and statement names (NAMEDATALEN 64)
            case 'E':
            case 'C':
            case 'D':
                return 64 + 2;
            default:
                return 0;
        }
    }
    switch (type) {
        case 'C':
            return 64;  // the command tag
        case 'E':
            return 256;  // severity, SQLSTATE: the first fields
        default:
            return 0;
    }
}

void MessageReader::reset() noexcept {
    framing_ = Framing::kTyped;
    in_body_ = false;
    header_have_ = 0;
    body_left_ = 0;
    gap_ = false;
    body_.clear();
}

MessageReader::Result MessageReader::fail(Result r) noexcept {
    in_body_ = false;
    header_have_ = 0;
    body_left_ = 0;
    return r;
}

MessageReader::Result MessageReader::next(const View& v, std::uint64_t& pos) {
    for (;;) {
        if (!in_body_) {
            const std::size_t need = framing_ == Framing::kTyped     ? 5
                                     : framing_ == Framing::kStartup ? 8
                                                                     : 1;
            while (header_have_ < need) {
                if (pos >= v.len) return Result::kNeedMore;
                const std::uint8_t* run = nullptr;
                const std::size_t n = v.visible(pos, run);
                if (n == 0) return fail(Result::kLost);
                if (header_have_ == 0) message_.start_ns = v.first_ts;
                const std::size_t c = std::min<std::size_t>(n, need - header_have_);
                std::memcpy(header_ + header_have_, run, c);
                header_have_ = static_cast<std::uint8_t>(header_have_ + c);
                pos += c;
            }
            message_.answer = false;
            message_.code = 0;
            if (framing_ == Framing::kSslReply) {
                const char b = static_cast<char>(header_[0]);
                if (b == 'S' || b == 'N' || b == 'G') {
                    header_have_ = 0;
                    message_.type = b;
                    message_.answer = true;
                    message_.length = 0;
                    message_.body = {};
                    message_.truncated = false;
                    message_.end_ns = v.ts;
                    framing_ = Framing::kTyped;
                    return Result::kMessage;
                }
                framing_ = Framing::kTyped;  // an old server's ErrorResponse: read it whole
                continue;
            }
            std::uint64_t body_length = 0;
            if (framing_ == Framing::kTyped) {
                if (!starts_typed_message(header_, 5, frontend_)) return fail(Result::kInvalid);
                message_.type = static_cast<char>(header_[0]);
                body_length = read_be32(header_ + 1) - 4;
            } else {
                if (!starts_startup_message(header_, 8)) return fail(Result::kInvalid);
                message_.type = 0;
                message_.code = read_be32(header_ + 4);
                body_length = read_be32(header_) - 8;
            }
            message_.length = body_length;
            body_left_ = body_length;
            keep_ = keep_for(message_.type);
            gap_ = false;
            body_.clear();
            in_body_ = true;
        }
        while (body_left_ > 0) {
            if (pos >= v.len) return Result::kNeedMore;
            const std::uint8_t* run = nullptr;
            const std::size_t n = v.visible(pos, run);
            if (n == 0) {
                // Bytes never captured inside a body: counted, not needed.
                const std::uint64_t skip = std::min(v.hidden(pos), body_left_);
                pos += skip;
                body_left_ -= skip;
                gap_ = true;
                continue;
            }
            const std::size_t c = static_cast<std::size_t>(std::min<std::uint64_t>(n, body_left_));
            if (!gap_ && body_.size() < keep_)
                body_.append(reinterpret_cast<const char*>(run), std::min(c, keep_ - body_.size()));
            pos += c;
            body_left_ -= c;
        }
        in_body_ = false;
        header_have_ = 0;
        message_.body = body_;
        message_.truncated = gap_ || message_.length > body_.size();
        message_.end_ns = v.ts;
        return Result::kMessage;
    }
}

}  // namespace loupe::postgres
