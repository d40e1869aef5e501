#include "capture/event_decoder.h"

#include <cstddef>
#include <cstring>

namespace loupe::capture {

std::string_view ConnOpen::comm() const {
    return {event->comm, strnlen(event->comm, sizeof(event->comm))};
}

DecodedEvent decode_event(std::span<const std::uint8_t> record) {
    if (record.size() < sizeof(loupe_event_header))
        return Malformed{"record shorter than a header"};
    // Ring-buffer records are 8-byte aligned, so the casts below are aligned.
    const auto* header = reinterpret_cast<const loupe_event_header*>(record.data());
    switch (header->kind) {
        case LOUPE_EVENT_CONN_OPEN:
            if (record.size() < sizeof(loupe_conn_open_event)) return Malformed{"short open event"};
            return ConnOpen{reinterpret_cast<const loupe_conn_open_event*>(record.data())};
        case LOUPE_EVENT_CONN_CLOSE:
            if (record.size() < sizeof(loupe_conn_close_event))
                return Malformed{"short close event"};
            return ConnClose{reinterpret_cast<const loupe_conn_close_event*>(record.data())};
        case LOUPE_EVENT_DATA: {
            constexpr std::size_t kFixed = offsetof(loupe_data_event, head);
            if (record.size() < kFixed) return Malformed{"short data event"};
            const auto* data = reinterpret_cast<const loupe_data_event*>(record.data());
            if (data->head_len > LOUPE_DATA_HEAD_MAX || kFixed + data->head_len > record.size())
                return Malformed{"data event head exceeds the record"};
            if (data->tail_len > LOUPE_DATA_TAIL_MAX) return Malformed{"data event tail too long"};
            if (data->direction > LOUPE_DIR_EGRESS) return Malformed{"unknown direction"};
            return DataSegment{data};
        }
        case LOUPE_EVENT_DATA_CHUNK: {
            constexpr std::size_t kFixed = offsetof(loupe_data_chunk_event, data);
            if (record.size() < kFixed) return Malformed{"short chunk event"};
            const auto* chunk = reinterpret_cast<const loupe_data_chunk_event*>(record.data());
            if (chunk->len > LOUPE_CHUNK_BYTES || kFixed + chunk->len > record.size())
                return Malformed{"chunk event data exceeds the record"};
            return DataChunk{chunk};
        }
        default:
            return Malformed{"unknown event kind"};
    }
}

}  // namespace loupe::capture
