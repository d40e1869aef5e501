#include "alerts/notifier.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "util/url.h"

namespace loupe::alerts {

Notifier::Notifier(Options options) : options_(std::move(options)) {
    if (enabled()) thread_ = std::thread([this] { run(); });
}

Notifier::~Notifier() {
    stopping_ = true;
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Notifier::enqueue(nlohmann::json alerts) {
    if (!enabled() || alerts.empty()) return;
    {
        std::lock_guard lock(mutex_);
        if (queue_.size() >= options_.max_queue) {
            queue_.pop_front();  // the newest state matters most
            ++counters_.dropped;
        }
        queue_.push_back(std::move(alerts));
    }
    wake_.notify_one();
}

NotifierCounters Notifier::counters() const {
    std::lock_guard lock(mutex_);
    return counters_;
}

std::size_t Notifier::queued() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
}

bool Notifier::post(const std::string& base, const std::string& path, const std::string& body) {
    httplib::Client client(base);
    client.set_connection_timeout(options_.timeout);
    client.set_read_timeout(options_.timeout);
    client.set_write_timeout(options_.timeout);
    const auto res = client.Post(path, body, "application/json");
    return res && res->status >= 200 && res->status < 300;
}

void Notifier::run() {
    while (!stopping_) {
        nlohmann::json doc;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            doc = std::move(queue_.front());
            queue_.pop_front();
        }
        const std::string body = doc.dump();
        struct Target {
            std::string base, path;
        };
        std::vector<Target> targets;
        if (!options_.alertmanager_url.empty()) {
            auto [base, prefix] = util::split_url(options_.alertmanager_url);
            targets.push_back({base, (prefix == "/" ? "" : prefix) + "/api/v2/alerts"});
        }
        if (!options_.webhook_url.empty()) {
            auto [base, path] = util::split_url(options_.webhook_url);
            targets.push_back({base, path});
        }
        for (const auto& target : targets) {
            auto backoff = options_.first_backoff;
            bool delivered = false;
            for (int attempt = 1; attempt <= options_.max_attempts && !stopping_; ++attempt) {
                if (post(target.base, target.path, body)) {
                    delivered = true;
                    break;
                }
                {
                    std::lock_guard lock(mutex_);
                    ++counters_.failed_attempts;
                }
                spdlog::warn("alert delivery to {}{} failed (attempt {}/{}), retrying in {} ms",
                             target.base, target.path, attempt, options_.max_attempts,
                             backoff.count());
                std::unique_lock lock(mutex_);
                wake_.wait_for(lock, backoff, [this] { return stopping_.load(); });
                backoff = std::min(backoff * 2, options_.max_backoff);
            }
            std::lock_guard lock(mutex_);
            if (delivered)
                ++counters_.sent;
            else
                ++counters_.dropped;
        }
    }
}

}  // namespace loupe::alerts
