// Reading and writing BPF maps from user space: per-CPU counters, whole hash maps, the names the
// process filter selects in the kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "loupe_abi.h"

namespace loupe::capture {

// Every possible CPU's value of a per-CPU array slot; empty when unreadable (errno says why).
template <typename Value>
std::vector<Value> read_percpu(int map_fd, __u32 key) {
    // The kernel hands the values over as one array, each padded to 8 bytes.
    static_assert(sizeof(Value) % 8 == 0, "per-CPU values are read as an array");
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return {};
    std::vector<Value> values(static_cast<std::size_t>(cpus));
    if (bpf_map_lookup_elem(map_fd, &key, values.data()) != 0) return {};
    return values;
}

// Sum over CPUs of a per-CPU array slot of u64 (0 when unreadable).
inline std::uint64_t sum_percpu_u64(int map_fd, __u32 key) {
    std::uint64_t total = 0;
    for (const __u64 v : read_percpu<__u64>(map_fd, key))
        total += v;
    return total;
}

// Visits every entry of a hash map with batched lookups (one syscall per kBatch entries instead
// of two per entry): fn(key, value).
template <typename Key, typename Value, typename Fn>
void for_each_entry(int map_fd, std::size_t max_entries, Fn&& fn) {
    constexpr std::uint32_t kBatch = 256;
    std::vector<Key> keys(kBatch);
    std::vector<Value> values(kBatch);
    Key out_batch{};
    bool first = true;
    std::size_t seen = 0;
    while (seen < max_entries) {
        std::uint32_t count = kBatch;
        Key in_batch = out_batch;
        const int err = bpf_map_lookup_batch(map_fd, first ? nullptr : &in_batch, &out_batch,
                                             keys.data(), values.data(), &count, nullptr);
        first = false;
        for (std::uint32_t i = 0; i < count; ++i)
            fn(keys[i], values[i]);
        seen += count;
        if (err != 0) break;  // ENOENT: done; anything else: give up for this round
    }
}

// Before load, for a skeleton that includes traced_tgids.bpf.h: the names its programs select new
// processes by at exec and fork (and unselect them at exit). Loaded only with a name to match: not
// at all when `comms` is empty, or longer than the kernel side holds (the /proc scan alone selects
// then).
template <typename Skeleton>
void set_select_comms(Skeleton& skel, const std::vector<std::string>& comms) {
    // A process name is at most 15 bytes: a longer --comm matches nothing (in /proc either).
    std::vector<std::string> names;
    for (const auto& comm : comms)
        if (comm.size() < sizeof(skel.rodata->select_comms[0])) names.push_back(comm);
    const bool in_kernel = !names.empty() && names.size() <= LOUPE_SELECT_COMMS;
    bpf_program__set_autoload(skel.progs.select_on_exec, in_kernel);
    bpf_program__set_autoload(skel.progs.select_on_fork, in_kernel);
    bpf_program__set_autoload(skel.progs.unselect_on_exit, in_kernel);
    if (!in_kernel) return;
    for (std::size_t i = 0; i < names.size(); ++i) {
        char name[sizeof(skel.rodata->select_comms[i])] = {};  // NUL-padded, as task->comm
        std::memcpy(name, names[i].data(), names[i].size());
        std::memcpy(const_cast<__u64*>(skel.rodata->select_comms[i]), name, sizeof(name));
    }
    skel.rodata->select_comm_count = static_cast<__u32>(names.size());
}

// Before load, for a skeleton that includes traced_tgids.bpf.h: whether its programs filter by
// the bitmap (TgidBitmap maps it after load), and the names they select new processes by.
template <typename Skeleton>
void configure_process_filter(Skeleton& skel, bool filter_tgids,
                              const std::vector<std::string>& select_comms) {
    skel.rodata->filter_tgids = filter_tgids;
    if (!filter_tgids)
        bpf_map__set_max_entries(skel.maps.traced_tgids, 1);  // never read: no 512 KiB
    set_select_comms(skel, filter_tgids ? select_comms : std::vector<std::string>{});
}

}  // namespace loupe::capture
