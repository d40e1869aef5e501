/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The process filter shared by loupe's BPF objects (--pid/--comm/--port). */
#ifndef LOUPE_BPF_TRACED_TGIDS_BPF_H
#define LOUPE_BPF_TRACED_TGIDS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "loupe_abi.h"

// Set by user space before load: when false every process is selected and the map is not read.
const volatile bool filter_tgids = false;

// @brief Selected processes, one bit per tgid (bit tgid % 64 of word tgid / 64), written by user
// space. Every hooked event of every process asks it, so it is an array: the verifier inlines the
// lookup into a few instructions, where the hash it replaced cost ~100 ns a run on nginx.
// Mappable: user space and the programs below change bits of the same words, each with an atomic
// bit operation (a word written whole by user space undid a bit set here a moment before).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, LOUPE_TGID_BITMAP_WORDS);
    __type(key, __u32);
    __type(value, __u64);
} traced_tgids SEC(".maps");

static __always_inline __u64 *tgid_word(__u32 tgid)
{
    __u32 word = tgid / 64;
    return bpf_map_lookup_elem(&traced_tgids, &word);
}

static __always_inline bool tgid_selected(__u32 tgid)
{
    if (!filter_tgids)
        return true;
    __u64 *bits = tgid_word(tgid);
    return bits && ((*bits >> (tgid % 64)) & 1);
}

// --comm names (NUL-padded, select_comm_count of them), set by user space before load: a process
// that takes one of these names (exec) or is born with it (fork) is selected at once by the two
// programs below, not at user space's next /proc scan, up to a second later: a short-lived
// process (a curl, a cron job) would be gone by then, its requests and resources never seen.
// Every BPF object that filters processes includes these programs for its own bitmap; user space
// loads them only when it filters by name alone. Names are compared as two words: the kernel
// pads task->comm with zeros after the name (strscpy_pad), user space pads these.
const volatile __u64 select_comms[LOUPE_SELECT_COMMS][2] = {};
const volatile __u32 select_comm_count = 0;

static __always_inline void select_if_named(struct task_struct *task)
{
    __u64 name[2];
    __builtin_memcpy(name, task->comm, sizeof(name));
    bool named = false;
#pragma unroll
    for (int i = 0; i < LOUPE_SELECT_COMMS; i++) {
        if (i < select_comm_count && name[0] == select_comms[i][0] && name[1] == select_comms[i][1])
            named = true;
    }
    if (!named)
        return;
    __u32 tgid = task->tgid;
    __u64 *bits = tgid_word(tgid);
    if (bits)
        __sync_fetch_and_or(bits, 1ULL << (tgid % 64)); // user space changes the same words
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(select_on_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
    select_if_named(task); // the new program's name is already in task->comm
    return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(select_on_fork, struct task_struct *parent, struct task_struct *child)
{
    select_if_named(child); // born with its parent's name (a thread: its process's bit again)
    return 0;
}

// At sched_process_exit: whether the exiting thread is its process's last (the kernel counts the
// group's live threads down before this tracepoint).
static __always_inline bool last_thread_exits(struct task_struct *task)
{
    return BPF_CORE_READ(task, signal, live.counter) == 0;
}

// A process selected at fork or exec may end before user space ever sees it in /proc: its bit
// goes with it, so that a new process given its pid later is not traced by mistake.
SEC("tp_btf/sched_process_exit")
int BPF_PROG(unselect_on_exit, struct task_struct *task)
{
    if (!last_thread_exits(task))
        return 0;
    __u32 tgid = task->tgid;
    __u64 *bits = tgid_word(tgid);
    if (bits)
        __sync_fetch_and_and(bits, ~(1ULL << (tgid % 64)));
    return 0;
}

#endif /* LOUPE_BPF_TRACED_TGIDS_BPF_H */
