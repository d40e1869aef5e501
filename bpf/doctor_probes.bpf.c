// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// Programs used only by `loupe doctor`. Each proves that one kind of BPF attachment works on this
// kernel by counting hits from the doctor's own process. User space enables exactly one program
// per load (bpf_program__set_autoload), so a kind the kernel refuses cannot spoil the others.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "kernel_defs.bpf.h"
#include "loupe_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Set before load: only the doctor's own process counts, so other processes on the host never
// produce a false "available".
const volatile __u32 target_tgid = 0;

// Hits per probe kind, read by user space through the skeleton's .bss.
__u64 hits[LOUPE_PROBE_COUNT] = {};

// @brief Carries one record per tracepoint hit: proves ring buffer delivery end to end.
// One page is the smallest ring the kernel accepts.
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} doctor_events SEC(".maps");

static __always_inline int from_target(void)
{
    return (__u32)(bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

static __always_inline void count_hit(enum loupe_doctor_probe probe)
{
    if (probe < LOUPE_PROBE_COUNT)
        __sync_fetch_and_add(&hits[probe], 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_tracepoint(void *ctx)
{
    struct loupe_doctor_event event = {};

    if (!from_target())
        return 0;
    count_hit(LOUPE_PROBE_TRACEPOINT);
    event.tgid = target_tgid;
    event.probe = LOUPE_PROBE_TRACEPOINT;
    event.timestamp_ns = bpf_ktime_get_ns();
    bpf_ringbuf_output(&doctor_events, &event, sizeof(event), 0);
    return 0;
}

SEC("raw_tp/sys_enter")
int probe_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
    if (from_target())
        count_hit(LOUPE_PROBE_RAW_TP);
    return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(probe_tp_btf, struct pt_regs *regs, long id)
{
    if (from_target())
        count_hit(LOUPE_PROBE_TP_BTF);
    return 0;
}

// Attached by user space to a function of the loupe binary itself.
SEC("uprobe")
int probe_uprobe(struct pt_regs *ctx)
{
    if (from_target())
        count_hit(LOUPE_PROBE_UPROBE);
    return 0;
}

// Attached by user space to a kernel function found at run time.
SEC("kprobe")
int probe_kprobe(struct pt_regs *ctx)
{
    if (from_target())
        count_hit(LOUPE_PROBE_KPROBE);
    return 0;
}

// The attach target is set by user space before load (bpf_program__set_attach_target).
SEC("fentry")
int BPF_PROG(probe_fentry)
{
    if (from_target())
        count_hit(LOUPE_PROBE_FENTRY);
    return 0;
}

SEC("perf_event")
int probe_perf_event(struct bpf_perf_event_data *ctx)
{
    if (from_target())
        count_hit(LOUPE_PROBE_PERF_EVENT);
    return 0;
}

// The three tracepoints the socket capture is built on, with the signatures socket_capture.bpf.c
// uses. User space triggers them with a loopback TCP exchange of its own; only data actually moved
// (ret > 0) and a real state change count, so a tracepoint that exists but never fires is missing.
SEC("tp_btf/sock_send_length")
int BPF_PROG(probe_sock_send_length, struct sock *sk, int ret, int flags)
{
    if (from_target() && ret > 0)
        count_hit(LOUPE_PROBE_SOCK_SEND_LENGTH);
    return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(probe_sock_recv_length, struct sock *sk, int ret, int flags)
{
    if (from_target() && ret > 0)
        count_hit(LOUPE_PROBE_SOCK_RECV_LENGTH);
    return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(probe_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
    // connect() moves the socket to SYN_SENT in the connecting process: ours.
    if (from_target() && newstate == TCP_SYN_SENT)
        count_hit(LOUPE_PROBE_INET_SOCK_SET_STATE);
    return 0;
}
