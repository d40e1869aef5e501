// One budget for every time series the agent exports: HTTP series and per-service resource series
// draw from it when they are created and give back when they expire, so that /metrics stays under
// a size a Prometheus `sample_limit` can be set to, whatever names and paths local processes make
// up. Counted in samples, as Prometheus counts series: a histogram bucket is one.
#pragma once

#include <cstddef>
#include <functional>

namespace loupe::stats {

class SeriesBudget {
  public:
    // Frees at least `needed` samples by evicting what matters least (series of services that
    // have no process any more), giving them back; returns whether it freed that much.
    using Reclaimer = std::function<bool(std::size_t needed)>;

    explicit SeriesBudget(std::size_t limit) : limit_(limit) {}

    void set_reclaimer(Reclaimer reclaimer) { reclaimer_ = std::move(reclaimer); }

    // Takes `samples` when they fit; `reclaim` lets the reclaimer evict others to make room
    // (live data comes first; the reclaimer never runs inside itself).
    bool try_take(std::size_t samples, bool reclaim = true) {
        if (fits(samples)) {
            used_ += samples;
            return true;
        }
        if (reclaim && reclaimer_ && !reclaiming_) {
            reclaiming_ = true;
            reclaimer_(used_ + samples - limit_);
            reclaiming_ = false;
            if (fits(samples)) {
                used_ += samples;
                return true;
            }
        }
        return false;
    }
    void give_back(std::size_t samples) { used_ -= samples < used_ ? samples : used_; }

    std::size_t used() const { return used_; }
    std::size_t limit() const { return limit_; }

  private:
    bool fits(std::size_t samples) const { return samples <= limit_ && used_ <= limit_ - samples; }

    std::size_t limit_;
    std::size_t used_ = 0;
    Reclaimer reclaimer_;
    bool reclaiming_ = false;
};

}  // namespace loupe::stats
