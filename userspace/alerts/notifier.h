// Delivers alert notifications to Alertmanager (API v2) and a generic JSON webhook. Each receiver
// has its own bounded queue and its own sender thread, so a receiver that hangs or fails delays
// only its own deliveries: retries with exponential back-off, connect/read/write timeouts, the
// oldest document dropped (and counted) when a queue is full, never blocking the evaluation.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loupe::alerts {

struct ReceiverCounters {
    std::string receiver;  // "alertmanager" or "webhook"
    std::uint64_t sent = 0;
    std::uint64_t failed_attempts = 0;
    std::uint64_t dropped = 0;  // queue full, or every attempt failed
    std::size_t queued = 0;
};
// Alertmanager's, then the webhook's; zeros for one that is not configured (the series exist
// from the start, as Prometheus counters with known labels should).
using NotifierCounters = std::vector<ReceiverCounters>;

class Notifier {
  public:
    struct Options {
        std::string alertmanager_url;  // base URL; POST {url}/api/v2/alerts
        std::string webhook_url;       // full URL; POST the same document
        std::size_t max_queue = 64;    // documents waiting per receiver
        int max_attempts = 5;
        std::chrono::milliseconds first_backoff{500};
        std::chrono::milliseconds max_backoff{8000};
        std::chrono::milliseconds connect_timeout{2000};
        // Each read and each write of a request: a receiver that accepts the connection and never
        // answers fails the attempt after this long.
        std::chrono::milliseconds io_timeout{2000};
    };

    explicit Notifier(Options options);
    ~Notifier();
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    bool enabled() const { return !receivers_.empty(); }
    // Queues one Alertmanager document (an array of alerts) for every receiver; never blocks.
    void enqueue(const nlohmann::json& alerts);
    NotifierCounters counters() const;

  private:
    class Receiver;
    Options options_;  // before receivers_: they read it until they stop
    std::vector<std::unique_ptr<Receiver>> receivers_;
};

}  // namespace loupe::alerts
