// Delivers alert notifications to Alertmanager (API v2) and a generic JSON webhook, from its own
// thread: retries with exponential back-off, a bounded queue (the oldest goes first when full),
// never blocking the evaluation.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace loupe::alerts {

struct NotifierCounters {
    std::uint64_t sent = 0;
    std::uint64_t failed_attempts = 0;
    std::uint64_t dropped = 0;  // queue full, or every retry failed
};

class Notifier {
  public:
    struct Options {
        std::string alertmanager_url;  // base URL; POST {url}/api/v2/alerts
        std::string webhook_url;       // full URL; POST the same document
        std::size_t max_queue = 256;
        int max_attempts = 5;
        std::chrono::milliseconds first_backoff{500};
        std::chrono::milliseconds max_backoff{8000};
        std::chrono::milliseconds timeout{2000};
    };

    explicit Notifier(Options options);
    ~Notifier();
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    bool enabled() const {
        return !options_.alertmanager_url.empty() || !options_.webhook_url.empty();
    }
    // Queues one Alertmanager document (an array of alerts); never blocks.
    void enqueue(nlohmann::json alerts);
    NotifierCounters counters() const;
    std::size_t queued() const;

  private:
    void run();
    bool post(const std::string& url, const std::string& path, const std::string& body);

    Options options_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<nlohmann::json> queue_;
    NotifierCounters counters_;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace loupe::alerts
