// Current request rates for `loupe top`, from the cumulative request counters of consecutive API
// snapshots. The API's own "rps" is a 1-minute average: 5 s into a load it shows a twelfth of the
// rate, and a minute after the load stopped it still shows some.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cli/top/snapshot.h"

namespace loupe::top {

class RateTracker {
  public:
    using Clock = std::chrono::steady_clock;

    // `span`: how far back the rate looks. Samples are kept back to `span`; when refreshes are
    // further apart than that, the rate covers the last refresh interval.
    explicit RateTracker(std::chrono::milliseconds span = std::chrono::seconds(3)) : span_(span) {}

    // Records the counter `total` of `key` at `at`. Returns the rate per second over the samples
    // of the last `span` (at least the previous one), or nullopt for a key's first sample and
    // after its counter went back (the series was evicted, or the agent restarted).
    std::optional<double> update(const std::string& key, std::uint64_t total, Clock::time_point at);

    // Forgets the keys not updated since `before` (services that are gone).
    void forget_older_than(Clock::time_point before);

    // How far back the rates of the last snapshot looked, in seconds: the longest of the rates
    // computed at the last `at` (a key seen for the second time looks back one refresh only).
    // 0 when none was.
    double last_span_seconds() const { return last_span_seconds_; }

    void clear() { history_.clear(); }

  private:
    struct Sample {
        Clock::time_point at;
        std::uint64_t total;
    };
    std::chrono::milliseconds span_;
    std::unordered_map<std::string, std::deque<Sample>> history_;
    double last_span_seconds_ = 0;
    Clock::time_point last_at_{};
};

// Sets the current `rps` of each row with HTTP traffic from its `requests_total` (and a service's
// `db_rps` from its `db_requests_total`), and forgets the rows that are gone. One tracker per kind
// of row (services, a service's routes, its database operations).
void apply_rates(std::vector<ServiceRow>& rows, RateTracker& rates,
                 RateTracker::Clock::time_point at);
void apply_rates(std::vector<RouteRow>& rows, RateTracker& rates,
                 RateTracker::Clock::time_point at);
void apply_rates(std::vector<DbRow>& rows, RateTracker& rates, RateTracker::Clock::time_point at);

}  // namespace loupe::top
