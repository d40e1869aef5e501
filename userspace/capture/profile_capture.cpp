#include "capture/profile_capture.h"

#include <linux/perf_event.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <iterator>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>
#include <unordered_map>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "capture/bpf_maps.h"
#include "profiler.skel.h"
#include "profiler_abi.h"

namespace loupe::capture {

static_assert(std::tuple_size_v<decltype(DwarfSample::regs)> == LOUPE_PROFILE_DWARF_REGS);

namespace {

int open_cpu_clock(int cpu, unsigned frequency_hz) {
    perf_event_attr attr{};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.freq = 1;
    attr.sample_freq = frequency_hz;
    return static_cast<int>(syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
}

int on_dwarf_sample(void* pending, void* data, std::size_t size) {
    constexpr std::size_t header = offsetof(loupe_profile_dwarf_sample, stack);
    if (size < header) return 0;
    const auto* raw = static_cast<const loupe_profile_dwarf_sample*>(data);
    DwarfSample sample;
    sample.tgid = raw->tgid;
    sample.tid = raw->tid;
    std::copy(std::begin(raw->regs), std::end(raw->regs), sample.regs.begin());
    const std::size_t depth = std::min<std::size_t>(raw->kernel_depth, LOUPE_PROFILE_STACK_DEPTH);
    sample.kernel_ips.assign(raw->kernel_ips, raw->kernel_ips + depth);
    while (!sample.kernel_ips.empty() && sample.kernel_ips.back() == 0)
        sample.kernel_ips.pop_back();
    const std::size_t stack_bytes = std::min<std::size_t>(raw->stack_bytes, size - header);
    sample.stack.assign(raw->stack, raw->stack + stack_bytes);
    static_cast<std::vector<DwarfSample>*>(pending)->push_back(std::move(sample));
    return 0;
}

}  // namespace

std::optional<std::string> perf_sampling_unavailable() {
    const int fd = open_cpu_clock(0, 1);
    if (fd >= 0) {
        ::close(fd);
        return std::nullopt;
    }
    const int err = errno;
    std::string why =
        "cannot open the software cpu-clock perf event (" + std::string(std::strerror(err)) + ")";
    if (err == ENOENT || err == EOPNOTSUPP || err == ENOSYS)
        why += ": this kernel has no perf events (CONFIG_PERF_EVENTS); CPU profiling is off";
    else if (err == EACCES || err == EPERM)
        why += ": needs root or CAP_PERFMON (kernel.perf_event_paranoid)";
    return why;
}

unsigned max_sample_rate() {
    std::ifstream in("/proc/sys/kernel/perf_event_max_sample_rate");
    unsigned rate = 0;
    in >> rate;
    return rate;
}

void ProfileCapture::SkeletonDeleter::operator()(::profiler* skel) const noexcept {
    profiler__destroy(skel);
}

ProfileCapture::~ProfileCapture() {
    links_.clear();  // stop sampling before the maps go
}

std::unique_ptr<ProfileCapture> ProfileCapture::start(const ProfileCaptureOptions& options,
                                                      std::string& error) {
    if (auto why = perf_sampling_unavailable()) {
        error = *why;
        return nullptr;
    }
    std::unique_ptr<ProfileCapture> capture(new ProfileCapture());
    capture->skel_.reset(profiler__open());
    if (!capture->skel_) {
        error = std::string("cannot open the profiler BPF object: ") + std::strerror(errno);
        return nullptr;
    }
    profiler& skel = *capture->skel_;
    configure_process_filter(skel, options.filter_tgids, options.select_comms);
    bpf_map__set_max_entries(skel.maps.stacks, options.max_stacks);
    bpf_map__set_max_entries(skel.maps.counts_0, options.max_stack_counts);
    bpf_map__set_max_entries(skel.maps.counts_1, options.max_stack_counts);
    // A ring buffer is at least a page; without DWARF mode it stays empty.
    bpf_map__set_max_entries(skel.maps.dwarf_samples,
                             std::max<std::uint32_t>(options.dwarf_ring_bytes, 4096));
    skel.rodata->dwarf_all = options.dwarf_all;
    if (int err = profiler__load(&skel); err != 0) {
        error = std::string("the kernel refused the profiler program: ") + std::strerror(-err);
        return nullptr;
    }
    capture->dwarf_ring_.reset(ring_buffer__new(
        bpf_map__fd(skel.maps.dwarf_samples), on_dwarf_sample, &capture->dwarf_pending_, nullptr));
    if (!capture->dwarf_ring_) {
        error = std::string("cannot read the profiler's ring buffer: ") + std::strerror(errno);
        return nullptr;
    }
    if (options.filter_tgids &&
        !(capture->process_filter_ = TgidBitmap::map(bpf_map__fd(skel.maps.traced_tgids), error)))
        return nullptr;
    // --comm: the kernel selects processes that take the name at exec or fork.
    if (skel.progs.select_on_exec && bpf_program__autoload(skel.progs.select_on_exec)) {
        for (bpf_program* prog :
             {skel.progs.select_on_exec, skel.progs.select_on_fork, skel.progs.unselect_on_exit}) {
            BpfLinkPtr link(bpf_program__attach(prog));
            if (!link) {
                error = std::string("cannot attach ") + bpf_program__name(prog) + ": " +
                        std::strerror(errno);
                return nullptr;
            }
            capture->links_.push_back(std::move(link));
        }
    }
    const int cpus = libbpf_num_possible_cpus();
    std::size_t sampled = 0;
    for (int cpu = 0; cpu < cpus; ++cpu) {
        const int fd = open_cpu_clock(cpu, options.frequency_hz);
        if (fd < 0) {
            if (errno == ENODEV) continue;  // offline CPU
            error = "cannot open the cpu-clock perf event on CPU " + std::to_string(cpu) + ": " +
                    std::strerror(errno);
            return nullptr;
        }
        BpfLinkPtr link(bpf_program__attach_perf_event(skel.progs.sample_stack, fd));
        if (!link) {
            const int err = errno;
            ::close(fd);  // a link owns its perf event's fd only once made
            error = "cannot attach the profiler to CPU " + std::to_string(cpu) + ": " +
                    std::strerror(err);
            return nullptr;
        }
        capture->perf_events_.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
        capture->links_.push_back(std::move(link));
        ++sampled;
    }
    if (sampled == 0) {
        error = "no online CPU accepted the cpu-clock perf event";
        return nullptr;
    }
    return capture;
}

void ProfileCapture::set_traced_tgids(const std::vector<std::uint32_t>& tgids) {
    if (process_filter_) process_filter_->replace(tgids);
}

bool ProfileCapture::set_dwarf_tgids(const std::vector<std::uint32_t>& tgids) {
    const int fd = bpf_map__fd(skel_->maps.dwarf_tgids);
    for (std::uint32_t tgid : dwarf_tgids_)
        if (std::find(tgids.begin(), tgids.end(), tgid) == tgids.end())
            bpf_map_delete_elem(fd, &tgid);
    bool all_kept = true;
    dwarf_tgids_.clear();
    const std::uint8_t on = 1;
    for (std::uint32_t tgid : tgids) {
        if (bpf_map_update_elem(fd, &tgid, &on, BPF_ANY) == 0)
            dwarf_tgids_.push_back(tgid);
        else
            all_kept = false;
    }
    return all_kept;
}

void ProfileCapture::poll_dwarf_samples() {
    ring_buffer__consume(dwarf_ring_.get());
}

std::vector<DwarfSample> ProfileCapture::take_dwarf_samples() {
    poll_dwarf_samples();
    std::vector<DwarfSample> out;
    out.swap(dwarf_pending_);
    return out;
}

bool ProfileCapture::selected(std::uint32_t tgid) const {
    return !process_filter_ || process_filter_->selected(tgid);
}

std::vector<std::uint64_t> ProfileCapture::stack(std::int32_t stack_id) const {
    std::vector<std::uint64_t> ips(LOUPE_PROFILE_STACK_DEPTH);
    if (stack_id < 0 ||
        bpf_map_lookup_elem(bpf_map__fd(skel_->maps.stacks), &stack_id, ips.data()) != 0)
        return {};
    std::size_t depth = 0;
    while (depth < ips.size() && ips[depth] != 0)
        ++depth;
    ips.resize(depth);
    return ips;
}

std::vector<StackCount> ProfileCapture::drain() {
    bpf_map* const drained = active_ ? skel_->maps.counts_1 : skel_->maps.counts_0;
    active_ ^= 1;
    __atomic_store_n(&skel_->bss->active_counts, active_, __ATOMIC_SEQ_CST);
    // A sample that read the old index a moment ago may still be adding to the drained map: a
    // program run lasts microseconds, so after this pause the map is ours alone.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));

    const int fd = bpf_map__fd(drained);
    std::vector<std::pair<loupe_profile_key, std::uint64_t>> entries;
    for_each_entry<loupe_profile_key, __u64>(
        fd, bpf_map__max_entries(drained),
        [&](const loupe_profile_key& key, __u64 count) { entries.emplace_back(key, count); });
    std::unordered_map<std::int32_t, std::vector<std::uint64_t>> stacks;
    auto stack_of = [&](std::int32_t id) -> const std::vector<std::uint64_t>& {
        auto [it, fresh] = stacks.try_emplace(id);
        if (fresh) it->second = stack(id);
        return it->second;
    };
    std::vector<StackCount> out;
    out.reserve(entries.size());
    for (const auto& [key, count] : entries) {
        bpf_map_delete_elem(fd, &key);
        StackCount s;
        s.tgid = key.tgid;
        s.count = count;
        s.user_ips = stack_of(key.user_stack_id);
        s.kernel_ips = stack_of(key.kernel_stack_id);
        s.user_stack_lost = key.user_stack_id >= 0 && s.user_ips.empty();
        out.push_back(std::move(s));
    }
    return out;
}

void ProfileCapture::clear_stacks() {
    const int fd = bpf_map__fd(skel_->maps.stacks);
    std::int32_t key = 0, next = 0;
    std::vector<std::int32_t> ids;
    bool first = true;
    while (bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0) {
        ids.push_back(next);
        key = next;
        first = false;
    }
    for (std::int32_t id : ids)
        bpf_map_delete_elem(fd, &id);
}

void ProfileCapture::set_paused(bool paused) {
    for (const UniqueFd& event : perf_events_)
        if (event.valid())
            ::ioctl(event.get(), paused ? PERF_EVENT_IOC_DISABLE : PERF_EVENT_IOC_ENABLE, 0);
}

ProfileCounters ProfileCapture::counters() const {
    const int fd = bpf_map__fd(skel_->maps.profile_counters);
    ProfileCounters out;
    out.samples = sum_percpu_u64(fd, LOUPE_PROFILE_SAMPLES);
    out.lost_counts_full = sum_percpu_u64(fd, LOUPE_PROFILE_LOST_COUNTS_FULL);
    out.lost_user_stacks = sum_percpu_u64(fd, LOUPE_PROFILE_LOST_USER_STACK);
    out.lost_kernel_stacks = sum_percpu_u64(fd, LOUPE_PROFILE_LOST_KERNEL_STACK);
    out.dwarf_samples = sum_percpu_u64(fd, LOUPE_PROFILE_DWARF_SAMPLES);
    out.lost_dwarf_ring = sum_percpu_u64(fd, LOUPE_PROFILE_LOST_DWARF_RING);
    out.lost_dwarf_copy = sum_percpu_u64(fd, LOUPE_PROFILE_LOST_DWARF_COPY);
    return out;
}

}  // namespace loupe::capture
