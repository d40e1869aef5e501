// Decodes the raw ring-buffer records of socket_capture.bpf.c into checked views.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <utility>
#include <variant>

#include "loupe_abi.h"

namespace loupe::capture {

struct ConnOpen {
    const loupe_conn_open_event* event;
    std::string_view comm() const;
};
// One read or write (see loupe_data_event).
struct DataSegment {
    const loupe_data_event* event;
    // Set by SegmentAssembler: the event's head followed by its chunks' bytes. Empty: head[].
    std::span<const std::uint8_t> assembled{};
    // The data's bytes as captured, from its first one.
    std::span<const std::uint8_t> head() const {
        return assembled.empty() ? std::span<const std::uint8_t>(event->head, event->head_len)
                                 : assembled;
    }
    // The data's last bytes, when head() does not reach its end (else empty).
    std::span<const std::uint8_t> tail() const {
        if (head().size() >= event->length) return {};
        return {event->tail, event->tail_len};
    }
};
// More bytes of the data event before it (see loupe_data_chunk_event).
struct DataChunk {
    const loupe_data_chunk_event* event;
    std::span<const std::uint8_t> data() const { return {event->data, event->len}; }
};
struct ConnClose {
    const loupe_conn_close_event* event;
};
struct Malformed {
    const char* reason;
};

using DecodedEvent = std::variant<ConnOpen, DataSegment, ConnClose, DataChunk, Malformed>;

// Views point into `record`: valid only as long as it is. Never trusts a length field.
DecodedEvent decode_event(std::span<const std::uint8_t> record);

// Calls fn(event) for each event of a batch's data[] (struct loupe_batch_entry framing), in
// order. An entry whose size runs past the data ends the walk: the bytes from it on go to fn as
// one record, for decode_event to count as malformed.
template <typename Fn>
void for_each_batch_entry(std::span<const std::uint8_t> data, Fn&& fn) {
    std::size_t at = 0;
    while (at < data.size()) {
        loupe_batch_entry entry{};
        const std::size_t left = data.size() - at;
        if (left >= sizeof(entry)) std::memcpy(&entry, data.data() + at, sizeof(entry));
        if (left < sizeof(entry) || entry.size > left - sizeof(entry)) {
            fn(data.subspan(at));
            return;
        }
        fn(data.subspan(at + sizeof(entry), entry.size));
        at += sizeof(entry) + ((std::size_t{entry.size} + 7) & ~std::size_t{7});
    }
}

// Calls fn(event) for each event of one ring record: the events of a batch, or the record itself.
template <typename Fn>
void for_each_batched_event(std::span<const std::uint8_t> record, Fn&& fn) {
    constexpr std::size_t kFixed = offsetof(loupe_event_batch, data);
    std::uint16_t kind = 0;
    if (record.size() >= sizeof(kind)) std::memcpy(&kind, record.data(), sizeof(kind));
    if (kind != LOUPE_EVENT_BATCH || record.size() < kFixed) {
        fn(record);
        return;
    }
    std::uint32_t bytes = 0;
    std::memcpy(&bytes, record.data() + offsetof(loupe_event_batch, bytes), sizeof(bytes));
    const std::size_t in_record = record.size() - kFixed;
    for_each_batch_entry(record.subspan(kFixed, std::min<std::size_t>(bytes, in_record)),
                         std::forward<Fn>(fn));
}

}  // namespace loupe::capture
