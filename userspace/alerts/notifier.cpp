#include "alerts/notifier.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "util/url.h"

namespace loupe::alerts {

// One receiver: its queue, its thread, its counters. Documents are shared between receivers
// (serialised once) and sent in the order they were queued.
class Notifier::Receiver {
  public:
    Receiver(std::string name, const std::string& url, std::string path, const Options& options)
        : options_(options) {
        counters_.receiver = std::move(name);
        auto [base, url_path] = util::split_url(url);
        base_ = std::move(base);
        path_ = path.empty() ? std::move(url_path) : std::move(path);
        // Logged as scheme://host:port: no path or query, no user:password@ (a URL may carry a
        // token in any of them).
        shown_ = base_;
        if (const auto scheme = shown_.find("://"), at = shown_.rfind('@');
            scheme != std::string::npos && at != std::string::npos && at > scheme)
            shown_.erase(scheme + 3, at + 1 - (scheme + 3));
        thread_ = std::thread([this] { run(); });
    }

    ~Receiver() {
        std::unique_lock lock(mutex_);
        stopping_ = true;
        wake_.notify_all();
        // A request in flight would otherwise hold the agent's exit for its timeouts. stop() only
        // interrupts a request whose connection is made: it is repeated until the thread ends (a
        // connection being made takes at most connect_timeout).
        while (!finished_) {
            if (in_flight_) in_flight_->stop();
            wake_.wait_for(lock, std::chrono::milliseconds(10), [this] { return finished_; });
        }
        lock.unlock();
        thread_.join();
    }

    void enqueue(const std::shared_ptr<const std::string>& body) {
        {
            std::lock_guard lock(mutex_);
            if (queue_.size() >= options_.max_queue) {
                queue_.pop_front();  // the newest state matters most
                ++counters_.dropped;
            }
            queue_.push_back(body);
        }
        wake_.notify_one();
    }

    const std::string& name() const { return counters_.receiver; }  // set once, at start

    ReceiverCounters counters() const {
        std::lock_guard lock(mutex_);
        ReceiverCounters out = counters_;
        out.queued = queue_.size();
        return out;
    }

  private:
    bool post(const std::string& body) {
        httplib::Client client(base_);
        client.set_connection_timeout(options_.connect_timeout);
        client.set_read_timeout(options_.io_timeout);
        client.set_write_timeout(options_.io_timeout);
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return false;
            in_flight_ = &client;
        }
        const auto res = client.Post(path_, body, "application/json");
        std::lock_guard lock(mutex_);
        in_flight_ = nullptr;
        return res && res->status >= 200 && res->status < 300;
    }

    void run() {
        send_all();
        std::lock_guard lock(mutex_);
        finished_ = true;
        wake_.notify_all();
    }

    void send_all() {
        while (true) {
            std::shared_ptr<const std::string> body;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
                if (stopping_) return;
                body = std::move(queue_.front());
                queue_.pop_front();
            }
            auto backoff = options_.first_backoff;
            bool delivered = false;
            for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
                if (post(*body)) {
                    delivered = true;
                    break;
                }
                std::unique_lock lock(mutex_);
                if (stopping_) return;
                ++counters_.failed_attempts;
                if (attempt == options_.max_attempts) break;
                spdlog::warn("alert delivery to {} ({}) failed (attempt {}/{}), retrying in {} ms",
                             counters_.receiver, shown_, attempt, options_.max_attempts,
                             backoff.count());
                wake_.wait_for(lock, backoff, [this] { return stopping_; });
                if (stopping_) return;
                backoff = std::min(backoff * 2, options_.max_backoff);
            }
            std::lock_guard lock(mutex_);
            if (delivered) {
                ++counters_.sent;
            } else {
                ++counters_.dropped;
                spdlog::warn("alert delivery to {} ({}) failed {} times: document dropped",
                             counters_.receiver, shown_, options_.max_attempts);
            }
        }
    }

    const Options& options_;
    std::string base_, path_, shown_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::shared_ptr<const std::string>> queue_;
    ReceiverCounters counters_;
    bool stopping_ = false;
    bool finished_ = false;                 // the thread is done with every request
    httplib::Client* in_flight_ = nullptr;  // the request being sent, for stop()
    std::thread thread_;
};

Notifier::Notifier(Options options) : options_(std::move(options)) {
    if (!options_.alertmanager_url.empty()) {
        const auto prefix = util::split_url(options_.alertmanager_url).second;
        receivers_.push_back(
            std::make_unique<Receiver>("alertmanager", options_.alertmanager_url,
                                       (prefix == "/" ? "" : prefix) + "/api/v2/alerts", options_));
    }
    if (!options_.webhook_url.empty())
        receivers_.push_back(
            std::make_unique<Receiver>("webhook", options_.webhook_url, "", options_));
}

Notifier::~Notifier() = default;

void Notifier::enqueue(const nlohmann::json& alerts) {
    if (receivers_.empty() || alerts.empty()) return;
    // Replace, not throw: a label may carry a process name that is not UTF-8.
    const auto body = std::make_shared<const std::string>(
        alerts.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    for (auto& receiver : receivers_)
        receiver->enqueue(body);
}

NotifierCounters Notifier::counters() const {
    NotifierCounters out;
    for (const char* name : {"alertmanager", "webhook"}) {
        const auto it = std::find_if(receivers_.begin(), receivers_.end(),
                                     [&](const auto& r) { return r->name() == name; });
        out.push_back(it != receivers_.end() ? (*it)->counters() : ReceiverCounters{name});
    }
    return out;
}

}  // namespace loupe::alerts
