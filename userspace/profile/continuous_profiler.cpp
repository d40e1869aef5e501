#include "profile/continuous_profiler.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

namespace loupe::profile {

std::unique_ptr<ContinuousProfiler> ContinuousProfiler::start(
    const ContinuousProfilerOptions& options, ServiceOf service_of, std::string& error) {
    std::unique_ptr<ContinuousProfiler> profiler(new ContinuousProfiler(options));
    profiler->service_of_ = std::move(service_of);
    capture::ProfileCaptureOptions capture_options;
    capture_options.frequency_hz = options.frequency_hz;
    capture_options.filter_tgids = options.filter_tgids;
    capture_options.select_comms = options.select_comms;
    profiler->capture_ = capture::ProfileCapture::start(capture_options, error);
    if (!profiler->capture_) return nullptr;
    profiler->thread_ = std::thread([p = profiler.get()] { p->loop(); });
    return profiler;
}

ContinuousProfiler::~ContinuousProfiler() {
    {
        std::lock_guard lock(stop_mutex_);
        stopping_ = true;
    }
    stop_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void ContinuousProfiler::set_traced_tgids(const std::vector<std::uint32_t>& tgids) {
    capture_->set_traced_tgids(tgids);
}

void ContinuousProfiler::loop() {
    auto window_started = std::chrono::steady_clock::now();
    std::unique_lock stop_lock(stop_mutex_);
    while (!stop_cv_.wait_for(stop_lock, std::chrono::seconds(1), [this] { return stopping_; })) {
        stop_lock.unlock();
        collect();
        if (std::chrono::steady_clock::now() - window_started >= options_.window) {
            rotate();
            window_started = std::chrono::steady_clock::now();
        }
        stop_lock.lock();
    }
}

void ContinuousProfiler::collect() {
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<std::string, std::vector<Frame>>> named;
    std::vector<std::uint64_t> counts;
    std::uint64_t without_stack = 0;
    for (const capture::StackCount& s : capture_->drain()) {
        if (s.user_ips.empty() && s.kernel_ips.empty()) {
            without_stack += s.count;
            continue;
        }
        auto it = service_by_tgid_.find(s.tgid);
        if (it == service_by_tgid_.end()) {
            std::string service = service_of_(s.tgid);
            if (service.empty()) continue;  // not attributed (yet): asked again next time
            it = service_by_tgid_.emplace(s.tgid, std::move(service)).first;
            symbolizer_.remember_process(s.tgid);
        }
        std::vector<Frame> frames = symbolizer_.user_frames(s.tgid, s.user_ips);
        std::reverse(frames.begin(), frames.end());
        const std::vector<Frame> kernel = symbolizer_.kernel_frames(s.kernel_ips);
        frames.insert(frames.end(), kernel.rbegin(), kernel.rend());
        named.emplace_back(it->second, std::move(frames));
        counts.push_back(s.count);
    }
    const capture::ProfileCounters kernel = capture_->counters();
    std::lock_guard lock(mutex_);
    counters_.lost_kernel = kernel.lost_counts_full;
    counters_.lost_stack += without_stack;
    for (std::size_t i = 0; i < named.size(); ++i) {
        auto found = windows_.find(named[i].first);
        if (found == windows_.end()) {
            if (windows_.size() >= options_.max_services) {
                counters_.dropped_bounds += counts[i];
                continue;
            }
            found = windows_.emplace(named[i].first, std::deque<Window>{}).first;
        }
        auto& ring = found->second;
        if (ring.empty()) ring.push_back(Window{now, {}});
        Profile& current = ring.back().samples;
        current.frequency_hz = options_.frequency_hz;
        if (current.add_bounded(named[i].second, counts[i], options_.max_stacks_per_window))
            counters_.samples += counts[i];
        else
            counters_.dropped_bounds += counts[i];
    }
}

void ContinuousProfiler::rotate() {
    // The kernel's stack map would fill over hours: emptied once a window, right after a drain
    // (the samples of the moment in between lose their stacks, and are counted as such).
    capture_->clear_stacks();
    // Processes that exited: their names and maps go (a new process may take the pid).
    for (auto it = service_by_tgid_.begin(); it != service_by_tgid_.end();) {
        if (::access(fmt::format("/proc/{}", it->first).c_str(), F_OK) != 0) {
            symbolizer_.forget_process(it->first);
            it = service_by_tgid_.erase(it);
        } else {
            ++it;
        }
    }
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    for (auto it = windows_.begin(); it != windows_.end();) {
        auto& ring = it->second;
        while (ring.size() >= options_.windows_kept)
            ring.pop_front();
        // A service without samples for the whole ring is forgotten.
        const bool idle = std::all_of(ring.begin(), ring.end(), [](const Window& w) {
            return w.samples.total_samples() == 0;
        });
        if (idle && ring.size() + 1 >= options_.windows_kept) {
            it = windows_.erase(it);
            continue;
        }
        ring.push_back(Window{now, {}});
        ++it;
    }
}

std::optional<Profile> ContinuousProfiler::profile(const std::string& service,
                                                   std::chrono::seconds span) const {
    const auto since = std::chrono::steady_clock::now() - span;
    std::lock_guard lock(mutex_);
    auto found = windows_.find(service);
    if (found == windows_.end()) return std::nullopt;
    Profile merged;
    merged.frequency_hz = options_.frequency_hz;
    std::chrono::steady_clock::time_point first{};
    for (const Window& w : found->second) {
        // A window counts when any part of it falls inside the span.
        if (w.started + options_.window < since) continue;
        if (first == std::chrono::steady_clock::time_point{}) first = w.started;
        merged.merge(w.samples);
    }
    if (merged.total_samples() == 0) return std::nullopt;
    merged.duration_ns =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now() - first)
                                       .count());
    merged.start_unix_ns =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count()) -
        merged.duration_ns;
    return merged;
}

ContinuousProfilerCounters ContinuousProfiler::counters() const {
    std::lock_guard lock(mutex_);
    return counters_;
}

}  // namespace loupe::profile
