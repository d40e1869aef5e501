// A mergeable quantile sketch with a guaranteed relative error, for latencies in nanoseconds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace loupe::stats {

// Log-bucketed sketch in the DDSketch family. Bucket i holds values in [2^(i/64), 2^((i+1)/64))
// nanoseconds: the bucket edges of an OpenTelemetry exponential histogram (and a Prometheus native
// histogram) at scale 6, so a sketch can be re-expressed as either without re-bucketing.
//
// Guarantees:
//  - quantile(q) is within relative_error() (0.54 %) of the exact sample of rank floor(q*(n-1))
//    for every value in [kMinValueNs, kMaxValueNs];
//  - count, sum, min and max are exact (sum saturates at 2^64-1 ns, about 584 years);
//  - merge is exact: merging two sketches gives the very sketch that inserting both inputs gives;
//  - memory is bounded: values outside [1 us, 1 h] are clamped to that range and counted, so the
//    bucket array never spans more than kMaxBuckets (2033) 32-bit counters, 8132 bytes. A
//    distribution spanning 100 us - 10 s needs 1063 counters (4.2 KB). That clamping is the whole
//    rule for extremely wide distributions: nothing is ever collapsed, accuracy never degrades.
//  - a bucket counter saturates at 2^32-1 instead of wrapping.
class LogSketch {
  public:
    static constexpr int kScale = 6;
    static constexpr int kBucketsPerOctave = 1 << kScale;
    static constexpr std::uint64_t kMinValueNs = 1'000;              // 1 us
    static constexpr std::uint64_t kMaxValueNs = 3'600'000'000'000;  // 1 h

    // Index of the bucket holding value_ns (>= 1).
    static int bucket_index(std::uint64_t value_ns) noexcept;
    // Lower edge of bucket `index`, in nanoseconds.
    static double bucket_lower_bound(int index) noexcept;
    // The value reported for any sample of bucket `index`: the point equally distant, in relative
    // terms, from both edges.
    static double bucket_representative(int index) noexcept;
    static double relative_error() noexcept;
    static const int kMinIndex;
    static const int kMaxIndex;
    static const std::size_t kMaxBuckets;

    // Hot path: one clz, one table lookup, one compare.
    void insert(std::uint64_t value_ns) noexcept;
    // For callers holding seconds: NaN and negative values are rejected (counted, not inserted);
    // +inf and huge values are clamped like any value above kMaxValueNs.
    void insert_seconds(double seconds) noexcept;

    void merge(const LogSketch& other) noexcept;
    // Empties the sketch but keeps its allocation, so a recycled window slice does not reallocate.
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

    // Visits every non-empty bucket in ascending order: fn(bucket_index, count).
    template <typename Fn>
    void for_each_bucket(Fn&& fn) const {
        for (std::size_t i = 0; i < counts_.size(); ++i)
            if (counts_[i] != 0) fn(offset_ + static_cast<int>(i), counts_[i]);
    }

    // Bytes owned by this sketch (object plus bucket array capacity).
    std::size_t memory_bytes() const noexcept;

  private:
    void ensure_covers(int lo_index, int hi_index);

    std::vector<std::uint32_t> counts_;  // counts_[i] belongs to bucket offset_ + i
    int offset_ = 0;
    std::uint64_t count_ = 0;
    std::uint64_t sum_ns_ = 0;
    std::uint64_t min_ns_ = std::numeric_limits<std::uint64_t>::max();
    std::uint64_t max_ns_ = 0;
    std::uint64_t underflow_ = 0;
    std::uint64_t overflow_ = 0;
    std::uint64_t rejected_ = 0;
};

}  // namespace loupe::stats
