// Aggregation of every protocol's requests into bounded series: exact counters and cumulative
// `le` buckets for Prometheus, windowed sketches for p50/p95/p99 over 1 and 5 minutes. A series
// is keyed by protocol and side, and what each protocol's MetricSpec says its labels are.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "protocols/metric_spec.h"
#include "protocols/protocol.h"
#include "stats/series_budget.h"
#include "stats/windowed_sketch.h"

namespace loupe::aggregate {

using protocols::Protocol;
using protocols::Side;

struct SeriesKey;

// A series key's fields, not owned: finds an existing series without building a SeriesKey, and
// is the one place that orders keys (SeriesKey::tie goes through it).
struct SeriesKeyView {
    Protocol protocol = Protocol::kUnknown;
    Side side = Side::kServer;
    std::string_view service, operation, target, status, db_namespace, server_address, server_port,
        collection, system, url_scheme;
    auto tie() const {
        return std::make_tuple(protocol, side, service, operation, target, status, db_namespace,
                               server_address, server_port, collection, system, url_scheme);
    }
    SeriesKey owned() const;
    std::string_view field(protocols::KeyField f) const;
};

struct SeriesKey {
    Protocol protocol = Protocol::kUnknown;
    Side side = Side::kServer;
    std::string service;
    std::string operation;       // HTTP method; database operation name
    std::string target;          // HTTP route; empty for databases
    std::string status;          // HTTP "200" or "none"; a database's error prefix, or empty
    std::string db_namespace;    // databases: the database (Redis: its number)
    std::string server_address;  // client side only
    std::string server_port;     // client side only
    std::string collection;      // SQL: the one table a statement names
    std::string system;          // db_system_name when the protocol's spec does not fix it
    std::string url_scheme;      // "http" or "https" (TLS), when the protocol's labels have it
    SeriesKeyView view() const {
        return {protocol,     side,           service,     operation,  target, status,
                db_namespace, server_address, server_port, collection, system, url_scheme};
    }
    auto tie() const { return view().tie(); }
    bool operator<(const SeriesKey& o) const { return tie() < o.tie(); }
    std::string_view field(protocols::KeyField f) const { return view().field(f); }
};

inline SeriesKey SeriesKeyView::owned() const {
    return {protocol,
            side,
            std::string(service),
            std::string(operation),
            std::string(target),
            std::string(status),
            std::string(db_namespace),
            std::string(server_address),
            std::string(server_port),
            std::string(collection),
            std::string(system),
            std::string(url_scheme)};
}

// Orders keys and views alike (a transparent comparator: std::map::find takes a view).
struct SeriesOrder {
    using is_transparent = void;
    bool operator()(const auto& a, const auto& b) const { return a.tie() < b.tie(); }
};

inline constexpr std::size_t kMaxBounds = 16;

// Cache hits and misses over the last 5 minutes in 10-second slices, for windowed hit ratios
// (480 bytes; only series that saw a cache lookup have one).
class CacheWindow {
  public:
    void add(std::uint32_t hits, std::uint32_t misses, std::chrono::nanoseconds now) noexcept;
    // Hits and misses in the slices covering `span` ending at `now` (as WindowedSketch counts).
    std::pair<std::uint64_t, std::uint64_t> window(std::chrono::nanoseconds span,
                                                   std::chrono::nanoseconds now) const noexcept;

  private:
    static constexpr std::int64_t kSliceNs = 10'000'000'000;
    struct Slice {
        std::int64_t epoch = -1;
        std::uint32_t hits = 0, misses = 0;
    };
    std::array<Slice, 30> slices_{};
};

// The unit of the cumulative sketches: 2^-30 s (about 0.93 ns). A LogSketch's bucket edges are
// powers of 2^(2^-scale) of its unit, so in this unit they are exactly the edges of an
// OpenTelemetry exponential histogram in seconds (index shifted by 30 * 2^scale), which in
// nanoseconds (10^9 is no power of two) they are not.
inline constexpr int kBinarySecondShift = 30;
// A duration in nanoseconds in that unit, rounded down (exact integer arithmetic:
// 2^30 / 10^9 = 2^21 / 1953125); durations past 2^43 ns (2.4 h) are clamped there, far beyond
// the sketch's own clamp (kMaxValueNs units, 56 min).
constexpr std::uint64_t to_binary_units(std::uint64_t ns) noexcept {
    constexpr std::uint64_t kMaxNs = (std::uint64_t{1} << 43) - 1;
    return ((ns < kMaxNs ? ns : kMaxNs) << 21) / 1953125;
}

struct Series {
    stats::WindowedSketch window;
    // Every duration since the series began, in 2^-30 s units (to_binary_units), capped at
    // kCumulativeBuckets counters: OTLP's exponential histogram. Only when the store was asked for
    // it (StoreLimits::cumulative_sketches).
    std::unique_ptr<stats::LogSketch> cumulative;
    std::uint64_t id = 0;  // unique in the store, never reused: exemplars name their series by it
    std::array<std::uint64_t, kMaxBounds> buckets{};  // non-cumulative, exact; the spec's bounds
    std::uint64_t count = 0;
    std::uint64_t sum_ns = 0;
    std::uint64_t cache_hits = 0;  // since the series began
    std::uint64_t cache_misses = 0;
    std::unique_ptr<CacheWindow> cache_window;
    std::chrono::nanoseconds last_update{0};
};

using SeriesMap = std::map<SeriesKey, Series, SeriesOrder>;

// Where a request happened, beside the request itself. Views valid during record() only.
struct RequestContext {
    std::string_view service{};         // the identity key of the process (attribution/)
    std::string_view server_address{};  // the peer, for client-side requests
    std::uint16_t server_port{0};
};

struct StoreLimits {
    std::size_t max_series = 10'000;  // used only without a shared budget
    // Values of each protocol's capped dimension (HTTP routes, command names) per service.
    std::size_t max_targets_per_service = 100;
    std::chrono::nanoseconds idle_expiry = std::chrono::minutes(15);
    // Each series also keeps a cumulative sketch (Series::cumulative), for OTLP's exponential
    // histograms.
    bool cumulative_sketches = false;
};

// Counters of a cumulative sketch at most: OpenTelemetry SDKs' default max_size of an exponential
// histogram (scale 6 holds a spread of 5.6x, 5 of 32x, 4 of 1,024x, 3 of 10^6x).
inline constexpr std::size_t kCumulativeBuckets = 160;

// The metric spec of a protocol (its registry entry); null for a protocol not registered.
const protocols::MetricSpec* metric_spec(Protocol protocol);

class RequestMetricsStore {
  public:
    // With `budget`, each new series takes its spec's samples_per_series() from it (shared with
    // the other exported series) instead of counting against limits.max_series.
    explicit RequestMetricsStore(StoreLimits limits = {}, stats::SeriesBudget* budget = nullptr);

    // `now` is CLOCK_MONOTONIC, the same clock as the kernel's timestamps. Returns the id of the
    // series that counted the request (Series::id), 0 when none did.
    std::uint64_t record(const protocols::Request& request, const RequestContext& context,
                         std::chrono::nanoseconds now);
    // Drops series idle for longer than limits.idle_expiry. Returns how many were removed.
    std::size_t expire_idle(std::chrono::nanoseconds now);

    const SeriesMap& series() const { return series_; }
    std::uint64_t series_dropped() const { return series_dropped_; }
    // Requests whose capped dimension went to the overflow value, by protocol.
    std::uint64_t overflowed(Protocol protocol) const;
    // The same by the key's system (db_system_name when the protocol's spec does not fix it, as
    // MySQL's "mysql"/"mariadb"; empty: the spec's constant).
    const std::map<std::string, std::uint64_t, std::less<>>& overflowed_by_system(
        Protocol protocol) const;
    std::size_t memory_bytes() const;

  private:
    // The series of a key not seen yet: created, or the overflow value's when its service has
    // too many; series_.end() when the series budget is spent.
    SeriesMap::iterator add_series(SeriesKeyView key, const protocols::MetricSpec& spec);
    // Past half its budget of the capped dimension, a service's new value gets a series of its
    // own only from its second request (the first goes to the overflow value), so that one-off
    // values (scanners, random URLs) do not take the budget first.
    bool seen_before(const std::string& cap_key, std::string_view value, std::size_t admitted);

    // The normalised form of a request's target (an HTTP route), from the cache of recent ones:
    // normalising built a string per request, ~20 % of the pipeline's CPU (BM_PipelineHttpServer),
    // and a service's paths repeat. Valid until the next call.
    std::string_view normalized_target(const protocols::Request& request,
                                       const protocols::MetricSpec& spec);

    struct TransparentHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    // Per protocol: raw target -> normalised. Bounded: emptied when full; targets longer than
    // kMaxCachedTarget are normalised every time (they rarely repeat).
    static constexpr std::size_t kTargetCacheEntries = 4096;
    static constexpr std::size_t kMaxCachedTarget = 256;
    std::array<std::unordered_map<std::string, std::string, TransparentHash, std::equal_to<>>,
               LOUPE_PROTOCOL_COUNT>
        target_cache_;
    std::string uncached_target_;

    StoreLimits limits_;
    std::unique_ptr<stats::SeriesBudget> own_budget_;
    stats::SeriesBudget* budget_;
    SeriesMap series_;
    // By "<protocol>/<service>": the values of the capped dimension admitted, and the hashes of
    // those seen once (bounded).
    std::unordered_map<std::string, std::unordered_set<std::string>> capped_values_;
    std::unordered_map<std::string, std::unordered_set<std::size_t>> seen_once_;
    std::uint64_t series_dropped_ = 0;
    std::uint64_t next_series_id_ = 1;
    std::array<std::uint64_t, LOUPE_PROTOCOL_COUNT> overflowed_{};
    std::array<std::map<std::string, std::uint64_t, std::less<>>, LOUPE_PROTOCOL_COUNT>
        overflowed_by_system_;
};

// Whether a series counts as failed, by its protocol's rule.
bool is_error(const SeriesKey& key);

}  // namespace loupe::aggregate
