// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// CPU profiling by stack sampling: user space opens the software cpu-clock perf event on every CPU
// at the chosen rate and attaches sample_stack to each. Every sample of a selected process takes
// its user and kernel stacks (frame-pointer unwinding, in the kernel) and counts one more for the
// (tgid, user stack, kernel stack) triple: stacks are aggregated in the kernel, user space reads
// counts, not samples.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "kernel_defs.bpf.h"
#include "profiler_abi.h"
#include "traced_tgids.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EFAULT 14 /* errno values bpf_get_stackid and bpf_map_update_elem return */
#define EEXIST 17

// @brief Stacks by id (bpf_get_stackid), user and kernel alike: identical stacks share one id, so
// a hot loop costs one entry whatever its sample count. Sized by user space before load.
struct {
    __uint(type, BPF_MAP_TYPE_STACK_TRACE);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __uint(value_size, LOUPE_PROFILE_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

// @brief Sample counts by (tgid, user stack, kernel stack), two of them: the sampler adds to the
// one `active_counts` names while user space reads and empties the other, so that no sample is
// counted into an entry user space has just read and is about to delete. Sized by user space.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct loupe_profile_key);
    __type(value, __u64);
} counts_0 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct loupe_profile_key);
    __type(value, __u64);
} counts_1 SEC(".maps");

// @brief Node counters (enum profile_counter), per CPU: no atomic on the sampling path.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LOUPE_PROFILE_COUNTER_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} profile_counters SEC(".maps");

// Which count map the sampler fills (0 or 1): flipped by user space before each read.
volatile __u32 active_counts = 0;

static __always_inline void count(__u32 slot)
{
    __u64 *value = bpf_map_lookup_elem(&profile_counters, &slot);
    if (value)
        *value += 1;
}

SEC("perf_event")
int sample_stack(struct bpf_perf_event_data *ctx)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    if (tgid == 0 || !tgid_selected(tgid)) // idle (the swapper) or not selected: nothing to do
        return 0;
    // Kernel threads (kworkers, ksoftirqd) are no service's: with every process selected they
    // would each become one. Their work done for a process shows in that process's stacks.
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
        return 0;
    count(LOUPE_PROFILE_SAMPLES);
    struct loupe_profile_key key = {.tgid = tgid};
    key.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
    if (key.user_stack_id < 0 && key.user_stack_id != -EFAULT)
        count(LOUPE_PROFILE_LOST_USER_STACK);
    key.kernel_stack_id = bpf_get_stackid(ctx, &stacks, 0);
    // -EFAULT: the sample hit user mode, there is no kernel stack to take.
    if (key.kernel_stack_id < 0 && key.kernel_stack_id != -EFAULT)
        count(LOUPE_PROFILE_LOST_KERNEL_STACK);
    void *counts = active_counts ? (void *)&counts_1 : (void *)&counts_0;
    __u64 *value = bpf_map_lookup_elem(counts, &key);
    if (value) {
        __sync_fetch_and_add(value, 1); // two CPUs may sample threads of one process at once
        return 0;
    }
    __u64 one = 1;
    int err = bpf_map_update_elem(counts, &key, &one, BPF_NOEXIST);
    if (err == -EEXIST) { // another CPU inserted it a moment ago
        value = bpf_map_lookup_elem(counts, &key);
        if (value)
            __sync_fetch_and_add(value, 1);
    } else if (err) {
        count(LOUPE_PROFILE_LOST_COUNTS_FULL);
    }
    return 0;
}
