#include "capture/event_merger.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <limits>

#include "loupe_abi.h"

namespace loupe::capture {

namespace {
// Big enough that a drain under load fills a few chunks, not thousands of allocations; small
// enough that the spare kept between drains costs little.
constexpr std::size_t kChunkBytes = 256 * 1024;
}  // namespace

EventMerger::Chunk& EventMerger::chunk_for(std::size_t size) {
    if (!chunks_.empty()) {
        Chunk& last = *chunks_.back();
        if (last.live == 0) last.used = 0;  // every record in it is gone: start it over
        if (last.capacity - last.used >= size) return last;
    }
    if (spare_ && spare_->capacity >= size) {
        spare_->used = 0;
        chunks_.push_back(std::move(spare_));
    } else {
        chunks_.push_back(std::make_unique<Chunk>(std::max(kChunkBytes, size)));
    }
    return *chunks_.back();
}

void EventMerger::add(std::span<const std::uint8_t> record) {
    std::uint64_t timestamp_ns = 0;
    if (record.size() >= sizeof(loupe_event_header))
        std::memcpy(&timestamp_ns, record.data() + offsetof(loupe_event_header, timestamp_ns),
                    sizeof(timestamp_ns));
    // Each copy starts 8-byte aligned, as ring-buffer records do: the decoder casts them to the
    // event structs.
    const std::size_t footprint = (record.size() + 7) & ~std::size_t{7};
    Chunk& chunk = chunk_for(footprint);
    std::uint8_t* data = chunk.bytes.get() + chunk.used;
    if (!record.empty()) std::memcpy(data, record.data(), record.size());
    chunk.used += footprint;
    ++chunk.live;
    added_.push_back({timestamp_ns, next_sequence_++, &chunk, data, record.size()});
}

std::size_t EventMerger::release(std::uint64_t now_ns, const Handler& handler) {
    return release_until(now_ns > hold_back_ns_ ? now_ns - hold_back_ns_ : 0, handler);
}

std::size_t EventMerger::release_all(const Handler& handler) {
    return release_until(std::numeric_limits<std::uint64_t>::max(), handler);
}

void EventMerger::merge_added() {
    if (added_.empty()) return;
    // Records arrive as one ordered run per ring: a merge sort mostly merges runs.
    std::stable_sort(added_.begin(), added_.end(), earlier);
    if (held_.empty() || !earlier(added_.front(), held_.back())) {
        held_.insert(held_.end(), added_.begin(), added_.end());
    } else {
        merged_.clear();
        std::merge(held_.begin(), held_.end(), added_.begin(), added_.end(),
                   std::back_inserter(merged_), earlier);
        held_.swap(merged_);
    }
    added_.clear();
}

std::size_t EventMerger::release_until(std::uint64_t limit_ns, const Handler& handler) {
    merge_added();
    const auto first_kept = std::upper_bound(
        held_.begin(), held_.end(), limit_ns,
        [](std::uint64_t limit, const Entry& e) { return limit < e.timestamp_ns; });
    for (auto it = held_.begin(); it != first_kept; ++it) {
        handler(std::span<const std::uint8_t>(it->data, it->size));
        --it->chunk->live;
    }
    const auto released = static_cast<std::size_t>(first_kept - held_.begin());
    held_.erase(held_.begin(), first_kept);
    recycle_chunks();
    return released;
}

void EventMerger::recycle_chunks() {
    // Chunks whose records are all gone, but the one being filled: keep one as the spare.
    if (chunks_.size() < 2) return;
    auto keep = chunks_.begin();
    for (auto it = chunks_.begin(); it != chunks_.end(); ++it) {
        const bool filling = std::next(it) == chunks_.end();
        if (!filling && (*it)->live == 0) {
            if (!spare_) spare_ = std::move(*it);
            continue;
        }
        if (keep != it) *keep = std::move(*it);
        ++keep;
    }
    chunks_.erase(keep, chunks_.end());
}

std::size_t EventMerger::storage_bytes() const {
    std::size_t total = spare_ ? spare_->capacity : 0;
    for (const auto& chunk : chunks_)
        total += chunk->capacity;
    return total;
}

}  // namespace loupe::capture
