// Joins the chunk events of a read or write to its data event. The kernel copies up to a
// protocol's copy cap of each read or write on a classified connection: the first bytes in the
// data event's head, the rest in chunk events right after it, each with the data event's header
// (so the same timestamp) and its offset in the data. A parser wants the bytes of one read or
// write together: this hands the data event on once its chunks are joined to its head.
//
// It relies on the order the capture hands events over in (time order, EventMerger): a data
// event's chunks come after it, and before anything with another timestamp. So a data event
// waits only while events with its own timestamp arrive; the first one with another timestamp,
// the connection's next event, or flush() (after each release of records, as chunks are released
// with their data event) hands it on, with the bytes up to the first missing chunk when one never
// came (a ring buffer that was full: counted there).
#pragma once

#include <cstddef>
#include <cstdint>
#include <variant>
#include <vector>

#include "capture/event_decoder.h"
#include "loupe_abi.h"

namespace loupe::capture {

class SegmentAssembler {
  public:
    struct Stats {
        std::uint64_t joined = 0;          // data events handed on with their chunks
        std::uint64_t short_segments = 0;  // ... with some of their chunks missing
        std::uint64_t orphan_chunks = 0;   // chunks with no data event waiting for them
    };

    // Takes the next event in the capture's order and hands events on to deliver(const
    // DecodedEvent&): all but chunks, a data event with chunks once they are joined to it
    // (DataSegment::assembled); views are valid during the call only.
    template <typename Deliver>
    void add(const DecodedEvent& event, Deliver&& deliver) {
        if (!waiting_.empty()) settle_before(event, deliver);
        if (const auto* data = std::get_if<DataSegment>(&event)) {
            if (data->event->captured > data->event->head_len) {
                wait_for_chunks(*data->event);
                return;
            }
        } else if (const auto* chunk = std::get_if<DataChunk>(&event)) {
            join(*chunk, deliver);
            return;
        }
        deliver(event);
    }

    // Hands on every data event still waiting for chunks: none can come any more.
    template <typename Deliver>
    void flush(Deliver&& deliver) {
        for (std::size_t i = 0; i < waiting_.size(); ++i)
            hand_on(i, deliver);
        waiting_.clear();
    }

    const Stats& stats() const noexcept { return stats_; }
    std::size_t waiting() const noexcept { return waiting_.size(); }

  private:
    struct Waiting {
        loupe_data_event event;  // its fixed part and tail (head[] is in `bytes`, not here)
        std::uint32_t expected = 0;
        std::vector<std::uint8_t> bytes;
    };
    // More waiting at once than this means events of many connections share a timestamp: the
    // oldest is handed on as it is.
    static constexpr std::size_t kMaxWaiting = 64;

    void wait_for_chunks(const loupe_data_event& event);
    // Index in waiting_ of the data event `header` (a chunk's) belongs to, or waiting_.size().
    std::size_t owner_of(const loupe_event_header& header) const;
    static bool same_connection(const loupe_event_header& a, const loupe_event_header& b) {
        return a.conn.tgid == b.conn.tgid && a.conn.fd == b.conn.fd &&
               a.conn.generation == b.conn.generation;
    }
    static const loupe_event_header* header_of(const DecodedEvent& event);

    template <typename Deliver>
    void hand_on(std::size_t i, Deliver& deliver) {
        Waiting& w = waiting_[i];
        if (w.bytes.size() < w.expected)
            ++stats_.short_segments;
        else
            ++stats_.joined;
        deliver(DecodedEvent(DataSegment{&w.event, w.bytes}));
        spare_.push_back(std::move(w.bytes));
    }

    template <typename Deliver>
    void remove(std::size_t i, Deliver& deliver) {
        hand_on(i, deliver);
        waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
    }

    // Hands on the waiting data events no chunk can join any more now that `event` came: all of
    // them when its timestamp differs, its connection's when it is not a chunk.
    template <typename Deliver>
    void settle_before(const DecodedEvent& event, Deliver& deliver) {
        const loupe_event_header* header = header_of(event);
        if (!header) return;
        const bool chunk = std::holds_alternative<DataChunk>(event);
        for (std::size_t i = 0; i < waiting_.size();) {
            const loupe_event_header& w = waiting_[i].event.header;
            if (w.timestamp_ns != header->timestamp_ns || (!chunk && same_connection(w, *header)))
                remove(i, deliver);
            else
                ++i;
        }
        if (waiting_.size() >= kMaxWaiting) remove(0, deliver);
    }

    template <typename Deliver>
    void join(const DataChunk& chunk, Deliver& deliver) {
        const std::size_t i = owner_of(chunk.event->header);
        if (i == waiting_.size()) {
            ++stats_.orphan_chunks;
            return;
        }
        Waiting& w = waiting_[i];
        if (chunk.event->offset != w.bytes.size()) {  // one before it never came
            ++stats_.orphan_chunks;
            remove(i, deliver);
            return;
        }
        const auto data = chunk.data();
        const std::size_t take = std::min<std::size_t>(data.size(), w.expected - w.bytes.size());
        w.bytes.insert(w.bytes.end(), data.begin(),
                       data.begin() + static_cast<std::ptrdiff_t>(take));
        if (w.bytes.size() >= w.expected) remove(i, deliver);
    }

    std::vector<Waiting> waiting_;
    std::vector<std::vector<std::uint8_t>> spare_;  // buffers of handed-on events, for reuse
    Stats stats_;
};

}  // namespace loupe::capture
