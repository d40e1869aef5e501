// The agent's always-on CPU profiling: samples the selected processes at a low rate, names their
// stacks each second, and keeps a bounded ring of recent windows per service.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "capture/profile_capture.h"
#include "profile/dwarf_unwinder.h"
#include "profile/profile.h"
#include "profile/symbolizer.h"

namespace loupe::profile {

struct ContinuousProfilerOptions {
    unsigned frequency_hz = 19;
    bool filter_tgids = false;
    std::vector<std::string> select_comms;
    std::chrono::seconds window{10};
    std::size_t windows_kept = 6;              // the ring: one minute of 10 s windows
    std::size_t max_stacks_per_window = 4096;  // per service; more are dropped and counted
    std::size_t max_services = 256;            // services profiled at once; more are dropped
    // Services (or process names) unwound in DWARF mode: their code has no frame pointers.
    std::vector<std::string> dwarf_services;
};

struct ContinuousProfilerCounters {
    std::uint64_t samples = 0;          // kept in a window
    std::uint64_t lost_kernel = 0;      // dropped in the kernel (count map full)
    std::uint64_t lost_stack = 0;       // sampled without any stack (stack map full)
    std::uint64_t dropped_bounds = 0;   // beyond max_stacks_per_window or max_services
    std::uint64_t lost_dwarf_ring = 0;  // DWARF samples dropped: the ring buffer was full
    std::uint64_t lost_dwarf_copy = 0;  // DWARF samples whose stack copy faulted
    // Unwind quality, by mode: samples with a user stack, and those of 2 user frames or fewer.
    std::uint64_t user_stacks_fp = 0;
    std::uint64_t shallow_stacks_fp = 0;
    std::uint64_t user_stacks_dwarf = 0;
    std::uint64_t shallow_stacks_dwarf = 0;
};

class ContinuousProfiler {
  public:
    // The service a process belongs to ("" to leave it out).
    using ServiceOf = std::function<std::string(std::uint32_t tgid)>;

    // nullptr with `error` set when sampling cannot start (no perf events, BPF refused).
    static std::unique_ptr<ContinuousProfiler> start(const ContinuousProfilerOptions& options,
                                                     ServiceOf service_of, std::string& error);
    ~ContinuousProfiler();
    ContinuousProfiler(const ContinuousProfiler&) = delete;
    ContinuousProfiler& operator=(const ContinuousProfiler&) = delete;

    void set_traced_tgids(const std::vector<std::uint32_t>& tgids);
    // The service's samples of the last `span` (whole windows, plus the one being filled);
    // nullopt when the service has none.
    std::optional<Profile> profile(const std::string& service, std::chrono::seconds span) const;
    ContinuousProfilerCounters counters() const;
    void set_paused(bool paused) { capture_->set_paused(paused); }
    unsigned frequency_hz() const { return options_.frequency_hz; }
    std::chrono::seconds retention() const {
        return options_.window * static_cast<long>(options_.windows_kept);
    }

  private:
    explicit ContinuousProfiler(ContinuousProfilerOptions options) : options_(std::move(options)) {}
    void loop();
    void collect();
    void rotate();
    bool wants_dwarf(std::uint32_t tgid, const std::string& service) const;

    struct Window {
        std::chrono::steady_clock::time_point started;
        Profile samples;
    };
    ContinuousProfilerOptions options_;
    ServiceOf service_of_;
    std::unique_ptr<capture::ProfileCapture> capture_;
    Symbolizer symbolizer_;                // the loop's thread only
    DwarfUnwinder unwinder_;               // the loop's thread only
    std::set<std::uint32_t> dwarf_tgids_;  // the loop's thread only

    mutable std::mutex mutex_;                           // guards windows_ and counters_
    std::map<std::string, std::deque<Window>> windows_;  // per service, newest last
    ContinuousProfilerCounters counters_;
    std::map<std::uint32_t, std::string> service_by_tgid_;  // the loop's thread only

    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace loupe::profile
