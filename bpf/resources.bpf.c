// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// Per-process resource accounting that /proc cannot give: block I/O operations and latency,
// run-queue latency, socket bytes, TCP connection lifecycle, retransmits, RTT and resets, plus the
// final totals of every process at exit (short-lived processes live between two /proc samples).
// Everything is aggregated in kernel maps that user space reads every second; only process exits
// travel through the ring buffer. Typed tracepoints (tp_btf) give direct struct arguments.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "kernel_defs.bpf.h"
#include "loupe_abi.h"
#include "process_stats.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define REQ_OP_MASK 0xff
#define REQ_OP_READ 0
#define REQ_OP_WRITE 1

struct rq_start {
    __u64 start_ns;
    __u32 tgid;
    __u32 bytes;
    __u8 op;
    __u8 reserved[7];
};

// @brief Block requests in flight (key: struct request address), from block_io_start in the
// submitter's context to block_io_done.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct rq_start);
} requests SEC(".maps");

// What a thread's scheduler statistics (sched_info) said when it last left a CPU, in the thread's
// own task storage: found from the task pointer in a few loads, freed with the task.
struct runqueue_seen {
    __u64 run_delay; // total time it had waited runnable
    __u64 pcount;    // times it had got a CPU
};

// @brief Per thread, its sched_info at its last switch-out (struct runqueue_seen). The wait
// before each run is the growth of run_delay from one switch-out to the next: the kernel's own
// measure (rq clock, enqueue -> arrival, as /proc/PID/schedstat), read from sched_switch alone.
// Timing waits ourselves needed sched_wakeup and sched_wakeup_new hooks too, which run at every
// wakeup on the machine, and a clock read at each end (~1.7 % of nginx's throughput for the three).
struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct runqueue_seen);
} runqueue_seen SEC(".maps");

// @brief Final totals of exiting processes (rare: a few hundred per second at most).
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 512 * 1024);
} exits SEC(".maps");

static __always_inline struct loupe_proc_stats *current_stats(void)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
        return NULL; // kernel threads (writeback, softirq work) are not services
    return stats_of(bpf_get_current_pid_tgid() >> 32, task);
}

// Stats of the process owning `sk`, when known.
static __always_inline struct loupe_proc_stats *owner_stats(const struct sock *sk)
{
    __u64 key = (__u64)sk;
    struct loupe_sock_owner *owner = bpf_map_lookup_elem(&sock_owners, &key);
    if (!owner || owner->tgid == 0)
        return NULL;
    return bpf_map_lookup_elem(&proc_stats, &owner->tgid);
}

static __always_inline bool is_tcp(const struct sock *sk)
{
    return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

// ---- processes ----
SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_process_exit, struct task_struct *task)
{
    // Only the last thread of the group finishes the process.
    if (!last_thread_exits(task) || (BPF_CORE_READ(task, flags) & PF_KTHREAD))
        return 0;
    __u32 tgid = BPF_CORE_READ(task, tgid);
    struct loupe_proc_exit_event *e = bpf_ringbuf_reserve(&exits, sizeof(*e), 0);
    if (!e) {
        node_count(LOUPE_NODE_EXIT_EVENTS_LOST);
        return 0;
    }
    e->tgid = tgid;
    BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
    // The exiting thread's own figures join signal_struct's only after this tracepoint.
    e->cpu_ns = BPF_CORE_READ(task, signal, sum_sched_runtime) + BPF_CORE_READ(task, se.sum_exec_runtime);
    e->io_read_bytes = BPF_CORE_READ(task, signal, ioac.read_bytes) + BPF_CORE_READ(task, ioac.read_bytes);
    e->io_write_bytes = BPF_CORE_READ(task, signal, ioac.write_bytes) + BPF_CORE_READ(task, ioac.write_bytes);
    struct loupe_proc_stats *stats = bpf_map_lookup_elem(&proc_stats, &tgid);
    e->has_stats = stats != NULL;
    if (stats) // ring-buffer memory is not zeroed: user space reads stats only when has_stats
        bpf_probe_read_kernel(&e->stats, sizeof(e->stats), stats);
    bpf_ringbuf_submit(e, 0);
    bpf_map_delete_elem(&proc_stats, &tgid);
    return 0;
}

// ---- block I/O ----
SEC("tp_btf/block_io_start")
int BPF_PROG(handle_block_io_start, struct request *rq)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    __u8 op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;
    if (op != REQ_OP_READ && op != REQ_OP_WRITE)
        return 0;
    struct rq_start start = {
        .start_ns = bpf_ktime_get_ns(),
        .tgid = (BPF_CORE_READ(task, flags) & PF_KTHREAD) ? 0 : bpf_get_current_pid_tgid() >> 32,
        .bytes = BPF_CORE_READ(rq, __data_len),
        .op = op,
    };
    __u64 key = (__u64)rq;
    bpf_map_update_elem(&requests, &key, &start, BPF_ANY);
    return 0;
}

SEC("tp_btf/block_io_done")
int BPF_PROG(handle_block_io_done, struct request *rq)
{
    __u64 key = (__u64)rq;
    struct rq_start *start = bpf_map_lookup_elem(&requests, &key);
    if (!start)
        return 0;
    struct loupe_proc_stats *stats = start->tgid ? bpf_map_lookup_elem(&proc_stats, &start->tgid) : NULL;
    if (stats) {
        if (start->op == REQ_OP_WRITE) {
            __sync_fetch_and_add(&stats->disk_write_ops, 1);
            __sync_fetch_and_add(&stats->disk_write_bytes, start->bytes);
        } else {
            __sync_fetch_and_add(&stats->disk_read_ops, 1);
            __sync_fetch_and_add(&stats->disk_read_bytes, start->bytes);
        }
        hist_add(stats->disk_latency_us, &stats->disk_latency_sum_ns, bpf_ktime_get_ns() - start->start_ns);
    }
    bpf_map_delete_elem(&requests, &key);
    return 0;
}

// ---- scheduler: run-queue latency ----
SEC("tp_btf/sched_switch")
int BPF_PROG(handle_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
    // prev leaves the CPU: since its last switch-out it got the CPU once (pcount + 1), after
    // waiting run_delay's growth. sched_info of next is not updated until after this tracepoint.
    if ((prev->flags & PF_KTHREAD) || !accounted(prev->tgid))
        return 0;
    struct runqueue_seen *seen =
        bpf_task_storage_get(&runqueue_seen, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!seen)
        return 0;
    __u64 pcount = prev->sched_info.pcount;
    __u64 run_delay = prev->sched_info.run_delay;
    // A thread first seen with one run behind it is new: its first wait counts too. One seen
    // later in life (started before loupe) only sets the baseline.
    bool one_run = pcount == seen->pcount + 1;
    __u64 waited = run_delay - seen->run_delay;
    seen->pcount = pcount;
    seen->run_delay = run_delay;
    if (!one_run)
        return 0;
    struct loupe_proc_stats *stats = stats_of(prev->tgid, prev);
    if (stats)
        hist_add(stats->runqueue_latency_us, &stats->runqueue_latency_sum_ns, waited);
    return 0;
}

// ---- sockets ----
// Socket reads and writes are accounted by the HTTP capture's programs on the same tracepoints
// (account_socket_io, process_stats.bpf.h), which share this object's maps.

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
    if (!is_tcp(sk))
        return 0;
    __u64 key = (__u64)sk;
    if (newstate == TCP_SYN_SENT) {
        // connect(): we are in the connecting process.
        struct task_struct *task = (struct task_struct *)bpf_get_current_task();
        struct loupe_sock_owner owner = {.tgid = bpf_get_current_pid_tgid() >> 32};
        if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
            owner.tgid = 0;
        bpf_map_update_elem(&sock_owners, &key, &owner, BPF_ANY);
        if (owner.tgid)
            stats_of(owner.tgid, task);
        return 0;
    }
    if (newstate == TCP_ESTABLISHED) {
        struct loupe_sock_owner *owner = bpf_map_lookup_elem(&sock_owners, &key);
        if (oldstate == TCP_SYN_SENT && owner) {
            owner->established = bpf_ktime_get_ns();
            struct loupe_proc_stats *stats = owner->tgid ? bpf_map_lookup_elem(&proc_stats, &owner->tgid) : NULL;
            if (stats)
                __sync_fetch_and_add(&stats->tcp_opened, 1);
        } else if (oldstate == TCP_SYN_RECV) {
            // A passive child in softirq: its process is learnt later (claim_socket).
            struct loupe_sock_owner fresh = {.passive = 1, .established = bpf_ktime_get_ns()};
            bpf_map_update_elem(&sock_owners, &key, &fresh, BPF_ANY);
        }
        return 0;
    }
    if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK || newstate == TCP_CLOSE) {
        struct loupe_sock_owner *owner = bpf_map_lookup_elem(&sock_owners, &key);
        if (!owner)
            return 0;
        // An accepted socket closed (close(), shutdown()) before any read or write: claimed by
        // the process closing it.
        if (owner->tgid == 0 && owner->passive && in_socket_process(sk)) {
            struct loupe_proc_stats *stats = current_stats(); // NULL: a kernel thread, or filtered out
            if (stats)
                claim_socket(owner, bpf_get_current_pid_tgid() >> 32, stats);
        }
        if (newstate != TCP_CLOSE)
            return 0;
        struct loupe_proc_stats *stats = owner->tgid ? bpf_map_lookup_elem(&proc_stats, &owner->tgid) : NULL;
        if (stats) {
            if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
                if (oldstate == TCP_SYN_SENT)
                    __sync_fetch_and_add(&stats->tcp_failed, 1);
            } else {
                __sync_fetch_and_add(&stats->tcp_closed, 1);
                if (owner->established)
                    hist_add(stats->tcp_duration_us, &stats->tcp_duration_sum_ns,
                             bpf_ktime_get_ns() - owner->established);
            }
        }
        bpf_map_delete_elem(&sock_owners, &key);
    }
    return 0;
}

// One retransmitted skb can carry several segments (GSO); the kernel's TcpRetransSegs counts
// segments, and so does loupe.
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb)
{
    struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&skb->cb[0];
    __u64 segments = BPF_CORE_READ(cb, tcp_gso_segs);
    if (segments == 0)
        segments = 1;
    node_add(LOUPE_NODE_TCP_RETRANSMITS, segments);
    struct loupe_proc_stats *stats = owner_stats(sk);
    if (stats)
        __sync_fetch_and_add(&stats->tcp_retransmits, segments);
    return 0;
}

// A retransmitted SYN-ACK counts in TcpRetransSegs too; its listener is not a connection yet.
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(handle_tcp_retransmit_synack, const struct sock *sk)
{
    node_add(LOUPE_NODE_TCP_RETRANSMITS, 1);
    return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_tcp_send_reset, const struct sock *sk)
{
    if (!sk)
        return 0;
    struct loupe_proc_stats *stats = owner_stats(sk);
    // An abortive close() (unread data, SO_LINGER 0) resets the connection after moving it to
    // CLOSE, which dropped its owner: charged to the process closing it. (The state is read
    // first: sk may be a TIME_WAIT socket.)
    if (!stats && BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE && in_socket_process(sk))
        stats = current_stats();
    if (stats)
        __sync_fetch_and_add(&stats->tcp_resets_sent, 1);
    return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_tcp_receive_reset, struct sock *sk)
{
    struct loupe_proc_stats *stats = owner_stats(sk);
    if (stats)
        __sync_fetch_and_add(&stats->tcp_resets_received, 1);
    return 0;
}
