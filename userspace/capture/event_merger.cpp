#include "capture/event_merger.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>

#include "loupe_abi.h"

namespace loupe::capture {

void EventMerger::add(std::span<const std::uint8_t> record) {
    std::uint64_t timestamp_ns = 0;
    if (record.size() >= sizeof(loupe_event_header))
        std::memcpy(&timestamp_ns, record.data() + offsetof(loupe_event_header, timestamp_ns),
                    sizeof(timestamp_ns));
    entries_.push_back({timestamp_ns, bytes_.size(), record.size()});
    bytes_.insert(bytes_.end(), record.begin(), record.end());
}

std::size_t EventMerger::release(std::uint64_t now_ns, const Handler& handler) {
    return release_until(now_ns > hold_back_ns_ ? now_ns - hold_back_ns_ : 0, handler);
}

std::size_t EventMerger::release_all(const Handler& handler) {
    return release_until(std::numeric_limits<std::uint64_t>::max(), handler);
}

std::size_t EventMerger::release_until(std::uint64_t limit_ns, const Handler& handler) {
    if (entries_.empty()) return 0;
    // Stable: records of one CPU with equal timestamps keep their ring order.
    std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
        return a.timestamp_ns < b.timestamp_ns;
    });
    const auto first_kept = std::upper_bound(
        entries_.begin(), entries_.end(), limit_ns,
        [](std::uint64_t limit, const Entry& e) { return limit < e.timestamp_ns; });
    for (auto it = entries_.begin(); it != first_kept; ++it)
        handler(std::span<const std::uint8_t>(bytes_.data() + it->offset, it->size));
    const std::size_t released = static_cast<std::size_t>(first_kept - entries_.begin());
    // Keep the rest (usually the last few milliseconds of records) in the spare buffers, then
    // swap: both pairs of buffers keep their capacity from one drain to the next.
    spare_entries_.clear();
    spare_bytes_.clear();
    for (auto it = first_kept; it != entries_.end(); ++it) {
        spare_entries_.push_back({it->timestamp_ns, spare_bytes_.size(), it->size});
        spare_bytes_.insert(spare_bytes_.end(),
                            bytes_.begin() + static_cast<std::ptrdiff_t>(it->offset),
                            bytes_.begin() + static_cast<std::ptrdiff_t>(it->offset + it->size));
    }
    entries_.swap(spare_entries_);
    bytes_.swap(spare_bytes_);
    return released;
}

}  // namespace loupe::capture
