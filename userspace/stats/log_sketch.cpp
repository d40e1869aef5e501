#include "stats/log_sketch.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

namespace loupe::stats {
namespace {

constexpr int kCellBits = 8;  // 256 equal cells over the mantissa range [1, 2)
constexpr int kCells = 1 << kCellBits;
// Each cell is narrower (1/256) than the narrowest bucket (2^(1/64) - 1 = 0.0109), so a cell holds
// at most one bucket edge and one comparison settles the bucket of any mantissa in it.
static_assert(kCells > 3 * LogSketch::kBucketsPerOctave);

struct MantissaTables {
    // edge[k]: 2^(k/64) as a Q1.63 fixed-point mantissa, truncated (edge[64] saturates).
    std::array<std::uint64_t, LogSketch::kBucketsPerOctave + 1> edge{};
    // first_bucket[c]: the bucket holding the lowest mantissa of cell c.
    std::array<std::uint8_t, kCells> first_bucket{};
};

MantissaTables make_tables() {
    MantissaTables t;
    constexpr long double kQ63 = 9223372036854775808.0L;  // 2^63
    for (int k = 0; k < LogSketch::kBucketsPerOctave; ++k)
        t.edge[k] = static_cast<std::uint64_t>(
            std::exp2l(static_cast<long double>(k) / LogSketch::kBucketsPerOctave) * kQ63);
    t.edge[LogSketch::kBucketsPerOctave] = ~std::uint64_t{0};
    for (int c = 0; c < kCells; ++c) {
        const std::uint64_t cell_low =
            (std::uint64_t{1} << 63) | (std::uint64_t(c) << (63 - kCellBits));
        int k = 0;
        while (cell_low > t.edge[k + 1])
            ++k;
        t.first_bucket[c] = static_cast<std::uint8_t>(k);
    }
    return t;
}

// Built once at static initialisation so the hot path carries no initialisation guard.
const MantissaTables kTables = make_tables();

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
    std::uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? ~std::uint64_t{0} : r;
}

}  // namespace

int LogSketch::bucket_index(std::uint64_t value_ns) noexcept {
    const int exponent = 63 - std::countl_zero(value_ns | 1);
    const std::uint64_t mantissa = value_ns << (63 - exponent);  // Q1.63, top bit set
    const unsigned cell = static_cast<unsigned>(mantissa >> (63 - kCellBits)) & (kCells - 1);
    int k = kTables.first_bucket[cell];
    // edge[] holds truncated irrational values, so "mantissa > edge" is exactly "mantissa is past
    // the true edge"; and the saturated edge[64] can never be passed.
    k += mantissa > kTables.edge[k + 1];
    return exponent * kBucketsPerOctave + k;
}

const int LogSketch::kMinIndex = LogSketch::bucket_index(LogSketch::kMinValueNs);
const int LogSketch::kMaxIndex = LogSketch::bucket_index(LogSketch::kMaxValueNs);
const std::size_t LogSketch::kMaxBuckets =
    static_cast<std::size_t>(LogSketch::kMaxIndex - LogSketch::kMinIndex + 1);

double LogSketch::bucket_lower_bound(int index, int scale) noexcept {
    return std::exp2(std::ldexp(static_cast<double>(index), -scale));
}

double LogSketch::bucket_representative(int index, int scale) noexcept {
    // For edges L and U = gamma*L, 2LU/(L+U) is off by (gamma-1)/(gamma+1) from both.
    const double lower = bucket_lower_bound(index, scale);
    const double upper = bucket_lower_bound(index + 1, scale);
    return 2.0 * lower * upper / (lower + upper);
}

double LogSketch::relative_error(int scale) noexcept {
    const double gamma = std::exp2(std::ldexp(1.0, -scale));
    return (gamma - 1.0) / (gamma + 1.0);
}

LogSketch::LogSketch(std::size_t max_buckets) noexcept
    : max_buckets_(
          static_cast<std::uint16_t>(std::clamp<std::size_t>(max_buckets, 2, kMaxBuckets))) {}

void LogSketch::insert(std::uint64_t value_ns) noexcept {
    ++count_;
    sum_ns_ = saturating_add(sum_ns_, value_ns);
    min_ns_ = std::min(min_ns_, value_ns);
    max_ns_ = std::max(max_ns_, value_ns);
    if (value_ns < kMinValueNs) [[unlikely]] {
        ++underflow_;
        value_ns = kMinValueNs;
    } else if (value_ns > kMaxValueNs) [[unlikely]] {
        ++overflow_;
        value_ns = kMaxValueNs;
    }
    const int fine_index = bucket_index(value_ns);
    auto slot = static_cast<std::size_t>((fine_index >> shift()) - offset_);
    if (slot >= counts_.size()) [[unlikely]] {
        ensure_covers(fine_index >> shift(), fine_index >> shift());
        slot = static_cast<std::size_t>((fine_index >> shift()) - offset_);  // the scale may drop
    }
    counts_[slot] += counts_[slot] != ~std::uint32_t{0};
}

void LogSketch::insert_seconds(double seconds) noexcept {
    if (!(seconds >= 0.0)) {  // also true for NaN
        ++rejected_;
        return;
    }
    const double ns = seconds * 1e9;
    constexpr double kLimit = 18446744073709549568.0;  // largest double below 2^64
    insert(ns >= kLimit ? ~std::uint64_t{0} : static_cast<std::uint64_t>(std::llround(ns)));
}

void LogSketch::downscale(int steps) noexcept {
    if (steps <= 0) return;
    scale_ = static_cast<std::int8_t>(scale_ - steps);
    if (counts_.empty()) return;
    // Bucket i at the old scale lies within bucket i >> steps at the new one (the edges of a
    // coarser scale are a subset of the finer one's). Indices are positive (>= kMinIndex), so the
    // shift floors. Targets never lie past their source: folding in place, left to right, is safe.
    const int new_offset = offset_ >> steps;
    const int new_last = (offset_ + static_cast<int>(counts_.size()) - 1) >> steps;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        const std::uint32_t count = counts_[i];
        counts_[i] = 0;
        std::uint32_t& target = counts_[static_cast<std::size_t>(
            ((offset_ + static_cast<int>(i)) >> steps) - new_offset)];
        std::uint32_t sum;
        target = __builtin_add_overflow(target, count, &sum) ? ~std::uint32_t{0} : sum;
    }
    counts_.resize(static_cast<std::size_t>(new_last - new_offset + 1));
    offset_ = new_offset;
}

void LogSketch::ensure_covers(int lo_index, int hi_index) {
    if (!counts_.empty() && lo_index >= offset_ &&
        hi_index <= offset_ + static_cast<int>(counts_.size()) - 1)
        return;
    // The span that must fit: the new indices and the buckets in use (not the array's slack).
    int used_lo = lo_index, used_hi = hi_index;
    for (std::size_t i = 0; i < counts_.size(); ++i)
        if (counts_[i]) {
            used_lo = std::min(used_lo, offset_ + static_cast<int>(i));
            break;
        }
    for (std::size_t i = counts_.size(); i-- > 0;)
        if (counts_[i]) {
            used_hi = std::max(used_hi, offset_ + static_cast<int>(i));
            break;
        }
    // The finest scale at which that span fits the cap.
    int steps = 0;
    while ((used_hi >> steps) - (used_lo >> steps) + 1 > max_buckets_)
        ++steps;
    if (steps) {
        downscale(steps);
        lo_index >>= steps;
        hi_index >>= steps;
        used_lo >>= steps;
        used_hi >>= steps;
    }
    // Some slack beyond the span in use, so that a drifting series reallocates rarely: at first
    // 8 buckets each side (latencies of one series cluster), later a quarter of the array, at
    // most half an octave, and never past the cap.
    const int min_index = kMinIndex >> shift(), max_index = kMaxIndex >> shift();
    const int width = used_hi - used_lo + 1;
    const int wanted_slack = counts_.empty() ? 8
                                             : std::clamp(static_cast<int>(counts_.size()) / 4, 4,
                                                          kBucketsPerOctave / 2);
    const int slack = std::min(wanted_slack, (static_cast<int>(max_buckets_) - width) / 2);
    const int new_lo = std::max(min_index, used_lo - slack);
    const int new_hi = std::min(max_index, used_hi + slack);
    std::vector<std::uint32_t> grown(static_cast<std::size_t>(new_hi - new_lo + 1), 0);
    for (std::size_t i = 0; i < counts_.size(); ++i)
        if (counts_[i])
            grown[static_cast<std::size_t>(offset_ + static_cast<int>(i) - new_lo)] = counts_[i];
    counts_ = std::move(grown);
    offset_ = new_lo;
}

void LogSketch::merge(const LogSketch& other) noexcept {
    if (other.count_ == 0 && other.rejected_ == 0) return;
    rejected_ += other.rejected_;
    if (other.count_ == 0) return;
    if (other.scale_ < scale_) downscale(scale_ - other.scale_);
    int lo = 0, hi = -1;  // other's occupied buckets, at other's scale
    for (std::size_t i = 0; i < other.counts_.size(); ++i)
        if (other.counts_[i] != 0) {
            lo = other.offset_ + static_cast<int>(i);
            break;
        }
    for (std::size_t i = other.counts_.size(); i-- > 0;)
        if (other.counts_[i] != 0) {
            hi = other.offset_ + static_cast<int>(i);
            break;
        }
    if (hi >= lo) {
        ensure_covers(lo >> (other.scale_ - scale_), hi >> (other.scale_ - scale_));
        const int steps = other.scale_ - scale_;  // after ensure_covers, which may lower mine
        for (int index = lo; index <= hi; ++index) {
            const std::uint32_t theirs =
                other.counts_[static_cast<std::size_t>(index - other.offset_)];
            if (!theirs) continue;
            std::uint32_t& mine = counts_[static_cast<std::size_t>((index >> steps) - offset_)];
            std::uint32_t sum;
            mine = __builtin_add_overflow(mine, theirs, &sum) ? ~std::uint32_t{0} : sum;
        }
    }
    count_ += other.count_;
    sum_ns_ = saturating_add(sum_ns_, other.sum_ns_);
    min_ns_ = std::min(min_ns_, other.min_ns_);
    max_ns_ = std::max(max_ns_, other.max_ns_);
    underflow_ += other.underflow_;
    overflow_ += other.overflow_;
}

void LogSketch::clear() noexcept {
    if (scale_ != kScale) {
        counts_.clear();  // the offset meant another scale; the capacity stays
        scale_ = kScale;
    } else {
        std::fill(counts_.begin(), counts_.end(), 0);
    }
    count_ = sum_ns_ = max_ns_ = underflow_ = overflow_ = rejected_ = 0;
    min_ns_ = std::numeric_limits<std::uint64_t>::max();
}

double LogSketch::quantile_ns(double q) const noexcept {
    if (count_ == 0 || std::isnan(q)) return std::numeric_limits<double>::quiet_NaN();
    if (q <= 0.0) return static_cast<double>(min_ns_);
    if (q >= 1.0) return static_cast<double>(max_ns_);
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_ - 1));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        seen += counts_[i];
        if (seen > rank) {
            const double estimate = bucket_representative(offset_ + static_cast<int>(i), scale_);
            return std::clamp(estimate, static_cast<double>(min_ns_), static_cast<double>(max_ns_));
        }
    }
    return static_cast<double>(max_ns_);  // only reachable when a bucket counter saturated
}

std::size_t LogSketch::memory_bytes() const noexcept {
    return sizeof(*this) + counts_.capacity() * sizeof(std::uint32_t);
}

}  // namespace loupe::stats
