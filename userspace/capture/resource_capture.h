// Loads resources.bpf.c and reads its per-process maps and exit events.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "capture/bpf_handles.h"
#include "capture/hook_set.h"
#include "capture/tgid_bitmap.h"
#include "loupe_abi.h"

struct resources;  // generated skeleton

namespace loupe::capture {

struct NodeKernelCounters {
    std::uint64_t tcp_retransmits = 0;
    std::uint64_t proc_stats_full = 0;
    std::uint64_t exit_events_lost = 0;
    std::uint64_t recursion_misses = 0;  // hook runs the kernel skipped (HookSet)
};

class ResourceCapture {
  public:
    using ExitHandler = std::function<void(const loupe_proc_exit_event&)>;

    // nullptr with `error` set when the programs cannot load; hooks missing on this kernel are
    // skipped and listed in missing_hooks().
    // filter_tgids: account only the processes given to set_traced_tgids() in the hot hooks.
    // select_comms: names the kernel adds to them at exec and fork (set_select_comms).
    // disabled_hooks: not attached (see hook_set.h).
    static std::unique_ptr<ResourceCapture> start(ExitHandler on_exit, bool filter_tgids,
                                                  const std::vector<std::string>& select_comms,
                                                  const std::vector<std::string>& disabled_hooks,
                                                  std::string& error);
    ~ResourceCapture();
    ResourceCapture(const ResourceCapture&) = delete;
    ResourceCapture& operator=(const ResourceCapture&) = delete;

    void set_traced_tgids(const std::vector<std::uint32_t>& tgids);
    // Detaches the hooks but process exits and TCP state changes (paused), or attaches them again.
    void set_paused(bool paused);
    // Drains pending exit events (never blocks).
    int poll_exits();
    // Snapshot of every process's counters (batched map reads).
    std::unordered_map<std::uint32_t, loupe_proc_stats> proc_stats() const;
    // Live TCP connections per process (owned sockets not yet closed).
    std::unordered_map<std::uint32_t, std::uint64_t> active_connections() const;
    std::size_t proc_stats_entries() const;
    NodeKernelCounters node_counters() const;
    // The per-process maps (process_stats.bpf.h) by name, for SocketCapture to share: its socket
    // programs account socket bytes, RTT and owners into them.
    std::vector<std::pair<std::string, int>> process_stats_maps() const;

    std::vector<std::string> attached_hooks() const { return hooks_.attached(); }
    const std::vector<std::string>& missing_hooks() const { return hooks_.missing(); }
    const std::vector<std::string>& disabled_hooks() const { return hooks_.disabled(); }

  private:
    ResourceCapture() = default;
    static int on_exit_record(void* ctx, void* data, std::size_t size);

    struct SkeletonDeleter {
        void operator()(::resources* skel) const noexcept;
    };
    std::unique_ptr<::resources, SkeletonDeleter> skel_;
    HookSet hooks_;
    RingBufferPtr ring_;
    ExitHandler on_exit_;
    std::unique_ptr<TgidBitmap> process_filter_;  // with filter_tgids only
};

}  // namespace loupe::capture
