// Fuzzes what the agent reads from its ring buffers: a ring record (a batch of events, or one
// event) is split, decoded and fed to the connection tracker (which joins chunk events to their
// data event) and its HTTP/1.x parsers. Whatever the bytes, every event must decode to a view
// inside its record or to Malformed, and no exchange may last longer than the span of the
// timestamps the events carried.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "capture/event_decoder.h"
#include "pipeline/connection_tracker.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace loupe;
    // Ring records start 8-byte aligned, and so does the agent's copy of each event.
    std::vector<std::uint64_t> record_words((size + 7) / 8);
    if (size != 0) std::memcpy(record_words.data(), data, size);
    const std::span<const std::uint8_t> record(
        reinterpret_cast<const std::uint8_t*>(record_words.data()), size);

    std::uint64_t earliest = UINT64_MAX;
    std::uint64_t latest = 0;
    std::vector<std::uint64_t> durations;
    pipeline::ConnectionTracker tracker(
        {}, 8,
        [&](const protocols::Request& r, const pipeline::ConnectionTracker::Origin&) {
            durations.push_back(r.end_ns >= r.start_ns ? r.end_ns - r.start_ns : 0);
        },
        [](std::uint32_t) { return std::string("fuzz"); });
    capture::for_each_batched_event(record, [&](std::span<const std::uint8_t> event) {
        if (event.data() < record.data() || event.data() + event.size() > record.data() + size)
            __builtin_trap();  // a view outside the record
        std::vector<std::uint64_t> words((event.size() + 7) / 8);
        if (!event.empty()) std::memcpy(words.data(), event.data(), event.size());
        const std::span<const std::uint8_t> copy(
            reinterpret_cast<const std::uint8_t*>(words.data()), event.size());
        const auto decoded = capture::decode_event(copy);
        if (copy.size() >= sizeof(loupe_event_header)) {
            const auto* header = reinterpret_cast<const loupe_event_header*>(copy.data());
            earliest = std::min<std::uint64_t>(earliest, header->timestamp_ns);
            latest = std::max<std::uint64_t>(latest, header->timestamp_ns);
        }
        if (const auto* segment = std::get_if<capture::DataSegment>(&decoded)) {
            const auto head = segment->head();
            if (head.data() + head.size() > copy.data() + copy.size()) __builtin_trap();
            const auto& e = *segment->event;
            const std::uint64_t spread =
                std::min<std::uint64_t>(e.spread_ns, e.header.timestamp_ns);
            earliest = std::min<std::uint64_t>(earliest, e.header.timestamp_ns - spread);
        }
        if (const auto* chunk = std::get_if<capture::DataChunk>(&decoded)) {
            const auto data = chunk->data();
            if (data.data() + data.size() > copy.data() + copy.size()) __builtin_trap();
        }
        tracker.on_record(copy);  // decodes again, and joins chunks to their data event
    });
    tracker.end_all_closed();
    for (const std::uint64_t d : durations)
        if (d > latest - std::min(earliest, latest)) __builtin_trap();
    return 0;
}
