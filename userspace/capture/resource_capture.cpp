#include "capture/resource_capture.h"

#include <cerrno>
#include <cstring>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include "capture/bpf_maps.h"
#include "capture/hook_set.h"
#include "resources.skel.h"
#include "util/logging.h"

namespace loupe::capture {

void ResourceCapture::SkeletonDeleter::operator()(::resources* skel) const noexcept {
    resources__destroy(skel);
}

void ResourceCapture::set_paused(bool paused) {
    // Process exits and TCP state changes stay: they free the per-process state of processes
    // that exit meanwhile and keep the active connections right; they run once per process or
    // connection state change, not per request.
    if (paused)
        hooks_.detach({"sched_process_exit", "inet_sock_set_state"});
    else
        hooks_.attach(skel_->obj);
}

ResourceCapture::~ResourceCapture() {
    hooks_.detach();
    ring_.reset();
}

std::unique_ptr<ResourceCapture> ResourceCapture::start(
    ExitHandler on_exit, bool filter_tgids, const std::vector<std::string>& select_comms,
    const std::vector<std::string>& disabled_hooks, std::string& error) {
    std::unique_ptr<ResourceCapture> capture(new ResourceCapture());
    capture->on_exit_ = std::move(on_exit);
    capture->skel_.reset(resources__open());
    if (!capture->skel_) {
        error = std::string("cannot open the resources BPF object: ") + std::strerror(errno);
        return nullptr;
    }
    resources& skel = *capture->skel_;
    configure_process_filter(skel, filter_tgids, select_comms);
    capture->hooks_.select(skel.obj, disabled_hooks);
    if (int err = resources__load(&skel); err != 0) {
        error = std::string("the kernel refused the resource programs: ") + std::strerror(-err);
        return nullptr;
    }
    if (filter_tgids &&
        !(capture->process_filter_ = TgidBitmap::map(bpf_map__fd(skel.maps.traced_tgids), error)))
        return nullptr;
    capture->hooks_.attach(skel.obj);
    capture->ring_.reset(ring_buffer__new(
        bpf_map__fd(skel.maps.exits), &ResourceCapture::on_exit_record, capture.get(), nullptr));
    if (!capture->ring_) {
        error = std::string("cannot open the exit ring buffer: ") + std::strerror(errno);
        return nullptr;
    }
    for (const auto& m : capture->hooks_.missing())
        spdlog::warn("resource hook unavailable on this kernel: {}", m);
    return capture;
}

int ResourceCapture::on_exit_record(void* ctx, void* data, std::size_t size) {
    if (size < sizeof(loupe_proc_exit_event)) return 0;
    auto* self = static_cast<ResourceCapture*>(ctx);
    self->on_exit_(*static_cast<const loupe_proc_exit_event*>(data));
    return 0;
}

std::vector<std::pair<std::string, int>> ResourceCapture::process_stats_maps() const {
    const resources& skel = *skel_;
    return {{"proc_stats", bpf_map__fd(skel.maps.proc_stats)},
            {"stats_template", bpf_map__fd(skel.maps.stats_template)},
            {"sock_owners", bpf_map__fd(skel.maps.sock_owners)},
            {"node_counters", bpf_map__fd(skel.maps.node_counters)}};
}

void ResourceCapture::set_traced_tgids(const std::vector<std::uint32_t>& tgids) {
    if (process_filter_) process_filter_->replace(tgids);
}

int ResourceCapture::poll_exits() {
    return ring_buffer__consume(ring_.get());
}

std::unordered_map<std::uint32_t, loupe_proc_stats> ResourceCapture::proc_stats() const {
    std::unordered_map<std::uint32_t, loupe_proc_stats> out;
    for_each_entry<__u32, loupe_proc_stats>(
        bpf_map__fd(skel_->maps.proc_stats), bpf_map__max_entries(skel_->maps.proc_stats),
        [&](__u32 tgid, const loupe_proc_stats& s) { out[tgid] = s; });
    return out;
}

std::size_t ResourceCapture::proc_stats_entries() const {
    std::size_t n = 0;
    for_each_entry<__u32, loupe_proc_stats>(bpf_map__fd(skel_->maps.proc_stats),
                                            bpf_map__max_entries(skel_->maps.proc_stats),
                                            [&](__u32, const loupe_proc_stats&) { ++n; });
    return n;
}

std::unordered_map<std::uint32_t, std::uint64_t> ResourceCapture::active_connections() const {
    std::unordered_map<std::uint32_t, std::uint64_t> out;
    for_each_entry<__u64, loupe_sock_owner>(bpf_map__fd(skel_->maps.sock_owners),
                                            bpf_map__max_entries(skel_->maps.sock_owners),
                                            [&](__u64, const loupe_sock_owner& o) {
                                                if (o.tgid) ++out[o.tgid];
                                            });
    return out;
}

NodeKernelCounters ResourceCapture::node_counters() const {
    const int fd = bpf_map__fd(skel_->maps.node_counters);
    NodeKernelCounters out;
    out.tcp_retransmits = sum_percpu_u64(fd, LOUPE_NODE_TCP_RETRANSMITS);
    out.proc_stats_full = sum_percpu_u64(fd, LOUPE_NODE_PROC_STATS_FULL);
    out.exit_events_lost = sum_percpu_u64(fd, LOUPE_NODE_EXIT_EVENTS_LOST);
    out.recursion_misses = hooks_.recursion_misses();
    return out;
}

}  // namespace loupe::capture
