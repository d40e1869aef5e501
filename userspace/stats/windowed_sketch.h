// Sliding-window quantiles as merges of time slices, in bounded memory.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "stats/log_sketch.h"

namespace loupe::stats {

// Recent time in `fine_slices` slices of slice_width each (a 1-minute window: six 10-second
// slices), older time in coarse slices of fine_slices * slice_width (one minute), up to
// slice_count * slice_width in all (5 minutes). The window of span S at time t merges the fine
// slices of its last ceil(S / slice_width) slice widths and, for longer spans, the coarse slices
// wholly inside the span: a 1-minute window covers between 50 and 60 seconds of data, a 5-minute
// one between 4 min 10 s and 5 min.
//
// Each slice's sketch keeps at most max_buckets counters (lowering its scale when values spread
// wider, see LogSketch): with the defaults a series holds 10 slices of at most 160 counters, under
// 8 KiB whatever the input. Time is passed in by the caller (kernel monotonic nanoseconds in the
// agent, a fake clock in tests), so rotation is deterministic and needs no timer.
class WindowedSketch {
  public:
    using Nanos = std::chrono::nanoseconds;
    static constexpr std::size_t kSliceBuckets = 160;  // OpenTelemetry's default max_size

    explicit WindowedSketch(Nanos slice_width = std::chrono::seconds(10),
                            std::size_t slice_count = 30, std::size_t fine_slices = 6,
                            std::size_t max_buckets = kSliceBuckets);

    // A value stamped older than the oldest fine slice still kept is dropped and counted in
    // late_count(); time going backwards within the fine slices lands in the right slice.
    void insert(std::uint64_t value_ns, Nanos now) noexcept;

    // Merges the slices covering `span` ending at `now` into `out` (cleared first; its allocation
    // is reused). A span longer than the ring is clamped to the ring.
    void window(Nanos span, Nanos now, LogSketch& out) const;
    LogSketch window(Nanos span, Nanos now) const;

    Nanos slice_width() const noexcept { return slice_width_; }
    std::size_t slice_count() const noexcept { return slice_count_; }
    std::uint64_t late_count() const noexcept { return late_; }
    // Whether any slice still inside the longest window holds data at `now`: an idle series can
    // be expired.
    bool idle(Nanos now) const noexcept;
    std::size_t memory_bytes() const noexcept;

  private:
    struct Slice {
        std::int64_t epoch = -1;  // fine: now / slice_width; coarse: that / fine count; -1 unused
        LogSketch sketch;
    };
    std::int64_t epoch_of(Nanos t) const noexcept { return t.count() / slice_width_.count(); }
    std::int64_t fine_count() const noexcept { return static_cast<std::int64_t>(fine_.size()); }
    // Moves a fine slice about to be reused into its coarse slice, if some window still needs it.
    void retire(Slice& fine) noexcept;

    Nanos slice_width_;
    std::size_t slice_count_;
    std::vector<Slice> fine_;
    std::vector<Slice> coarse_;
    std::int64_t newest_epoch_ = -1;
    std::uint64_t late_ = 0;
};

}  // namespace loupe::stats
