#include "stats/windowed_sketch.h"

#include <algorithm>

namespace loupe::stats {

WindowedSketch::WindowedSketch(Nanos slice_width, std::size_t slice_count)
    : slice_width_(std::max(slice_width, Nanos{1})),
      slices_(std::max<std::size_t>(slice_count, 1)) {}

void WindowedSketch::insert(std::uint64_t value_ns, Nanos now) noexcept {
    const std::int64_t epoch = epoch_of(now);
    const auto ring = static_cast<std::int64_t>(slices_.size());
    if (epoch < 0 || (newest_epoch_ >= 0 && epoch <= newest_epoch_ - ring)) {
        ++late_;
        return;
    }
    newest_epoch_ = std::max(newest_epoch_, epoch);
    Slice& slice = slices_[static_cast<std::size_t>(epoch % ring)];
    if (slice.epoch != epoch) {  // the slot still holds data older than the ring: recycle it
        slice.sketch.clear();
        slice.epoch = epoch;
    }
    slice.sketch.insert(value_ns);
}

void WindowedSketch::window(Nanos span, Nanos now, LogSketch& out) const {
    out.clear();
    const std::int64_t current = epoch_of(now);
    const auto ring = static_cast<std::int64_t>(slices_.size());
    const std::int64_t wanted = std::clamp<std::int64_t>(
        (span.count() + slice_width_.count() - 1) / slice_width_.count(), 1, ring);
    for (const Slice& slice : slices_)
        if (slice.epoch >= 0 && slice.epoch <= current && slice.epoch > current - wanted)
            out.merge(slice.sketch);
}

LogSketch WindowedSketch::window(Nanos span, Nanos now) const {
    LogSketch out;
    window(span, now, out);
    return out;
}

bool WindowedSketch::idle(Nanos now) const noexcept {
    const std::int64_t current = epoch_of(now);
    const auto ring = static_cast<std::int64_t>(slices_.size());
    return std::none_of(slices_.begin(), slices_.end(), [&](const Slice& s) {
        return s.epoch > current - ring && !s.sketch.empty();
    });
}

std::size_t WindowedSketch::memory_bytes() const noexcept {
    std::size_t bytes = sizeof(*this);
    for (const Slice& slice : slices_)
        bytes += slice.sketch.memory_bytes() - sizeof(LogSketch) + sizeof(Slice);
    return bytes;
}

}  // namespace loupe::stats
