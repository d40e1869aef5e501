#include "profile/continuous_profiler.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "util/read_file.h"

namespace loupe::profile {

std::unique_ptr<ContinuousProfiler> ContinuousProfiler::start(
    const ContinuousProfilerOptions& options, ServiceOf service_of, std::string& error) {
    std::unique_ptr<ContinuousProfiler> profiler(new ContinuousProfiler(options));
    profiler->service_of_ = std::move(service_of);
    capture::ProfileCaptureOptions capture_options;
    capture_options.frequency_hz = options.frequency_hz;
    capture_options.filter_tgids = options.filter_tgids;
    capture_options.select_comms = options.select_comms;
    // ~8 KiB a sample, read every second: at 19 Hz, room for dozens of busy CPUs.
    if (!options.dwarf_services.empty()) capture_options.dwarf_ring_bytes = 8u << 20;
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

bool ContinuousProfiler::wants_dwarf(std::uint32_t tgid, const std::string& service) const {
    const auto& wanted = options_.dwarf_services;
    if (wanted.empty()) return false;
    if (std::find(wanted.begin(), wanted.end(), service) != wanted.end()) return true;
    auto comm = util::read_file(fmt::format("/proc/{}/comm", tgid));
    if (!comm) return false;
    while (!comm->empty() && comm->back() == '\n')
        comm->pop_back();
    return std::find(wanted.begin(), wanted.end(), *comm) != wanted.end();
}

void ContinuousProfiler::collect() {
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<std::string, std::vector<Frame>>> named;
    std::vector<std::uint64_t> counts;
    std::uint64_t without_stack = 0;
    std::uint64_t user_stacks[2] = {0, 0}, shallow[2] = {0, 0};  // [0] fp, [1] dwarf
    std::vector<capture::StackCount> stacks = capture_->drain();
    const std::size_t frame_pointer_stacks = stacks.size();
    if (!options_.dwarf_services.empty()) {
        const std::vector<capture::DwarfSample> samples = capture_->take_dwarf_samples();
        for (capture::StackCount& s : unwinder_.unwind_and_count(samples))
            stacks.push_back(std::move(s));
        if (!samples.empty() && !unwinder_.last_stop().empty())
            spdlog::debug("DWARF unwinding: {} samples; the last stopped at the first frame: {}",
                          samples.size(), unwinder_.last_stop());
    }
    bool dwarf_changed = false;
    for (std::size_t i = 0; i < stacks.size(); ++i) {
        const capture::StackCount& s = stacks[i];
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
            // Its next samples come as stack copies (this second's were frame-pointer ones).
            if (wants_dwarf(s.tgid, it->second) && dwarf_tgids_.insert(s.tgid).second) {
                unwinder_.remember_process(s.tgid);
                dwarf_changed = true;
            }
        }
        std::vector<Frame> frames = symbolizer_.user_frames(s.tgid, s.user_ips);
        if (!frames.empty()) {
            const int mode = i >= frame_pointer_stacks ? 1 : 0;
            user_stacks[mode] += s.count;
            if (trustworthy_depth(frames) <= kShallowStackFrames) shallow[mode] += s.count;
        }
        std::reverse(frames.begin(), frames.end());
        const std::vector<Frame> kernel = symbolizer_.kernel_frames(s.kernel_ips);
        frames.insert(frames.end(), kernel.rbegin(), kernel.rend());
        named.emplace_back(it->second, std::move(frames));
        counts.push_back(s.count);
    }
    if (dwarf_changed) capture_->set_dwarf_tgids({dwarf_tgids_.begin(), dwarf_tgids_.end()});
    const capture::ProfileCounters kernel = capture_->counters();
    std::lock_guard lock(mutex_);
    counters_.lost_kernel = kernel.lost_counts_full;
    counters_.lost_dwarf_ring = kernel.lost_dwarf_ring;
    counters_.lost_dwarf_copy = kernel.lost_dwarf_copy;
    counters_.lost_stack += without_stack;
    counters_.user_stacks_fp += user_stacks[0];
    counters_.shallow_stacks_fp += shallow[0];
    counters_.user_stacks_dwarf += user_stacks[1];
    counters_.shallow_stacks_dwarf += shallow[1];
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
            unwinder_.forget_process(it->first);
            if (dwarf_tgids_.erase(it->first) > 0)
                capture_->set_dwarf_tgids({dwarf_tgids_.begin(), dwarf_tgids_.end()});
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
