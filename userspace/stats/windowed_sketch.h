// Sliding-window quantiles as exact merges of fixed time slices.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "stats/log_sketch.h"

namespace loupe::stats {

// A ring of LogSketch slices, each covering one slice_width of time. The window of span S at time
// t is the exact merge of the slice containing t and the slices before it, ceil(S / slice_width)
// slices in all: a 1-minute window over 10-second slices covers between 50 and 60 seconds of data.
// Time is passed in by the caller (kernel monotonic nanoseconds in the agent, a fake clock in
// tests), so rotation is deterministic and needs no timer.
class WindowedSketch {
  public:
    using Nanos = std::chrono::nanoseconds;

    // slice_count * slice_width is the longest window this series can answer.
    explicit WindowedSketch(Nanos slice_width = std::chrono::seconds(10),
                            std::size_t slice_count = 30);

    // A value stamped older than the oldest slice still kept is dropped and counted in
    // late_count(); time going backwards within the kept range lands in the right slice.
    void insert(std::uint64_t value_ns, Nanos now) noexcept;

    // Merges the slices covering `span` ending at `now` into `out` (cleared first; its allocation
    // is reused). A span longer than the ring is clamped to the ring.
    void window(Nanos span, Nanos now, LogSketch& out) const;
    LogSketch window(Nanos span, Nanos now) const;

    Nanos slice_width() const noexcept { return slice_width_; }
    std::size_t slice_count() const noexcept { return slices_.size(); }
    std::uint64_t late_count() const noexcept { return late_; }
    // Whether any slice still inside the ring holds data at `now`: an idle series can be expired.
    bool idle(Nanos now) const noexcept;
    std::size_t memory_bytes() const noexcept;

  private:
    struct Slice {
        std::int64_t epoch = -1;  // now / slice_width of the data it holds; -1 = never used
        LogSketch sketch;
    };
    std::int64_t epoch_of(Nanos t) const noexcept { return t.count() / slice_width_.count(); }

    Nanos slice_width_;
    std::vector<Slice> slices_;
    std::int64_t newest_epoch_ = -1;
    std::uint64_t late_ = 0;
};

}  // namespace loupe::stats
