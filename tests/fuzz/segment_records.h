// The input format shared by the protocol parsers' fuzzers: one connection's segments (and
// closes), decoded from libFuzzer's bytes.
//
// Input: byte 0 = side hint (the caller takes it), then records separated by a separator byte;
// each record is one control byte followed by the segment's data (so plain protocol text makes
// readable seeds):
//   ctrl == 0xFF           on_close
//   bit 0                  direction (0 ingress, 1 egress)
//   bits 1-2               0: captured with a small head (first `head` bytes, last `tail` bytes)
//                          1: `data` with uncaptured bytes in the middle (length grows)
//                          2: nothing captured (length = data size + extra)
//                          3: head = all of data (no tail)
//   bits 3-7               extra length for modes 1 and 2, in units of the format's
//   bit 6                  (when the format says so) the first byte came 1 ns before the last
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

// An invariant of the parser under fuzzing: a failure aborts, which libFuzzer reports as a crash.
#define check(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
            std::abort();                                                              \
        }                                                                              \
    } while (0)

namespace loupe::fuzz {

struct RecordFormat {
    std::uint8_t separator = 0xFE;
    std::size_t head = 64;
    std::size_t tail = 16;
    std::uint64_t skipped_unit = 4099;      // mode 1: bytes not captured in the middle
    std::uint64_t uncaptured_unit = 4099;   // mode 2: bytes not captured at all
    bool first_timestamp_from_bit6 = true;  // bit 6 also sets Segment::first_timestamp_ns
};

// Calls on_segment(const Segment&, ts) or on_close(ts) for each record, then returns the last
// timestamp used (timestamps only grow).
template <class Segment, class OnSegment, class OnClose>
std::uint64_t for_each_record(const std::uint8_t* data, std::size_t size,
                              const RecordFormat& format, OnSegment&& on_segment,
                              OnClose&& on_close) {
    std::uint64_t ts = 1000;
    std::size_t pos = 1;
    while (pos < size) {
        const std::uint8_t* end = std::find(data + pos, data + size, format.separator);
        if (end == data + pos) {  // empty record
            ++pos;
            continue;
        }
        const std::uint8_t ctrl = data[pos];
        const std::span<const std::uint8_t> body(data + pos + 1, end);
        pos = static_cast<std::size_t>(end - data) + 1;
        ts += 1 + (ctrl & 0x7);
        if (ctrl == 0xFF) {
            on_close(ts);
            continue;
        }
        Segment s;
        s.direction = (ctrl & 1) ? decltype(s.direction)::kEgress : decltype(s.direction)::kIngress;
        s.timestamp_ns = ts;
        if constexpr (requires { s.first_timestamp_ns; })
            if (format.first_timestamp_from_bit6 && (ctrl & 0x40)) s.first_timestamp_ns = ts - 1;
        const std::uint64_t extra = ctrl >> 3;
        switch ((ctrl >> 1) & 3) {
            case 0:
                s.length = body.size();
                s.head = body.first(std::min(body.size(), format.head));
                if (body.size() > format.head) s.tail = body.last(format.tail);
                break;
            case 1:
                s.length = body.size() + 1 + extra * format.skipped_unit;
                s.head = body.first(std::min(body.size(), format.head));
                s.tail = body.last(std::min(body.size(), format.tail));
                break;
            case 2:
                s.length = body.size() + 1 + extra * format.uncaptured_unit;
                break;
            default:
                s.length = body.size();
                s.head = body;
                break;
        }
        on_segment(s, ts);
    }
    return ts;
}

// Feeds every record to one protocols::ConnectionParser, checking `check_connection(conn, before)`
// after each segment and close, and `drained(conn)` after each close (nothing left waiting);
// closes the connection at the end.
template <class Segment, class Connection, class Sink, class CheckConnection, class Drained>
void feed_records(const std::uint8_t* data, std::size_t size, const RecordFormat& format,
                  Connection& conn, Sink& sink, CheckConnection&& check_connection,
                  Drained&& drained) {
    const std::uint64_t ts = for_each_record<Segment>(
        data, size, format,
        [&](const Segment& s, std::uint64_t) {
            const auto before = conn.stats();
            conn.on_segment(s, sink);
            check_connection(conn, before);
        },
        [&](std::uint64_t at) {
            const auto before = conn.stats();
            conn.on_close(at, sink);
            drained(conn);
            check_connection(conn, before);
        });
    conn.on_close(ts + 1, sink);
    drained(conn);
}

}  // namespace loupe::fuzz
