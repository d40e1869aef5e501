// Aggregation of HTTP exchanges into bounded series: exact counters and cumulative `le` buckets for
// Prometheus, windowed sketches for p50/p95/p99 over 1 and 5 minutes.
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

#include "aggregate/route_normalizer.h"
#include "stats/series_budget.h"
#include "stats/windowed_sketch.h"

namespace loupe::aggregate {

enum class HttpSide : std::uint8_t { kServer, kClient };

struct HttpSeriesKey;

// A series key's fields, not owned: finds an existing series without building an HttpSeriesKey,
// and is the one place that orders keys (HttpSeriesKey::tie goes through it).
struct HttpSeriesKeyView {
    HttpSide side = HttpSide::kServer;
    std::string_view service, method, route, status, server_address, server_port;
    auto tie() const {
        return std::make_tuple(side, service, method, route, status, server_address, server_port);
    }
    HttpSeriesKey owned() const;
};

struct HttpSeriesKey {
    HttpSide side = HttpSide::kServer;
    std::string service;
    std::string method;
    std::string route;
    std::string status;          // "200", ..., or "none" (closed without a response)
    std::string server_address;  // client side only
    std::string server_port;     // client side only
    HttpSeriesKeyView view() const {
        return {side, service, method, route, status, server_address, server_port};
    }
    auto tie() const { return view().tie(); }
    bool operator<(const HttpSeriesKey& o) const { return tie() < o.tie(); }
};

inline HttpSeriesKey HttpSeriesKeyView::owned() const {
    return {side,
            std::string(service),
            std::string(method),
            std::string(route),
            std::string(status),
            std::string(server_address),
            std::string(server_port)};
}

// Orders keys and views alike (a transparent comparator: std::map::find takes a view).
struct HttpSeriesOrder {
    using is_transparent = void;
    bool operator()(const auto& a, const auto& b) const { return a.tie() < b.tie(); }
};

// Upper bounds (ns) of the exported histogram: the OpenTelemetry HTTP duration buckets.
inline constexpr std::array<std::uint64_t, 14> kDurationBoundsNs = {
    5'000'000,     10'000'000,    25'000'000,    50'000'000,    75'000'000,
    100'000'000,   250'000'000,   500'000'000,   750'000'000,   1'000'000'000,
    2'500'000'000, 5'000'000'000, 7'500'000'000, 10'000'000'000};

struct HttpSeries {
    stats::WindowedSketch window;
    std::array<std::uint64_t, kDurationBoundsNs.size()> buckets{};  // non-cumulative, exact
    std::uint64_t count = 0;
    std::uint64_t sum_ns = 0;
    std::chrono::nanoseconds last_update{0};
};

using HttpSeriesMap = std::map<HttpSeriesKey, HttpSeries, HttpSeriesOrder>;

// One finished exchange. The views point into the pipeline's own state: valid only during the
// call that hands the observation over (the store copies what it keeps, once per new series).
struct HttpObservation {
    HttpSide side = HttpSide::kServer;
    std::uint32_t tgid = 0;  // the process, for its identity (see attribution/)
    std::string_view service;
    std::string_view method;
    std::string_view path;  // raw path (no query); normalised here
    int status = 0;         // 0 = no response
    std::string_view server_address;
    std::uint16_t server_port = 0;
    std::uint64_t duration_ns = 0;
};

// Samples one series puts in /metrics at most: the histogram's 14 bounds, +Inf, _sum and _count,
// and per window (1m, 5m) three quantiles, _sum and _count. tests/unit checks it against the
// exporter.
inline constexpr std::size_t kSamplesPerHttpSeries = kDurationBoundsNs.size() + 3 + 2 * 5;

struct HttpStoreLimits {
    std::size_t max_series = 10'000;  // used only without a shared budget
    std::size_t max_routes_per_service = 100;
    std::chrono::nanoseconds idle_expiry = std::chrono::minutes(15);
};

class HttpMetricsStore {
  public:
    static constexpr const char* kOverflowRoute = "/{overflow}";

    // With `budget`, each new series takes kSamplesPerHttpSeries from it (shared with the other
    // exported series) instead of counting against limits.max_series.
    explicit HttpMetricsStore(HttpStoreLimits limits = {}, stats::SeriesBudget* budget = nullptr);

    // `now` is CLOCK_MONOTONIC, the same clock as the kernel's timestamps.
    void record(const HttpObservation& obs, std::chrono::nanoseconds now);
    // Drops series idle for longer than limits.idle_expiry. Returns how many were removed.
    std::size_t expire_idle(std::chrono::nanoseconds now);

    const HttpSeriesMap& series() const { return series_; }
    std::uint64_t series_dropped() const { return series_dropped_; }
    std::uint64_t routes_overflowed() const { return routes_overflowed_; }
    std::size_t memory_bytes() const;

  private:
    // The series of a key not seen yet: created, or the overflow route's when its service has
    // too many routes; series_.end() when the series cap is reached.
    HttpSeriesMap::iterator add_series(HttpSeriesKeyView key);
    // Whether a route new to its service may have its own series now (see routes_seen_once_).
    bool seen_before(std::string_view service, std::string_view route, std::size_t routes_admitted);

    HttpStoreLimits limits_;
    std::unique_ptr<stats::SeriesBudget> own_budget_;
    stats::SeriesBudget* budget_;
    RouteNormalizer normalizer_;
    HttpSeriesMap series_;
    std::unordered_map<std::string, std::unordered_set<std::string>> routes_by_service_;
    // Past half its route budget, a service's new route gets a series at its second request: the
    // first one is counted under the overflow route and its hash kept here (at most
    // max_routes_per_service per service, forgotten all at once when full), so one-off paths
    // (scanners, typos) cannot take the rest of the budget.
    std::unordered_map<std::string, std::unordered_set<std::size_t>> routes_seen_once_;
    std::uint64_t series_dropped_ = 0;
    std::uint64_t routes_overflowed_ = 0;
};

// Label value for a status code, written into `digits`: "none" when the connection closed
// without a response.
std::string_view status_label(int status, std::array<char, 3>& digits);
// Whether a status counts as an error: 5xx for servers; 4xx, 5xx and no response for clients;
// no response for servers too (the request got no answer).
bool is_error_status(HttpSide side, const std::string& status);

}  // namespace loupe::aggregate
