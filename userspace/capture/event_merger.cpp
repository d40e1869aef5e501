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
    // Compact what is kept (usually the last few milliseconds of records).
    std::vector<Entry> kept_entries;
    std::vector<std::uint8_t> kept_bytes;
    kept_entries.reserve(static_cast<std::size_t>(entries_.end() - first_kept));
    for (auto it = first_kept; it != entries_.end(); ++it) {
        kept_entries.push_back({it->timestamp_ns, kept_bytes.size(), it->size});
        kept_bytes.insert(kept_bytes.end(),
                          bytes_.begin() + static_cast<std::ptrdiff_t>(it->offset),
                          bytes_.begin() + static_cast<std::ptrdiff_t>(it->offset + it->size));
    }
    entries_ = std::move(kept_entries);
    bytes_ = std::move(kept_bytes);
    return released;
}

}  // namespace loupe::capture
