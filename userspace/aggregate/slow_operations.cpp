#include "aggregate/slow_operations.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "aggregate/request_metrics.h"
#include "protocols/registry.h"

namespace loupe::aggregate {

std::string rfc3339_utc(std::chrono::system_clock::time_point at) {
    const auto since_epoch = at.time_since_epoch();
    const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    const std::time_t t = seconds.count();
    std::tm utc{};
    ::gmtime_r(&t, &utc);
    char text[40];
    const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(text + n, sizeof text - n, ".%03dZ", static_cast<int>(millis));
    return text;
}

SlowOperationLog::SlowOperationLog(SlowLogSettings settings, WallClock wall_clock)
    : settings_(std::move(settings)),
      wall_clock_(wall_clock ? std::move(wall_clock)
                             : [] { return std::chrono::system_clock::now(); }),
      tokens_(settings_.burst) {
    thresholds_.fill(settings_.default_threshold);
    for (const auto& protocol : protocols::all_protocols()) {
        const auto it = settings_.thresholds.find(std::string(protocol.metrics->system));
        if (it != settings_.thresholds.end())
            thresholds_[static_cast<std::size_t>(protocol.id) % thresholds_.size()] = it->second;
    }
}

std::chrono::nanoseconds SlowOperationLog::threshold(protocols::Protocol protocol) const {
    return thresholds_[static_cast<std::size_t>(protocol) % thresholds_.size()];
}

bool SlowOperationLog::is_slow(const protocols::Request& request) const {
    const auto limit = threshold(request.protocol);
    if (limit.count() <= 0 || request.end_ns < request.start_ns) return false;
    return request.end_ns - request.start_ns >= static_cast<std::uint64_t>(limit.count());
}

bool SlowOperationLog::take_token(std::chrono::nanoseconds now) {
    if (!bucket_started_) {
        bucket_started_ = true;
        refilled_at_ = now;
    }
    if (now > refilled_at_) {
        const double elapsed = std::chrono::duration<double>(now - refilled_at_).count();
        tokens_ = std::min<double>(settings_.burst, tokens_ + elapsed * settings_.rate_per_second);
        refilled_at_ = now;
    }
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
}

std::optional<std::string_view> SlowOperationLog::record(
    const protocols::Request& request, std::string_view service, std::string_view server_address,
    std::uint16_t server_port, const IdentityLabels* identity, std::chrono::nanoseconds now) {
    if (!is_slow(request)) return std::nullopt;
    const protocols::MetricSpec* spec = metric_spec(request.protocol);
    if (!spec) return std::nullopt;
    ++slow_[static_cast<std::size_t>(request.protocol) % slow_.size()];
    if (!take_token(now)) {
        ++dropped_[static_cast<std::size_t>(SlowDrop::kRateLimit)];
        return std::nullopt;
    }

    const std::uint64_t duration_ns = request.end_ns - request.start_ns;
    // When it ended, on the wall clock: the request's monotonic end, as long ago as it was.
    const auto ago =
        now.count() > static_cast<std::int64_t>(request.end_ns)
            ? std::chrono::nanoseconds(now.count() - static_cast<std::int64_t>(request.end_ns))
            : std::chrono::nanoseconds(0);
    const auto ended =
        wall_clock_() - std::chrono::duration_cast<std::chrono::system_clock::duration>(ago);

    const bool client = request.side == protocols::Side::kClient;
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();  // fields in reading order
    entry["time"] = rfc3339_utc(ended);
    entry["service"] = std::string(service);
    if (identity && !identity->empty()) {
        nlohmann::ordered_json labels = nlohmann::ordered_json::object();
        for (const auto& [name, value] : *identity)
            labels[name] = value;
        entry["labels"] = std::move(labels);
    }
    entry["side"] = client ? "client" : "server";
    entry["protocol"] = std::string(spec->system);
    if (!request.system_name.empty()) entry["system"] = std::string(request.system_name);
    entry["operation"] = std::string(request.operation);
    // Only what the metrics may show: the route (never the path as sent), the SQL summary.
    if (spec->normalize_target) {
        const std::string target = spec->normalize_target(request.target);
        if (!target.empty()) entry["target"] = target;
    } else if (spec->database && !request.target.empty()) {
        entry["target"] = std::string(request.target);  // SQL: the query summary
    }
    if (!request.statement.empty()) entry["statement"] = std::string(request.statement);
    if (!request.db_namespace.empty()) entry["namespace"] = std::string(request.db_namespace);
    if (client && !server_address.empty()) {
        const bool v6 = server_address.find(':') != std::string_view::npos;
        entry["peer"] = (v6 ? "[" : "") + std::string(server_address) + (v6 ? "]:" : ":") +
                        std::to_string(server_port);
    }
    entry["duration_seconds"] = static_cast<double>(duration_ns) / 1e9;
    std::array<char, 16> scratch{};
    const std::string_view status = spec->status ? spec->status(request, scratch) : "";
    if (!status.empty()) entry["status"] = std::string(status);
    if (!request.error.empty()) entry["error"] = std::string(request.error);

    // Invalid UTF-8 (a command name as sent) is replaced, not thrown on.
    line_ = entry.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    ring_.push_front(Entry{std::string(service), line_});
    while (ring_.size() > settings_.keep)
        ring_.pop_back();
    return std::string_view(line_);
}

nlohmann::json SlowOperationLog::latest(std::string_view service, std::size_t limit) const {
    nlohmann::json out = nlohmann::json::array();
    for (const Entry& e : ring_) {
        if (out.size() >= limit) break;
        if (!service.empty() && e.service != service) continue;
        out.push_back(nlohmann::json::parse(e.line));
    }
    return out;
}

}  // namespace loupe::aggregate
