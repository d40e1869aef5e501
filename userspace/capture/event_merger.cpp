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
// enough that the spares kept between drains cost little.
constexpr std::size_t kChunkBytes = 256 * 1024;
}  // namespace

EventMerger::Chunk& EventMerger::chunk_for(std::size_t size) {
    if (!chunks_.empty()) {
        Chunk& last = *chunks_.back();
        if (last.live == 0) last.used = 0;  // every record in it is gone: start it over
        if (last.capacity - last.used >= size) return last;
    }
    if (!spares_.empty() && spares_.back()->capacity >= size) {
        spares_.back()->used = 0;
        chunks_.push_back(std::move(spares_.back()));
        spares_.pop_back();
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

void EventMerger::sort_added() {
    // Records arrive as one ordered run per ring (a ring can hold a few records out of order: a
    // write is stamped when its bytes were sent, before events another task added meanwhile).
    // Merging the runs pairwise costs O(records x log runs): two rings, one pass. A general sort
    // of the drain was ~9 % of the agent's CPU under nginx + wrk.
    run_ends_.clear();
    for (std::size_t i = 1; i < added_.size(); ++i)
        if (earlier(added_[i], added_[i - 1])) run_ends_.push_back(i);
    run_ends_.push_back(added_.size());
    while (run_ends_.size() > 1) {
        merged_.clear();
        std::size_t begin = 0;
        std::size_t kept = 0;
        for (std::size_t r = 0; r < run_ends_.size(); r += 2) {
            const auto first = added_.begin() + static_cast<std::ptrdiff_t>(begin);
            const auto middle = added_.begin() + static_cast<std::ptrdiff_t>(run_ends_[r]);
            const std::size_t end = r + 1 < run_ends_.size() ? run_ends_[r + 1] : run_ends_[r];
            // Stable: on equal keys std::merge takes the earlier run's record first.
            std::merge(first, middle, middle, added_.begin() + static_cast<std::ptrdiff_t>(end),
                       std::back_inserter(merged_), earlier);
            run_ends_[kept++] = end;
            begin = end;
        }
        run_ends_.resize(kept);
        added_.swap(merged_);
    }
}

void EventMerger::merge_added() {
    if (added_.empty()) return;
    sort_added();
    // Released records are dropped from the front of held_ here, not at each release, and only
    // when they are at least half of it: one move of the live records per few drains.
    if (released_ > 0 && released_ >= held_.size() / 2) {
        held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(released_));
        released_ = 0;
    }
    // Only the held records stamped after the first added one move: the drain's newest records
    // overlap the previous drain's last few, not the whole hold-back.
    const auto live = held_.begin() + static_cast<std::ptrdiff_t>(released_);
    const auto overlap = std::upper_bound(live, held_.end(), added_.front(), earlier);
    if (overlap == held_.end()) {
        held_.insert(held_.end(), added_.begin(), added_.end());
    } else {
        merged_.clear();
        std::merge(overlap, held_.end(), added_.begin(), added_.end(), std::back_inserter(merged_),
                   earlier);
        held_.erase(overlap, held_.end());
        held_.insert(held_.end(), merged_.begin(), merged_.end());
    }
    added_.clear();
}

std::size_t EventMerger::release_until(std::uint64_t limit_ns, const Handler& handler) {
    merge_added();
    const auto live = held_.begin() + static_cast<std::ptrdiff_t>(released_);
    const auto first_kept = std::upper_bound(
        live, held_.end(), limit_ns,
        [](std::uint64_t limit, const Entry& e) { return limit < e.timestamp_ns; });
    for (auto it = live; it != first_kept; ++it) {
        handler(std::span<const std::uint8_t>(it->data, it->size));
        --it->chunk->live;
    }
    const auto released = static_cast<std::size_t>(first_kept - live);
    released_ += released;
    if (released_ == held_.size()) {
        held_.clear();
        released_ = 0;
    }
    recycle_chunks();
    return released;
}

void EventMerger::recycle_chunks() {
    // Chunks whose records are all gone, but the one being filled, become spares. As many spares
    // are kept as chunks hold records (so that they shrink with the load): a chunk freed and
    // allocated again a drain later costs the faults of all its pages, 30 % of the agent's CPU
    // when 4 KiB reads streamed in with one spare kept (see docs/BENCHMARKS.md).
    if (chunks_.size() < 2) return;
    auto keep = chunks_.begin();
    for (auto it = chunks_.begin(); it != chunks_.end(); ++it) {
        const bool filling = std::next(it) == chunks_.end();
        if (!filling && (*it)->live == 0) {
            spares_.push_back(std::move(*it));
            continue;
        }
        if (keep != it) *keep = std::move(*it);
        ++keep;
    }
    chunks_.erase(keep, chunks_.end());
    const std::size_t kept = std::max<std::size_t>(1, chunks_.size());
    if (spares_.size() > kept) spares_.resize(kept);
}

std::size_t EventMerger::storage_bytes() const {
    std::size_t total = 0;
    for (const auto& chunk : spares_)
        total += chunk->capacity;
    for (const auto& chunk : chunks_)
        total += chunk->capacity;
    return total;
}

}  // namespace loupe::capture
