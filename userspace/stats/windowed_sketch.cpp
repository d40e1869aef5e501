#include "stats/windowed_sketch.h"

#include <algorithm>

namespace loupe::stats {

WindowedSketch::WindowedSketch(Nanos slice_width, std::size_t slice_count, std::size_t fine_slices,
                               std::size_t max_buckets)
    : slice_width_(std::max(slice_width, Nanos{1})),
      slice_count_(std::max<std::size_t>(slice_count, 1)) {
    const std::size_t fine = std::clamp<std::size_t>(fine_slices, 1, slice_count_);
    fine_.assign(fine, Slice{-1, LogSketch(max_buckets)});
    // Enough coarse slices for every whole group older than the fine ones within the longest span.
    coarse_.assign((slice_count_ - fine + fine - 1) / fine, Slice{-1, LogSketch(max_buckets)});
}

void WindowedSketch::retire(Slice& fine) noexcept {
    if (fine.epoch < 0 || fine.sketch.empty() || coarse_.empty()) return;
    const std::int64_t group = fine.epoch / fine_count();
    // A group is only ever used whole: one starting before the longest span is of no use.
    if (group * fine_count() <= newest_epoch_ - static_cast<std::int64_t>(slice_count_)) return;
    Slice& coarse =
        coarse_[static_cast<std::size_t>(group % static_cast<std::int64_t>(coarse_.size()))];
    if (coarse.epoch > group) return;  // a newer group took the slot: this one is out of reach
    if (coarse.epoch != group) {
        coarse.sketch.clear();
        coarse.epoch = group;
    }
    coarse.sketch.merge(fine.sketch);
}

void WindowedSketch::insert(std::uint64_t value_ns, Nanos now) noexcept {
    const std::int64_t epoch = epoch_of(now);
    if (epoch < 0 || (newest_epoch_ >= 0 && epoch <= newest_epoch_ - fine_count())) {
        ++late_;
        return;
    }
    newest_epoch_ = std::max(newest_epoch_, epoch);
    Slice& slice = fine_[static_cast<std::size_t>(epoch % fine_count())];
    if (slice.epoch != epoch) {  // the slot holds an older slice: hand it on, then reuse it
        retire(slice);
        slice.sketch.clear();
        slice.epoch = epoch;
    }
    slice.sketch.insert(value_ns);
}

void WindowedSketch::window(Nanos span, Nanos now, LogSketch& out) const {
    out.clear();
    const std::int64_t current = epoch_of(now);
    const std::int64_t wanted =
        std::clamp<std::int64_t>((span.count() + slice_width_.count() - 1) / slice_width_.count(),
                                 1, static_cast<std::int64_t>(slice_count_));
    for (const Slice& slice : fine_)
        if (slice.epoch >= 0 && slice.epoch <= current && slice.epoch > current - wanted)
            out.merge(slice.sketch);
    if (wanted <= fine_count()) return;
    for (const Slice& slice : coarse_) {
        const std::int64_t first = slice.epoch * fine_count();
        if (slice.epoch >= 0 && first > current - wanted && first + fine_count() - 1 <= current)
            out.merge(slice.sketch);
    }
}

LogSketch WindowedSketch::window(Nanos span, Nanos now) const {
    LogSketch out;
    window(span, now, out);
    return out;
}

bool WindowedSketch::idle(Nanos now) const noexcept {
    const std::int64_t oldest = epoch_of(now) - static_cast<std::int64_t>(slice_count_);
    const bool fine_busy = std::any_of(fine_.begin(), fine_.end(), [&](const Slice& s) {
        return s.epoch > oldest && !s.sketch.empty();
    });
    const bool coarse_busy = std::any_of(coarse_.begin(), coarse_.end(), [&](const Slice& s) {
        return s.epoch >= 0 && s.epoch * fine_count() + fine_count() - 1 > oldest &&
               !s.sketch.empty();
    });
    return !fine_busy && !coarse_busy;
}

std::size_t WindowedSketch::memory_bytes() const noexcept {
    std::size_t bytes = sizeof(*this);
    for (const auto* ring : {&fine_, &coarse_})
        for (const Slice& slice : *ring)
            bytes += slice.sketch.memory_bytes() - sizeof(LogSketch) + sizeof(Slice);
    return bytes;
}

}  // namespace loupe::stats
