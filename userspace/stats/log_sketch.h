// A mergeable quantile sketch with a guaranteed relative error, for latencies in nanoseconds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace loupe::stats {

// Log-bucketed sketch in the DDSketch family. At scale s, bucket i holds values in
// [2^(i/2^s), 2^((i+1)/2^s)) nanoseconds: the bucket edges of an OpenTelemetry exponential
// histogram (and a Prometheus native histogram) of that scale, so a sketch can be re-expressed as
// either without re-bucketing. A sketch starts at scale 6 (64 buckets per power of two).
//
// Guarantees:
//  - quantile(q) is within relative_error(scale()) of the exact sample of rank floor(q*(n-1))
//    for every value in [kMinValueNs, kMaxValueNs]: 0.54 % at scale 6, 1.08 % at 5, 2.17 % at 4,
//    4.33 % at 3;
//  - count, sum, min and max are exact (sum saturates at 2^64-1 ns, about 584 years);
//  - merge is exact at the coarser of the two scales: merging two sketches gives the very sketch
//    that inserting both inputs gives, when neither had to lower its scale;
//  - memory is bounded: values outside [1 us, 1 h] are clamped to that range and counted, so the
//    bucket array never spans more than kMaxBuckets (2033) 32-bit counters at scale 6, 8132
//    bytes. A sketch given a smaller max_buckets keeps its array within that many counters by
//    lowering its scale when its values spread wider (as OpenTelemetry's exponential histogram
//    does with its max size): each step down halves the resolution and doubles the octaves that
//    fit. With 160 buckets, scale 6 holds a spread (max/min) of 5.6x, scale 5 of 32x, scale 4 of
//    1,024x, scale 3 of 10^6x;
//  - a bucket counter saturates at 2^32-1 instead of wrapping.
class LogSketch {
  public:
    static constexpr int kScale = 6;  // the finest scale, where every sketch starts
    static constexpr int kBucketsPerOctave = 1 << kScale;
    static constexpr std::uint64_t kMinValueNs = 1'000;              // 1 us
    static constexpr std::uint64_t kMaxValueNs = 3'600'000'000'000;  // 1 h

    // Index of the bucket holding value_ns (>= 1).
    static int bucket_index(std::uint64_t value_ns) noexcept;
    // Lower edge of bucket `index` at `scale`, in nanoseconds.
    static double bucket_lower_bound(int index, int scale = kScale) noexcept;
    // The value reported for any sample of bucket `index`: the point equally distant, in relative
    // terms, from both edges.
    static double bucket_representative(int index, int scale = kScale) noexcept;
    static double relative_error(int scale = kScale) noexcept;
    static const int kMinIndex;
    static const int kMaxIndex;
    static const std::size_t kMaxBuckets;

    // max_buckets: at most this many counters (at least 2), lowering the scale to stay within it.
    explicit LogSketch(std::size_t max_buckets = kMaxBuckets) noexcept;

    // Hot path: one clz, one table lookup, one compare.
    void insert(std::uint64_t value_ns) noexcept;
    // For callers holding seconds: NaN and negative values are rejected (counted, not inserted);
    // +inf and huge values are clamped like any value above kMaxValueNs.
    void insert_seconds(double seconds) noexcept;

    void merge(const LogSketch& other) noexcept;
    // Empties the sketch (back to scale 6) but keeps its allocation, so a recycled window slice
    // does not reallocate.
    void clear() noexcept;

    // Value of rank floor(q*(n-1)) within relative_error(); q is clamped to [0, 1]; q = 0 gives min
    // and q = 1 gives max exactly. NaN when empty or when q is NaN.
    double quantile_ns(double q) const noexcept;

    std::uint64_t count() const noexcept { return count_; }
    std::uint64_t sum_ns() const noexcept { return sum_ns_; }
    // min/max of the raw values inserted (before clamping); 0 when empty.
    std::uint64_t min_ns() const noexcept { return count_ ? min_ns_ : 0; }
    std::uint64_t max_ns() const noexcept { return max_ns_; }
    std::uint64_t underflow_count() const noexcept { return underflow_; }
    std::uint64_t overflow_count() const noexcept { return overflow_; }
    std::uint64_t rejected_count() const noexcept { return rejected_; }
    bool empty() const noexcept { return count_ == 0; }
    int scale() const noexcept { return scale_; }
    // The bound quantile_ns() keeps to at the current scale.
    double error_bound() const noexcept { return relative_error(scale_); }

    // Visits every non-empty bucket in ascending order: fn(bucket_index, count); indices are at
    // scale().
    template <typename Fn>
    void for_each_bucket(Fn&& fn) const {
        for (std::size_t i = 0; i < counts_.size(); ++i)
            if (counts_[i] != 0) fn(offset_ + static_cast<int>(i), counts_[i]);
    }

    // Bytes owned by this sketch (object plus bucket array capacity).
    std::size_t memory_bytes() const noexcept;

  private:
    // Grows the array to cover [lo_index, hi_index] (at the current scale), lowering the scale
    // first when that span would not fit max_buckets_.
    void ensure_covers(int lo_index, int hi_index);
    void downscale(int steps) noexcept;
    int shift() const noexcept { return kScale - scale_; }

    std::vector<std::uint32_t> counts_;  // counts_[i] belongs to bucket offset_ + i
    int offset_ = 0;
    std::uint16_t max_buckets_;
    std::int8_t scale_ = kScale;
    std::uint64_t count_ = 0;
    std::uint64_t sum_ns_ = 0;
    std::uint64_t min_ns_ = std::numeric_limits<std::uint64_t>::max();
    std::uint64_t max_ns_ = 0;
    std::uint64_t underflow_ = 0;
    std::uint64_t overflow_ = 0;
    std::uint64_t rejected_ = 0;
};

}  // namespace loupe::stats
