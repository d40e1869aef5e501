#include "cli/top/rates.h"

#include <algorithm>

namespace loupe::top {

std::optional<double> RateTracker::update(const std::string& key, std::uint64_t total,
                                          Clock::time_point at) {
    if (at != last_at_) {
        last_at_ = at;
        last_span_seconds_ = 0;
    }
    auto& samples = history_[key];
    if (!samples.empty() && (total < samples.back().total || at <= samples.back().at))
        samples.clear();  // counter reset, or a clock that did not move: start over
    samples.push_back({at, total});
    // Keep the oldest sample still within the span, and always the previous one.
    while (samples.size() > 2 && at - samples[1].at >= span_)
        samples.pop_front();
    if (samples.size() < 2) return std::nullopt;
    const auto& from = samples.front();
    const double seconds = std::chrono::duration<double>(at - from.at).count();
    last_span_seconds_ = std::max(last_span_seconds_, seconds);
    return static_cast<double>(total - from.total) / seconds;
}

void RateTracker::forget_older_than(Clock::time_point before) {
    for (auto it = history_.begin(); it != history_.end();) {
        if (it->second.empty() || it->second.back().at < before)
            it = history_.erase(it);
        else
            ++it;
    }
}

void apply_rates(std::vector<ServiceRow>& rows, RateTracker& rates,
                 RateTracker::Clock::time_point at) {
    for (auto& row : rows) {
        if (row.has_http)
            row.rps = rates.update(row.side + '\0' + row.name, row.requests_total, at);
        if (row.has_db)
            row.db_rps =
                rates.update(std::string("db") + '\0' + row.name, row.db_requests_total, at);
    }
    rates.forget_older_than(at);
}

void apply_rates(std::vector<RouteRow>& rows, RateTracker& rates,
                 RateTracker::Clock::time_point at) {
    for (auto& row : rows)
        row.rps =
            rates.update(row.side + '\0' + row.method + '\0' + row.route, row.requests_total, at);
    rates.forget_older_than(at);
}

void apply_rates(std::vector<DbRow>& rows, RateTracker& rates, RateTracker::Clock::time_point at) {
    for (auto& row : rows)
        row.rps = rates.update(row.system + '\0' + row.side + '\0' + row.operation,
                               row.requests_total, at);
    rates.forget_older_than(at);
}

}  // namespace loupe::top
