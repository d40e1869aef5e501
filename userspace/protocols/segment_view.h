// A segment as a byte stream with holes, for parsers that skip messages by their length (Redis
// and the SQL protocols): its first bytes (head), its last bytes (tail) and the bytes between that
// were never captured.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "protocols/protocol.h"

namespace loupe::protocols {

// One read or write as positions in its connection's byte stream: [0, cap) visible in head,
// [len - tail_len, len) visible in tail, the rest only counted.
struct SegmentView {
    const std::uint8_t* head = nullptr;
    std::size_t cap = 0;
    std::uint64_t len = 0;
    const std::uint8_t* tail = nullptr;
    std::size_t tail_len = 0;
    std::uint64_t ts = 0;        // when its last bytes moved: messages end then
    std::uint64_t first_ts = 0;  // when its first bytes moved: messages start then

    explicit SegmentView(const Segment& s) noexcept
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

    // Bytes wholly captured (e.g. reassembled), moved between first and last.
    SegmentView(std::span<const std::uint8_t> bytes, std::uint64_t first,
                std::uint64_t last) noexcept
        : head(bytes.data()),
          cap(bytes.size()),
          len(bytes.size()),
          ts(last),
          first_ts(first != 0 && first < last ? first : last) {}

    bool captured() const noexcept { return cap == len; }

    // The visible bytes from p on: their count (0 when p lies in bytes never seen) and where.
    std::size_t visible(std::uint64_t p, const std::uint8_t*& run) const noexcept {
        if (p < cap) {
            run = head + p;
            return cap - static_cast<std::size_t>(p);
        }
        if (tail_len != 0 && p >= len - tail_len && p < len) {
            run = tail + (p - (len - tail_len));
            return static_cast<std::size_t>(len - p);
        }
        return 0;
    }

    // The bytes never seen from p on, up to the next visible byte or the end.
    std::uint64_t hidden(std::uint64_t p) const noexcept {
        if (p < cap) return 0;
        const std::uint64_t tail_start = len - tail_len;
        return p < tail_start ? tail_start - p : 0;
    }
};

}  // namespace loupe::protocols
