// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// CPU profiling by stack sampling: user space opens the software cpu-clock perf event on every CPU
// at the chosen rate and attaches sample_stack to each. Every sample of a selected process takes
// its user and kernel stacks (frame-pointer unwinding, in the kernel) and counts one more for the
// (tgid, user stack, kernel stack) triple: stacks are aggregated in the kernel, user space reads
// counts, not samples.
// DWARF mode, for processes built without frame pointers (opt-in per process: frame pointers
// would stop at the first such function): the sample copies the user registers and up to 16 KiB
// of the user stack, and sends them through a ring buffer; user space unwinds them with libdw.
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

// Set by user space before load: every selected process is sampled in DWARF mode.
const volatile bool dwarf_all = false;

// @brief Processes sampled in DWARF mode (key tgid, value unused), written by user space: an
// opt-in per service, so a hash of the few chosen, asked only for selected processes' samples.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, __u8);
} dwarf_tgids SEC(".maps");

// @brief DWARF-mode samples on their way to user space (registers, kernel stack, user stack
// bytes): each is unwound there, so they cannot be counted here. Sized by user space.
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} dwarf_samples SEC(".maps");

// A DWARF sample as it is built: slack after the stack bytes, so that a copy of up to a page at
// any offset below the end stays inside the value (verifier: the copy's offset and length are
// both variable, and it bounds each alone, by masks: offset < 16 KiB, length < 8 KiB).
struct dwarf_scratch_value {
    struct loupe_profile_dwarf_sample sample;
    __u8 slack[8192];
};

// @brief Where a DWARF sample is built, per CPU: at ~17 KiB it cannot sit on the 512-byte BPF
// stack, and reserving it whole in the ring would waste the stack bytes not copied.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct dwarf_scratch_value);
} dwarf_scratch SEC(".maps");

static __always_inline void count(__u32 slot)
{
    __u64 *value = bpf_map_lookup_elem(&profile_counters, &slot);
    if (value)
        *value += 1;
}

static long vma_end(struct task_struct *task, struct vm_area_struct *vma, void *end)
{
    *(__u64 *)end = vma->vm_end;
    return 0;
}

static __always_inline int sample_dwarf(struct bpf_perf_event_data *ctx, __u64 pid_tgid)
{
    __u32 zero = 0;
    struct dwarf_scratch_value *scratch = bpf_map_lookup_elem(&dwarf_scratch, &zero);
    if (!scratch)
        return 0;
    struct loupe_profile_dwarf_sample *sample = &scratch->sample;
    count(LOUPE_PROFILE_DWARF_SAMPLES);
    sample->tgid = pid_tgid >> 32;
    sample->tid = (__u32)pid_tgid;
    // The user registers: where the sample interrupted user mode they are the interrupted ones;
    // in a system call or an interrupt, the ones saved at kernel entry. Either way the task's
    // pt_regs at the top of its kernel stack.
    struct task_struct *task = bpf_get_current_task_btf();
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    sample->regs[0] = BPF_CORE_READ(regs, ax);
    sample->regs[1] = BPF_CORE_READ(regs, dx);
    sample->regs[2] = BPF_CORE_READ(regs, cx);
    sample->regs[3] = BPF_CORE_READ(regs, bx);
    sample->regs[4] = BPF_CORE_READ(regs, si);
    sample->regs[5] = BPF_CORE_READ(regs, di);
    sample->regs[6] = BPF_CORE_READ(regs, bp);
    sample->regs[7] = BPF_CORE_READ(regs, sp);
    sample->regs[8] = BPF_CORE_READ(regs, r8);
    sample->regs[9] = BPF_CORE_READ(regs, r9);
    sample->regs[10] = BPF_CORE_READ(regs, r10);
    sample->regs[11] = BPF_CORE_READ(regs, r11);
    sample->regs[12] = BPF_CORE_READ(regs, r12);
    sample->regs[13] = BPF_CORE_READ(regs, r13);
    sample->regs[14] = BPF_CORE_READ(regs, r14);
    sample->regs[15] = BPF_CORE_READ(regs, r15);
    sample->regs[16] = BPF_CORE_READ(regs, ip);
    long kernel_bytes = bpf_get_stack(ctx, sample->kernel_ips, sizeof(sample->kernel_ips), 0);
    sample->kernel_depth = kernel_bytes > 0 ? kernel_bytes / sizeof(__u64) : 0;

    // Copy from the stack pointer to the end of the stack's mapping, at most the buffer: a copy
    // that crosses the end faults whole. Without the mapping (its lock was busy), to the end of
    // the stack pointer's page, which is always mapped.
    __u64 sp = sample->regs[LOUPE_PROFILE_DWARF_REG_SP];
    __u64 end = 0;
    __u32 size = LOUPE_PROFILE_DWARF_STACK_BYTES;
    if (bpf_find_vma(task, sp, vma_end, &end, 0) == 0) {
        if (end <= sp)
            size = 0;
        else if (end - sp < LOUPE_PROFILE_DWARF_STACK_BYTES)
            size = end - sp;
    } else {
        size = 4096 - (sp & 4095);
    }
    barrier_var(size);
    if (size > LOUPE_PROFILE_DWARF_STACK_BYTES)
        size = LOUPE_PROFILE_DWARF_STACK_BYTES;
    if (size != 0 && bpf_probe_read_user(sample->stack, size, (void *)sp) != 0) {
        // A page of the range is not present (the copy cannot fault pages in; e.g. the gap that
        // the stack's randomised alignment leaves below the arguments, never touched): copy page
        // by page from the stack pointer up to the first such page. The interrupted code's
        // frames lie below it.
        count(LOUPE_PROFILE_LOST_DWARF_COPY);
        __u32 want = size;
        __u32 copied = 0;
        for (int page = 0; page < LOUPE_PROFILE_DWARF_STACK_BYTES / 4096 + 1; page++) {
            __u32 piece = 4096 - ((sp + copied) & 4095);
            if (piece > want - copied)
                piece = want - copied;
            if (piece == 0 || piece > 4096 || copied >= LOUPE_PROFILE_DWARF_STACK_BYTES)
                break;
            // Verifier: the checks above hold, but the bounds of a difference are lost; the masks
            // change no value and give the bounds back.
            __u64 length = piece;
            __u64 offset = copied;
            barrier_var(length);
            barrier_var(offset);
            length &= 0x1fff;
            offset &= 0x3fff;
            if (bpf_probe_read_user(sample->stack + offset, length, (void *)(sp + offset)) != 0)
                break;
            copied += piece;
        }
        size = copied;
    }
    sample->stack_bytes = size;
    // Verifier: size is 0 to 16 KiB, but its bounds do not survive the copies above; 1 + the
    // mask of size - 1 changes no value from 1 to 16 KiB and bounds it again.
    __u64 bytes = size;
    barrier_var(bytes);
    if (bytes != 0)
        bytes = ((bytes - 1) & (LOUPE_PROFILE_DWARF_STACK_BYTES - 1)) + 1;
    // No wakeup: user space reads the ring on its own clock, not once per sample.
    if (bpf_ringbuf_output(&dwarf_samples, sample,
                           __builtin_offsetof(struct loupe_profile_dwarf_sample, stack) + bytes,
                           BPF_RB_NO_WAKEUP) != 0)
        count(LOUPE_PROFILE_LOST_DWARF_RING);
    return 0;
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
    if (dwarf_all || bpf_map_lookup_elem(&dwarf_tgids, &tgid))
        return sample_dwarf(ctx, pid_tgid);
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
