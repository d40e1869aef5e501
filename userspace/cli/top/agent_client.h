// Reads a running agent's /api/v1 for `loupe top`.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

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
    // A full snapshot, or nullopt with `error` set (agent gone, bad answer).
    std::optional<Snapshot> snapshot(std::string& error);
    std::optional<nlohmann::json> get(const std::string& path, std::string& error);
    const std::string& base_url() const { return base_url_; }

  private:
    std::string base_url_;
    std::unique_ptr<httplib::Client> client_;
    std::uint64_t last_events_ = 0;
    std::chrono::steady_clock::time_point last_at_{};
};

}  // namespace loupe::top
