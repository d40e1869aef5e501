// The slow-operation log: every finished request/operation over its protocol's threshold becomes
// one JSON object (time, service and its identity labels, side, protocol, operation, target,
// peer, duration, status), rate-limited by a token bucket, kept in a ring of the latest for the
// API and `loupe top`, and handed to writers (export/slow_log_file.h) as a JSON line.
//
// What an entry may hold is fixed here, whatever the protocol: the HTTP route as normalised
// (never the path or query string), the SQL statement as protocols/sql normalised it (literals
// replaced by `?`), the Redis command name; never a header value, a key, a parameter or a body.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loupe_abi.h"
#include "protocols/protocol.h"

namespace loupe::aggregate {

struct SlowLogSettings {
    // By protocol as the metrics name it ("http", "redis", "postgresql", "mysql"); a protocol not
    // named takes default_threshold. A threshold of 0 turns the log off for that protocol.
    std::map<std::string, std::chrono::nanoseconds> thresholds = {
        {"http", std::chrono::seconds(1)}, {"redis", std::chrono::milliseconds(10)}};
    std::chrono::nanoseconds default_threshold = std::chrono::milliseconds(100);
    double rate_per_second = 10;  // entries logged per second, sustained
    std::uint32_t burst = 100;    // and at once after a quiet spell
    std::size_t keep = 200;       // the latest entries kept in memory (/api/v1/slow, loupe top)
};

// The identity labels of a service (service_name, k8s_namespace, k8s_pod_name...), as the
// exporter writes them; empty: the service key is its service_name.
using IdentityLabels = std::vector<std::pair<std::string, std::string>>;

// Why a slow operation was not logged.
enum class SlowDrop : std::uint8_t { kRateLimit, kWriteError };
inline constexpr std::array<std::string_view, 2> kSlowDropReasons = {"rate_limit", "write_error"};

class SlowOperationLog {
  public:
    using WallClock = std::function<std::chrono::system_clock::time_point()>;

    explicit SlowOperationLog(SlowLogSettings settings = {}, WallClock wall_clock = nullptr);

    // The threshold of a protocol; 0: not logged.
    std::chrono::nanoseconds threshold(protocols::Protocol protocol) const;
    bool is_slow(const protocols::Request& request) const;

    // Logs `request` when it is slow and the rate allows: the entry's JSON line (no newline),
    // valid until the next call; else nullopt. `now` is CLOCK_MONOTONIC (the clock of the
    // request's timestamps); `identity` null for a service outside containers.
    std::optional<std::string_view> record(const protocols::Request& request,
                                           std::string_view service,
                                           std::string_view server_address,
                                           std::uint16_t server_port,
                                           const IdentityLabels* identity,
                                           std::chrono::nanoseconds now);
    // A writer could not take an entry that was logged.
    void count_write_error() { ++dropped_[static_cast<std::size_t>(SlowDrop::kWriteError)]; }

    // The latest entries, newest first; only `service`'s when it is not empty; at most `limit`.
    nlohmann::json latest(std::string_view service, std::size_t limit) const;

    // Slow operations seen, by protocol id (logged or dropped).
    std::uint64_t slow(protocols::Protocol protocol) const {
        return slow_[static_cast<std::size_t>(protocol) % slow_.size()];
    }
    std::uint64_t dropped(SlowDrop reason) const {
        return dropped_[static_cast<std::size_t>(reason)];
    }
    const SlowLogSettings& settings() const { return settings_; }

  private:
    bool take_token(std::chrono::nanoseconds now);

    SlowLogSettings settings_;
    WallClock wall_clock_;
    std::array<std::chrono::nanoseconds, LOUPE_PROTOCOL_COUNT> thresholds_{};
    double tokens_ = 0;
    std::chrono::nanoseconds refilled_at_{0};
    bool bucket_started_ = false;
    struct Entry {
        std::string service;
        std::string line;  // as written: valid UTF-8 JSON
    };
    std::deque<Entry> ring_;
    std::string line_;
    std::array<std::uint64_t, LOUPE_PROTOCOL_COUNT> slow_{};
    std::array<std::uint64_t, kSlowDropReasons.size()> dropped_{};
};

// RFC 3339 in UTC with milliseconds: "2026-12-03T13:45:01.123Z".
std::string rfc3339_utc(std::chrono::system_clock::time_point at);

}  // namespace loupe::aggregate
