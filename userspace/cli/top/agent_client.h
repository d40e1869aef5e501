// Reads a running agent's /api/v1 for `loupe top`.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/top/rates.h"
#include "cli/top/snapshot.h"

namespace httplib {
class Client;
}

namespace loupe::top {

class AgentClient {
  public:
    // base_url: "http://HOST:PORT".
    explicit AgentClient(const std::string& base_url);
    ~AgentClient();

    bool alive();
    // A full snapshot, or nullopt with `error` set (agent gone, bad answer). Request rates are
    // current ones, from this snapshot's counters and the previous ones' (none on the first).
    std::optional<Snapshot> snapshot(std::string& error);
    // One service's HTTP routes and database operations (with current rates, as snapshot()) and
    // processes; nullopt when the service has none (the agent answers 404) or the agent cannot be
    // read.
    std::optional<Endpoints> endpoints(const std::string& service, std::string& error);
    std::optional<std::vector<ProcessRow>> processes(const std::string& service,
                                                     std::string& error);
    // The latest slow operations of a service, newest first (at most `limit`).
    std::optional<std::vector<SlowRow>> slow(const std::string& service, std::size_t limit,
                                             std::string& error);
    // The service's hottest functions over the last minute; nullopt when it has no CPU samples
    // (or the agent does not profile).
    std::optional<std::vector<HotFunction>> hot_functions(const std::string& service,
                                                          std::string& error);
    std::optional<nlohmann::json> get(const std::string& path, std::string& error);
    const std::string& base_url() const { return base_url_; }
    // How far back the request rates of the last snapshot looked, in seconds (0: no rate yet).
    double rate_span_seconds() const { return service_rates_.last_span_seconds(); }

  private:
    std::string base_url_;
    std::unique_ptr<httplib::Client> client_;
    std::uint64_t last_events_ = 0;
    std::chrono::steady_clock::time_point last_at_{};
    RateTracker service_rates_;
    RateTracker route_rates_;
    RateTracker database_rates_;
    std::string endpoint_rates_service_;  // the service route_rates_ and database_rates_ track
};

}  // namespace loupe::top
