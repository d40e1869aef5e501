#include "capture/segment_assembler.h"

#include <algorithm>
#include <cstring>

namespace loupe::capture {

void SegmentAssembler::wait_for_chunks(const loupe_data_event& event) {
    Waiting& w = waiting_.emplace_back();
    std::memcpy(&w.event, &event, offsetof(loupe_data_event, head));  // head[] goes in `bytes`
    // The kernel copies at most LOUPE_COPY_CAP_MAX: a record that says more is not trusted.
    w.expected = std::min<std::uint32_t>(event.captured, LOUPE_COPY_CAP_MAX);
    if (!spare_.empty()) {
        w.bytes = std::move(spare_.back());
        spare_.pop_back();
    }
    w.bytes.assign(event.head, event.head + event.head_len);
    w.bytes.reserve(w.expected);
}

std::size_t SegmentAssembler::owner_of(const loupe_event_header& header) const {
    for (std::size_t i = 0; i < waiting_.size(); ++i) {
        const loupe_event_header& w = waiting_[i].event.header;
        if (same_connection(w, header) && w.tid == header.tid &&
            w.timestamp_ns == header.timestamp_ns)
            return i;
    }
    return waiting_.size();
}

const loupe_event_header* SegmentAssembler::header_of(const DecodedEvent& event) {
    if (const auto* e = std::get_if<ConnOpen>(&event)) return &e->event->header;
    if (const auto* e = std::get_if<DataSegment>(&event)) return &e->event->header;
    if (const auto* e = std::get_if<ConnClose>(&event)) return &e->event->header;
    if (const auto* e = std::get_if<DataChunk>(&event)) return &e->event->header;
    return nullptr;
}

}  // namespace loupe::capture
