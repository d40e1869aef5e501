/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Per-process counters shared by loupe's two BPF objects: resources.bpf.c owns them (and user
 * space reads them from it); socket_capture.bpf.c reuses the same maps (bpf_map__reuse_fd before
 * load) so that its socket read/write programs also do the per-process socket accounting: one
 * program run per socket I/O instead of two. */
#ifndef LOUPE_BPF_PROCESS_STATS_BPF_H
#define LOUPE_BPF_PROCESS_STATS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "kernel_defs.bpf.h"
#include "loupe_abi.h"
#include "traced_tgids.bpf.h"

// Kernel threads (tgid 0 is the idle task) are never accounted; the rest per the process filter.
static __always_inline bool accounted(__u32 tgid)
{
    return tgid != 0 && tgid_selected(tgid);
}

// @brief Cumulative counters per process (key: tgid). LRU so that processes whose exit was
// missed age out; entries are deleted at exit after their totals went to user space.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct loupe_proc_stats);
} proc_stats SEC(".maps");

// @brief A zeroed loupe_proc_stats per CPU: the template for new proc_stats entries (too big for
// the 512-byte stack). Only its comm is ever written.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct loupe_proc_stats);
} stats_template SEC(".maps");

// @brief Which process owns a TCP socket (key: struct sock address), so that events in softirq
// context (retransmits, RTT samples, state changes) are charged to the right process.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct loupe_sock_owner);
} sock_owners SEC(".maps");

// @brief Node-wide counters, indexed by enum loupe_node_counter.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LOUPE_NODE_COUNTER_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} node_counters SEC(".maps");

static __always_inline void node_add(__u32 counter, __u64 n)
{
    __u64 *value = bpf_map_lookup_elem(&node_counters, &counter);
    if (value)
        *value += n; // per-CPU slot: no atomic needed
}

static __always_inline void node_count(__u32 counter)
{
    node_add(counter, 1);
}

static __always_inline __u32 log2_bucket(__u64 v)
{
    // floor(log2(v)) by halving steps: branch-light and loop-free for the verifier.
    __u32 r = 0;
    if (v >> 32) { v >>= 32; r += 32; }
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8) { v >>= 8; r += 8; }
    if (v >> 4) { v >>= 4; r += 4; }
    if (v >> 2) { v >>= 2; r += 2; }
    if (v >> 1) { r += 1; }
    return r < LOUPE_LOG2_BUCKETS ? r : LOUPE_LOG2_BUCKETS - 1;
}

static __always_inline void hist_add(__u64 *hist, __u64 *sum_ns, __u64 value_ns)
{
    __u32 bucket = log2_bucket(value_ns / 1000);
    if (bucket < LOUPE_LOG2_BUCKETS)
        __sync_fetch_and_add(&hist[bucket], 1);
    __sync_fetch_and_add(sum_ns, value_ns);
}

// The stats entry of `tgid`, created (named after `task`'s process) when missing. A task already
// past its exit tracepoint (still switched in and out while it dies) must not recreate the entry
// that the exit just deleted: that would leak one entry per process.
static __always_inline struct loupe_proc_stats *stats_of(__u32 tgid, struct task_struct *task)
{
    struct loupe_proc_stats *stats = bpf_map_lookup_elem(&proc_stats, &tgid);
    if (stats || !accounted(tgid) || (BPF_CORE_READ(task, flags) & PF_EXITING))
        return stats;
    __u32 zero = 0;
    struct loupe_proc_stats *fresh = bpf_map_lookup_elem(&stats_template, &zero);
    if (!fresh)
        return NULL;
    BPF_CORE_READ_STR_INTO(&fresh->comm, task, group_leader, comm);
    if (bpf_map_update_elem(&proc_stats, &tgid, fresh, BPF_NOEXIST) != 0 &&
        !bpf_map_lookup_elem(&proc_stats, &tgid))
        node_count(LOUPE_NODE_PROC_STATS_FULL);
    return bpf_map_lookup_elem(&proc_stats, &tgid);
}

// RTT samples of one socket are at least this far apart: the histogram weighs sockets by their
// active time, not by how many reads and writes they make (and most reads and writes of a busy
// socket skip the histogram's atomics).
#define RTT_SAMPLE_INTERVAL_NS (10 * 1000 * 1000ULL)

// What the per-process accounting remembers of one TCP socket, kept by the caller in its own
// socket storage (the HTTP capture's per-connection state) so that the busy path needs no lookup
// of its own: measured on nginx, the owner lookup and the RTT histogram at every read and write
// were ~100 ns of the ~180 ns the accounting cost per socket I/O.
struct socket_accounting {
    __u64 rtt_sampled_ns; // when srtt last went into the histogram
    __u8 owner_recorded;  // sock_owners knows this socket's process
    __u8 reserved[7];
};

// Gives an ownerless socket to `tgid`. An accepted socket gets its process this way, at the first
// read, write or close by it, and that is when its accept is counted: the accept() itself has no
// hook but the syscalls:sys_exit_accept* tracepoints, and attaching any syscalls:* tracepoint
// sends every system call of every process through the kernel's slow path (measured: ~2 % of
// nginx's throughput). Two threads may race here: only the one that swaps the 0 counts.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ &&
                   __builtin_offsetof(struct loupe_sock_owner, tgid) == 0 &&
                   __builtin_offsetof(struct loupe_sock_owner, established) == 8,
               "claim_socket swaps tgid as the low half of the value's first word");
static __always_inline void claim_socket(struct loupe_sock_owner *owner, __u32 tgid,
                                         struct loupe_proc_stats *stats)
{
    // Verifier/compiler workaround: 32-bit compare-and-swap needs -mcpu=v3, so swap tgid with
    // the word it shares with `passive` (tgid is its low half on these little-endian targets).
    __u64 *word = (__u64 *)owner;
    __u64 seen = *word;
    if ((__u32)seen != 0 || __sync_val_compare_and_swap(word, seen, seen | tgid) != seen)
        return;
    if (owner->passive && stats)
        __sync_fetch_and_add(&stats->tcp_accepted, 1);
}

// Whether a task holds `sk`'s lock (sk_lock.owned): close(), shutdown() and the processing of
// packets backlogged meanwhile run so, in a process using the socket; packets and timers in
// softirq only touch a socket whose lock no task holds. So a state change or reset seen with the
// lock held happens in the context of the socket's process. (Read only on full sockets: a
// TIME_WAIT socket has no lock.)
static __always_inline bool in_socket_process(const struct sock *sk)
{
    return BPF_CORE_READ(sk, sk_lock.owned) != 0;
}

static __always_inline void record_socket_owner(struct sock *sk, __u32 tgid,
                                                struct loupe_proc_stats *stats)
{
    __u64 key = (__u64)sk;
    struct loupe_sock_owner *owner = bpf_map_lookup_elem(&sock_owners, &key);
    if (owner) {
        claim_socket(owner, tgid, stats); // no-op once owned
        return;
    }
    // Established before loupe started (or evicted): not counted as opened or accepted.
    struct loupe_sock_owner fresh = {.tgid = tgid};
    bpf_map_update_elem(&sock_owners, &key, &fresh, BPF_NOEXIST);
}

// One socket read or write of `ret` > 0 bytes on an IPv4/IPv6 socket, by `task` (not a kernel
// thread) of the accounted process `tgid`: its bytes, an RTT sample, and the socket's owner.
// Socket I/O runs in the owning process's context: remember the owner for softirq events.
// `acct`: the socket's accounting state when the caller keeps one (NULL: sample the RTT and look
// the owner up at every call). Fields of the trusted tp_btf arguments are read with plain loads,
// not a helper call each (this runs at every socket read and write of every process).
static __always_inline void account_socket_io(struct sock *sk, int ret, bool transmit, __u32 tgid,
                                              struct task_struct *task,
                                              struct socket_accounting *acct)
{
    struct loupe_proc_stats *stats = stats_of(tgid, task);
    if (!stats)
        return;
    __sync_fetch_and_add(transmit ? &stats->net_tx_bytes : &stats->net_rx_bytes, (__u64)ret);
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
    if (!tp)
        return;
    // RTT: the socket's smoothed RTT (srtt_us holds microseconds << 3). tcp_probe would give one
    // sample per received segment but fires for every ACK on the host: measured at ~1 us of CPU
    // per nginx request, the largest single cost of loupe. Samples are spaced by the TCP stack's
    // last clock reading on this socket: a clock read of our own costs ~70 ns on a VM, and this
    // needs no precision (bpf_ktime_get_coarse_ns is barred from tracing programs).
    __u64 now_ns = tp->tcp_clock_cache;
    if (!acct || now_ns - acct->rtt_sampled_ns >= RTT_SAMPLE_INTERVAL_NS) {
        __u64 srtt_us = tp->srtt_us >> 3;
        if (srtt_us) {
            hist_add(stats->tcp_rtt_us, &stats->tcp_rtt_sum_ns, srtt_us * 1000);
            if (acct)
                acct->rtt_sampled_ns = now_ns;
        }
    }
    if (acct && acct->owner_recorded)
        return;
    record_socket_owner(sk, tgid, stats);
    if (acct)
        acct->owner_recorded = 1;
}

#endif /* LOUPE_BPF_PROCESS_STATS_BPF_H */
