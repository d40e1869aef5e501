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

double LogSketch::bucket_lower_bound(int index) noexcept {
    return std::exp2(static_cast<double>(index) / kBucketsPerOctave);
}

double LogSketch::bucket_representative(int index) noexcept {
    // For edges L and U = gamma*L, 2LU/(L+U) is off by (gamma-1)/(gamma+1) from both.
    const double lower = bucket_lower_bound(index);
    const double upper = bucket_lower_bound(index + 1);
    return 2.0 * lower * upper / (lower + upper);
}

double LogSketch::relative_error() noexcept {
    const double gamma = std::exp2(1.0 / kBucketsPerOctave);
    return (gamma - 1.0) / (gamma + 1.0);
}

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
    const int index = bucket_index(value_ns);
    auto slot = static_cast<std::size_t>(index - offset_);
    if (slot >= counts_.size()) [[unlikely]] {
        ensure_covers(index, index);
        slot = static_cast<std::size_t>(index - offset_);
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

void LogSketch::ensure_covers(int lo_index, int hi_index) {
    if (counts_.empty()) {
        // Start with some headroom on both sides: latencies of one series cluster, and this avoids
        // a reallocation for each of the first few distinct buckets.
        constexpr int kInitialHalfSpan = 8;
        const int lo = std::max(kMinIndex, lo_index - kInitialHalfSpan);
        const int hi = std::min(kMaxIndex, hi_index + kInitialHalfSpan);
        offset_ = lo;
        counts_.assign(static_cast<std::size_t>(hi - lo + 1), 0);
        return;
    }
    const int cur_lo = offset_;
    const int cur_hi = offset_ + static_cast<int>(counts_.size()) - 1;
    if (lo_index >= cur_lo && hi_index <= cur_hi) return;
    // Grow with some slack in the needed direction so a drifting series reallocates rarely; the
    // slack is capped (half an octave) so a sketch holds little beyond the span it has seen.
    const int slack = std::clamp(static_cast<int>(counts_.size()) / 4, 4, kBucketsPerOctave / 2);
    const int new_lo = lo_index < cur_lo ? std::max(kMinIndex, lo_index - slack) : cur_lo;
    const int new_hi = hi_index > cur_hi ? std::min(kMaxIndex, hi_index + slack) : cur_hi;
    std::vector<std::uint32_t> grown(static_cast<std::size_t>(new_hi - new_lo + 1), 0);
    std::copy(counts_.begin(), counts_.end(), grown.begin() + (cur_lo - new_lo));
    counts_ = std::move(grown);
    offset_ = new_lo;
}

void LogSketch::merge(const LogSketch& other) noexcept {
    if (other.count_ == 0 && other.rejected_ == 0) return;
    rejected_ += other.rejected_;
    if (other.count_ == 0) return;
    int lo = 0, hi = -1;
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
        ensure_covers(lo, hi);
        for (int index = lo; index <= hi; ++index) {
            std::uint32_t& mine = counts_[static_cast<std::size_t>(index - offset_)];
            const std::uint32_t theirs =
                other.counts_[static_cast<std::size_t>(index - other.offset_)];
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
    std::fill(counts_.begin(), counts_.end(), 0);
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
            const double estimate = bucket_representative(offset_ + static_cast<int>(i));
            return std::clamp(estimate, static_cast<double>(min_ns_), static_cast<double>(max_ns_));
        }
    }
    return static_cast<double>(max_ns_);  // only reachable when a bucket counter saturated
}

std::size_t LogSketch::memory_bytes() const noexcept {
    return sizeof(*this) + counts_.capacity() * sizeof(std::uint32_t);
}

}  // namespace loupe::stats
