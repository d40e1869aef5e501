// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// HTTP capture from per-syscall tracepoints: no kprobes, no fentry, nothing internal to the
// kernel beyond CO-RE reads of the fd table and struct sock.
//
// Per TCP connection of a traced process, every read/write-like syscall becomes one data event
// carrying the first bytes (and last bytes) of the data; accept/connect/close and first sight of
// an already open connection become open/close events. Parsing happens in user space.
// Cost control (BRIEF §3): only the syscalls we need are hooked, each program returns early for
// loupe itself, filtered-out processes, non-sockets (cached) and connections that turned out not
// to speak HTTP (cached); wake-ups are batched.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "loupe_abi.h"
#include "socket_of_fd.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EINPROGRESS 115

// Connection kinds kept in `conns`.
#define CONN_UNDECIDED 0 // TCP, protocol not recognised yet
#define CONN_HTTP 1      // saw an HTTP/1.x request or status line
#define CONN_NOT_HTTP 2  // gave up: stop copying data for it
// Data events sent for an undecided connection before it is declared not-HTTP: lets user space
// count garbage on HTTP ports, and bounds the cost of Redis/PostgreSQL/TLS connections.
#define UNDECIDED_EVENT_BUDGET 8

// ---- load-time configuration (set by user space before load) ----
const volatile __u32 self_tgid = 0;       // loupe never traces itself
const volatile bool filter_tgids = false; // when true, only tgids in traced_tgids are traced
const volatile __u64 wakeup_bytes = 0;    // wake the consumer once this much data is pending

struct conn_state {
    __u64 generation;
    __u8 kind; // CONN_*
    __u8 role; // enum loupe_conn_role
    __u8 undecided_events;
    __u8 reserved[5];
};

// Arguments of a syscall in progress, from sys_enter to sys_exit of the same thread.
struct inflight_call {
    __u64 buf;        // user buffer, iovec array or msghdr, depending on the syscall
    __u64 count;      // buffer length or iovec count
    __u64 generation; // of the connection at sys_enter
    __s32 fd;
    __u8 syscall;   // enum loupe_syscall
    __u8 direction; // enum loupe_direction
    __u8 undecided; // the connection's protocol was not known at sys_enter
    __u8 reserved;
};

// @brief Traced processes when --pid/--comm/--port narrow the selection (filled by user space).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, __u8);
} traced_tgids SEC(".maps");

// @brief TCP connections seen, keyed by (tgid << 32 | fd). LRU: a connection whose process died
// without close() ages out instead of filling the table.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct conn_state);
} conns SEC(".maps");

// @brief fds known not to be TCP sockets (files, pipes, UDP...), so each read/write on them costs
// one lookup instead of a walk of the fd table. Separate from `conns` so that file churn can
// never evict live connections.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, __u8);
} non_sockets SEC(".maps");

// @brief Syscall arguments between sys_enter and sys_exit, per thread (key: pid_tgid). LRU so that
// an entry orphaned by a thread that never returned cannot leak; per-CPU LRU lists because every
// traced syscall inserts here and a shared list would be a contention point.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(map_flags, BPF_F_NO_COMMON_LRU);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct inflight_call);
} inflight SEC(".maps");

// @brief Scratch space for building a data event: too big for the 512-byte BPF stack. The slack
// after head[] lets the verifier prove `head + off + n` in bounds from masked off and n (see
// copy_head).
struct data_scratch {
    struct loupe_data_event event;
    __u8 slack[2 * LOUPE_DATA_HEAD_MAX];
};
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct data_scratch);
} scratch SEC(".maps");

// @brief Events to user space. Size set by user space before load.
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

// @brief Per-CPU drop counters, indexed by enum loupe_drop_reason; exported as metrics.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LOUPE_DROP_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
    __u64 *counter = bpf_map_lookup_elem(&drops, &reason);
    if (counter)
        *counter += 1; // per-CPU slot: no atomic needed
}

static __always_inline bool traced(__u32 tgid)
{
    if (tgid == self_tgid)
        return false;
    if (filter_tgids && !bpf_map_lookup_elem(&traced_tgids, &tgid))
        return false;
    return true;
}

static __always_inline __u64 conn_key(__u32 tgid, __s32 fd)
{
    return ((__u64)tgid << 32) | (__u32)fd;
}

// Batched wake-ups: the consumer drains on a timer and is only woken early when a lot is pending
// (beyla#2425: waking user space per event cost the traced app 40 % more CPU).
static __always_inline __u64 wakeup_flag(void)
{
    return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
                                                                        : BPF_RB_NO_WAKEUP;
}

static __always_inline void fill_header(struct loupe_event_header *h, __u16 kind, __u64 pid_tgid,
                                        __s32 fd, __u64 generation)
{
    h->kind = kind;
    h->reserved0 = 0;
    h->tid = (__u32)pid_tgid;
    h->timestamp_ns = bpf_ktime_get_ns();
    h->conn.tgid = pid_tgid >> 32;
    h->conn.fd = fd;
    h->conn.generation = generation;
}

static __always_inline void emit_open(__u64 pid_tgid, __s32 fd, __u64 generation, __u8 role,
                                      struct sock *sk)
{
    struct loupe_conn_open_event e = {};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();

    fill_header(&e.header, LOUPE_EVENT_CONN_OPEN, pid_tgid, fd, generation);
    e.role = role;
    e.family = BPF_CORE_READ(sk, __sk_common.skc_family);
    e.local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
    e.remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    if (e.family == AF_INET) {
        BPF_CORE_READ_INTO(&e.local_addr, sk, __sk_common.skc_rcv_saddr);
        BPF_CORE_READ_INTO(&e.remote_addr, sk, __sk_common.skc_daddr);
    } else {
        BPF_CORE_READ_INTO(&e.local_addr, sk, __sk_common.skc_v6_rcv_saddr);
        BPF_CORE_READ_INTO(&e.remote_addr, sk, __sk_common.skc_v6_daddr);
    }
    BPF_CORE_READ_STR_INTO(&e.comm, task, group_leader, comm);
    if (bpf_ringbuf_output(&events, &e, sizeof(e), wakeup_flag()) != 0)
        count_drop(LOUPE_DROP_RINGBUF_FULL);
}

// A fresh connection from accept or connect: replaces whatever a reused fd left behind.
static __always_inline void track_new_conn(__u64 pid_tgid, __s32 fd, __u8 role)
{
    struct sock *sk = tcp_sock_of_fd(fd);
    __u64 key = conn_key(pid_tgid >> 32, fd);
    struct conn_state state = {};

    if (!sk)
        return;
    bpf_map_delete_elem(&non_sockets, &key);
    state.generation = bpf_ktime_get_ns();
    state.kind = CONN_UNDECIDED;
    state.role = role;
    if (bpf_map_update_elem(&conns, &key, &state, BPF_ANY) != 0) {
        count_drop(LOUPE_DROP_CONN_TABLE_FULL);
        return;
    }
    emit_open(pid_tgid, fd, state.generation, role, sk);
}

// The connection state of (current tgid, fd), creating it for a TCP socket that was already
// open when loupe started. NULL when the fd is not worth tracing.
static __always_inline struct conn_state *lookup_conn(__u64 pid_tgid, __s32 fd)
{
    __u64 key = conn_key(pid_tgid >> 32, fd);
    struct conn_state *state = bpf_map_lookup_elem(&conns, &key);
    if (state)
        return state->kind == CONN_NOT_HTTP ? NULL : state;
    if (bpf_map_lookup_elem(&non_sockets, &key))
        return NULL;
    struct sock *sk = tcp_sock_of_fd(fd);
    if (!sk) {
        __u8 one = 1;
        bpf_map_update_elem(&non_sockets, &key, &one, BPF_ANY);
        return NULL;
    }
    struct conn_state fresh = {};
    fresh.generation = bpf_ktime_get_ns();
    if (bpf_map_update_elem(&conns, &key, &fresh, BPF_NOEXIST) == 0)
        emit_open(pid_tgid, fd, fresh.generation, LOUPE_ROLE_UNKNOWN, sk);
    return bpf_map_lookup_elem(&conns, &key);
}

static __always_inline void enter_io(__s32 fd, __u64 buf, __u64 count, __u8 syscall,
                                     __u8 direction)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!traced(pid_tgid >> 32))
        return;
    struct conn_state *state = lookup_conn(pid_tgid, fd);
    if (!state)
        return;
    struct inflight_call call = {.buf = buf,
                                 .count = count,
                                 .generation = state->generation,
                                 .fd = fd,
                                 .syscall = syscall,
                                 .direction = direction,
                                 .undecided = state->kind == CONN_UNDECIDED};
    if (bpf_map_update_elem(&inflight, &pid_tgid, &call, BPF_ANY) != 0)
        count_drop(LOUPE_DROP_INFLIGHT_FULL);
}

// Hides a value from the optimiser so that the bound check that follows is really emitted and
// seen by the verifier on the register used for the helper call.
#define OPAQUE(var) asm volatile("" : "+r"(var))

// Copies up to LOUPE_DATA_HEAD_MAX - off bytes from user memory at `src` into head[off..].
// Returns the number of bytes copied.
static __always_inline __u32 copy_head(struct data_scratch *s, __u32 off, __u64 src, __u64 avail)
{
    if (off >= LOUPE_DATA_HEAD_MAX)
        return 0;
    __u64 n = LOUPE_DATA_HEAD_MAX - off;
    if (avail < n)
        n = avail;
    if (n == 0)
        return 0;
    // Verifier workaround: the masks are no-ops for the values that reach here (off < HEAD_MAX,
    // n <= HEAD_MAX) but give the verifier bounds it can carry through register spills;
    // head[] is followed by 2 * HEAD_MAX bytes of slack (struct data_scratch) to match them.
    OPAQUE(off);
    off &= LOUPE_DATA_HEAD_MAX - 1;
    OPAQUE(n);
    n &= 2 * LOUPE_DATA_HEAD_MAX - 1;
    if (bpf_probe_read_user(&s->event.head[off], n, (const void *)src) != 0)
        return 0;
    return (__u32)n;
}

static __always_inline void copy_tail(struct data_scratch *s, __u64 end_addr)
{
    if (bpf_probe_read_user(s->event.tail, LOUPE_DATA_TAIL_MAX,
                            (const void *)(end_addr - LOUPE_DATA_TAIL_MAX)) == 0)
        s->event.tail_len = LOUPE_DATA_TAIL_MAX;
}

#define MAX_IOVECS 8

// Fills head (and tail) from an iovec array holding `total` transferred bytes.
static __always_inline void copy_from_iovecs(struct data_scratch *s, __u64 iov_addr, __u64 iovcnt,
                                             __u64 total)
{
    __u64 seen = 0;
    __u32 off = 0;

#pragma unroll
    for (int i = 0; i < MAX_IOVECS; i++) {
        struct iovec iov;
        if (i >= iovcnt || seen >= total)
            break;
        if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)(iov_addr + i * sizeof(iov))) != 0)
            break;
        __u64 len = iov.iov_len;
        if (len > total - seen)
            len = total - seen;
        off += copy_head(s, off, (__u64)iov.iov_base, len);
        seen += len;
        // The transfer's last byte lies in this iovec: that is where the tail is.
        if (seen == total && total > LOUPE_DATA_HEAD_MAX && len >= LOUPE_DATA_TAIL_MAX)
            copy_tail(s, (__u64)iov.iov_base + len);
    }
    s->event.head_len = off;
}

static __always_inline bool looks_like_http(const __u8 *p, __u16 len)
{
    if (len < 4)
        return false;
    // Request methods and "HTTP" (a status line), compared as their first four bytes.
    __u32 w = p[0] | (p[1] << 8) | (p[2] << 16) | ((__u32)p[3] << 24);
#define W(a, b, c, d) ((__u32)(a) | ((__u32)(b) << 8) | ((__u32)(c) << 16) | ((__u32)(d) << 24))
    return w == W('G', 'E', 'T', ' ') || w == W('P', 'O', 'S', 'T') || w == W('P', 'U', 'T', ' ') ||
           w == W('H', 'E', 'A', 'D') || w == W('D', 'E', 'L', 'E') || w == W('P', 'A', 'T', 'C') ||
           w == W('O', 'P', 'T', 'I') || w == W('C', 'O', 'N', 'N') || w == W('T', 'R', 'A', 'C') ||
           w == W('H', 'T', 'T', 'P');
#undef W
}

// `vector` is the buffer kind of the hooked syscall, a compile-time constant at each call site, so
// that each program only carries (and the verifier only walks) the copy path it can take.
static __always_inline void exit_io(long ret, const __u8 vector)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct inflight_call *callp = bpf_map_lookup_elem(&inflight, &pid_tgid);
    if (!callp)
        return;
    struct inflight_call call = *callp;
    bpf_map_delete_elem(&inflight, &pid_tgid);
    if (ret <= 0)
        return;

    // Only a connection still being classified needs its state again at exit; an HTTP one carries
    // everything in `call` (one hash lookup saved per event).
    struct conn_state *state = NULL;
    if (call.undecided) {
        __u64 key = conn_key(pid_tgid >> 32, call.fd);
        state = bpf_map_lookup_elem(&conns, &key);
        if (!state || state->kind == CONN_NOT_HTTP)
            return;
    }
    __u32 zero = 0;
    struct data_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
    if (!s)
        return;

    fill_header(&s->event.header, LOUPE_EVENT_DATA, pid_tgid, call.fd, call.generation);
    s->event.length = (__u64)ret;
    s->event.direction = call.direction;
    s->event.syscall = call.syscall;
    s->event.head_len = 0;
    s->event.tail_len = 0;
    s->event.reserved0 = 0;

    if (vector == 0) {
        if (call.buf) {
            s->event.head_len = copy_head(s, 0, call.buf, (__u64)ret);
            if ((__u64)ret > LOUPE_DATA_HEAD_MAX)
                copy_tail(s, call.buf + (__u64)ret);
        }
    } else if (vector == 1) {
        copy_from_iovecs(s, call.buf, call.count, (__u64)ret);
    } else {
        struct user_msghdr msg;
        if (bpf_probe_read_user(&msg, sizeof(msg), (const void *)call.buf) == 0)
            copy_from_iovecs(s, (__u64)msg.msg_iov, msg.msg_iovlen, (__u64)ret);
    }

    if (state && state->kind == CONN_UNDECIDED) {
        if (looks_like_http(s->event.head, s->event.head_len)) {
            state->kind = CONN_HTTP;
        } else if (++state->undecided_events > UNDECIDED_EVENT_BUDGET) {
            state->kind = CONN_NOT_HTTP;
            return;
        }
    }

    __u64 size = offsetof(struct loupe_data_event, head) + s->event.head_len;
    if (size > sizeof(struct loupe_data_event))
        size = sizeof(struct loupe_data_event);
    if (bpf_ringbuf_output(&events, &s->event, size, wakeup_flag()) != 0)
        count_drop(LOUPE_DROP_RINGBUF_FULL);
}

// ---- read side ----
SEC("tracepoint/syscalls/sys_enter_read")
int handle_enter_read(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], ctx->args[1], ctx->args[2], LOUPE_SYS_READ, LOUPE_DIR_INGRESS);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_readv")
int handle_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], ctx->args[1], ctx->args[2], LOUPE_SYS_READV, LOUPE_DIR_INGRESS);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int handle_enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], ctx->args[1], ctx->args[2], LOUPE_SYS_RECVFROM, LOUPE_DIR_INGRESS);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int handle_enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], ctx->args[1], 0, LOUPE_SYS_RECVMSG, LOUPE_DIR_INGRESS);
    return 0;
}

// ---- write side ----
SEC("tracepoint/syscalls/sys_enter_write")
int handle_enter_write(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], ctx->args[1], ctx->args[2], LOUPE_SYS_WRITE, LOUPE_DIR_EGRESS);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int handle_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], ctx->args[1], ctx->args[2], LOUPE_SYS_WRITEV, LOUPE_DIR_EGRESS);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int handle_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], ctx->args[1], ctx->args[2], LOUPE_SYS_SENDTO, LOUPE_DIR_EGRESS);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int handle_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], ctx->args[1], 0, LOUPE_SYS_SENDMSG, LOUPE_DIR_EGRESS);
    return 0;
}

// sendfile moves file bytes the process never sees: only the count travels (buf = 0).
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int handle_enter_sendfile64(struct trace_event_raw_sys_enter *ctx)
{
    enter_io(ctx->args[0], 0, ctx->args[3], LOUPE_SYS_SENDFILE, LOUPE_DIR_EGRESS);
    return 0;
}

// One exit handler per hooked syscall: a per-syscall tracepoint only fires for its syscall, which
// is what keeps the cost low; they share exit_io.
#define EXIT_IO(name, vector)                                                                      \
    SEC("tracepoint/syscalls/sys_exit_" #name)                                                     \
    int handle_exit_##name(struct trace_event_raw_sys_exit *ctx)                                   \
    {                                                                                              \
        exit_io(ctx->ret, vector);                                                                 \
        return 0;                                                                                  \
    }
EXIT_IO(read, 0)
EXIT_IO(readv, 1)
EXIT_IO(recvfrom, 0)
EXIT_IO(recvmsg, 2)
EXIT_IO(write, 0)
EXIT_IO(writev, 1)
EXIT_IO(sendto, 0)
EXIT_IO(sendmsg, 2)
EXIT_IO(sendfile64, 0)

// ---- connection lifecycle ----
static __always_inline void exit_accept(long ret)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (ret < 0 || !traced(pid_tgid >> 32))
        return;
    track_new_conn(pid_tgid, (__s32)ret, LOUPE_ROLE_SERVER);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int handle_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
    exit_accept(ctx->ret);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int handle_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
    exit_accept(ctx->ret);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int handle_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!traced(pid_tgid >> 32))
        return 0;
    struct inflight_call call = {.fd = ctx->args[0], .syscall = LOUPE_SYS_CONNECT};
    if (bpf_map_update_elem(&inflight, &pid_tgid, &call, BPF_ANY) != 0)
        count_drop(LOUPE_DROP_INFLIGHT_FULL);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int handle_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct inflight_call *call = bpf_map_lookup_elem(&inflight, &pid_tgid);
    if (!call)
        return 0;
    __s32 fd = call->fd;
    __u8 syscall = call->syscall;
    bpf_map_delete_elem(&inflight, &pid_tgid);
    // A non-blocking connect reports EINPROGRESS and completes later: the connection exists.
    if (syscall == LOUPE_SYS_CONNECT && (ctx->ret == 0 || ctx->ret == -EINPROGRESS))
        track_new_conn(pid_tgid, fd, LOUPE_ROLE_CLIENT);
    return 0;
}

// close: forget the fd, and tell user space so that in-flight requests end here (a reused fd
// starts clean; coroot-node-agent#372).
SEC("tracepoint/syscalls/sys_enter_close")
int handle_enter_close(struct trace_event_raw_sys_enter *ctx)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __s32 fd = ctx->args[0];
    __u64 key = conn_key(pid_tgid >> 32, fd);
    struct conn_state *state = bpf_map_lookup_elem(&conns, &key);
    if (!state) {
        // A lookup first: deleting a missing key still takes the bucket lock, on every close.
        if (bpf_map_lookup_elem(&non_sockets, &key))
            bpf_map_delete_elem(&non_sockets, &key);
        return 0;
    }
    if (state->kind != CONN_NOT_HTTP) {
        struct loupe_conn_close_event e = {};
        fill_header(&e.header, LOUPE_EVENT_CONN_CLOSE, pid_tgid, fd, state->generation);
        if (bpf_ringbuf_output(&events, &e, sizeof(e), wakeup_flag()) != 0)
            count_drop(LOUPE_DROP_RINGBUF_FULL);
    }
    bpf_map_delete_elem(&conns, &key);
    return 0;
}
