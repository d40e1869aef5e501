// Decodes the raw ring-buffer records of http_capture.bpf.c into checked views.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

#include "loupe_abi.h"

namespace loupe::capture {

struct ConnOpen {
    const loupe_conn_open_event* event;
    std::string_view comm() const;
};
struct DataSegment {
    const loupe_data_event* event;
    std::span<const std::uint8_t> head() const { return {event->head, event->head_len}; }
    std::span<const std::uint8_t> tail() const { return {event->tail, event->tail_len}; }
};
struct ConnClose {
    const loupe_conn_close_event* event;
};
struct Malformed {
    const char* reason;
};

using DecodedEvent = std::variant<ConnOpen, DataSegment, ConnClose, Malformed>;

// Views point into `record`: valid only as long as it is. Never trusts a length field.
DecodedEvent decode_event(std::span<const std::uint8_t> record);

}  // namespace loupe::capture
