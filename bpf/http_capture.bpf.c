// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// HTTP capture from the socket layer's own tracepoints: sock_recv_length and sock_send_length
// fire inside every recvmsg/sendmsg of a socket (read, recvfrom, writev, sendfile... alike) in the
// calling process, after the data moved; inet_sock_set_state gives roles and closes. No kprobes,
// no fentry, no syscall tracepoints: files, pipes and the rest of a process's syscalls never run
// loupe code, and the per-connection state lives on the socket itself.
//
// Per TCP connection of a traced process, every read/write becomes one data event carrying the
// first bytes (and last bytes) of the data (a sendfile joins the write before it); first sight of
// a connection and its end become open/close events. Parsing happens in user space.
// Cost control (BRIEF §3): each program returns early for loupe itself, filtered-out processes,
// non-TCP sockets and connections that turned out not to speak HTTP; events reach the rings in
// per-CPU batches, and wake-ups are batched too.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "kernel_defs.bpf.h"
#include "loupe_abi.h"
#include "process_stats.bpf.h"
#include "traced_tgids.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Connection kinds kept in `conns`.
#define CONN_UNDECIDED 0 // TCP, protocol not recognised yet
#define CONN_HTTP 1      // saw an HTTP/1.x request or status line
#define CONN_NOT_HTTP 2  // gave up: stop copying data for it
// Data events sent for an undecided connection before it is declared not-HTTP: lets user space
// count garbage on HTTP ports, and bounds the cost of Redis/PostgreSQL/TLS connections.
#define UNDECIDED_EVENT_BUDGET 8

// Buffer kinds of the hooked syscalls: where the transferred bytes are found.
#define VECTOR_NONE 0   // sendfile: none in user memory
#define VECTOR_BUFFER 1 // read, write, recvfrom, sendto: (buf, count)
#define VECTOR_IOVEC 2  // readv, writev: (iov, iovcnt)
#define VECTOR_MSGHDR 3 // recvmsg, sendmsg: a msghdr holding an iovec array

// ---- load-time configuration (set by user space before load) ----
// (filter_tgids: traced_tgids.bpf.h)
const volatile __u32 self_tgid = 0;    // loupe never traces itself
const volatile __u64 wakeup_bytes = 0; // wake the consumer after this much more in a CPU's ring
// The per-process maps of process_stats.bpf.h are the resource object's (shared by user space):
// account every socket read and write there too.
const volatile bool account_sockets = false;

struct conn_state {
    __u64 generation; // when loupe first saw I/O on it (0: not yet, no open event sent)
    __u32 tgid;       // process and fd of that first I/O: the close event names them
    __s32 fd;
    __u8 kind;        // CONN_*
    __u8 role;        // enum loupe_conn_role, learnt from the TCP state changes
    __u8 undecided_events;
    __u8 closed;      // close event sent
    __u32 write_seq;  // the TCP write_seq its last write left (write_time)
    // The per-process accounting's state of this socket (process_stats.bpf.h): kept here so that
    // one storage lookup per read or write serves both.
    struct socket_accounting accounting;
};

// @brief Per-connection state, stored on the socket itself: found from the socket pointer in a
// few loads (a hash keyed by (tgid, fd) needed a walk of the fd table on first sight and a close
// hook on every close), freed by the kernel with the socket, and never confused by a reused fd.
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct conn_state);
} conns SEC(".maps");

// A batch is sent at its CPU's next event once its oldest event is this old...
#define BATCH_MAX_AGE_NS 1000000ULL
// ... and at the latest this long after its first event, by its CPU's batch timer. Not 1 ms too:
// arming a timer that becomes its CPU's next expiry reprograms the CPU's timer device (a VM exit
// on a VM). Measured with nginx + wrk: ~120 ns a request more at 1 ms than at 10 ms.
#define BATCH_TIMER_NS 10000000ULL
// A batch timer that interrupted the writing of its batch tries again this much later.
#define BATCH_RETRY_NS 100000ULL

// @brief Per-CPU batches: events are written in place here (too big for the 512-byte BPF stack)
// and reach the CPU's ring several at a time, so that one ring reservation and commit serves many
// events. A batch is sent when full, and when it gets old (BATCH_MAX_AGE_NS, BATCH_TIMER_NS).
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct loupe_cpu_batch); // (loupe_abi.h)
} batches SEC(".maps");

struct batch_timer {
    struct bpf_timer timer;
};

// @brief Per CPU (index: CPU id), the timer that sends its batch BATCH_TIMER_NS after the
// batch's first event, pinned to that CPU: a batch that stops growing (its process went quiet,
// its CPU went idle) still reaches user space in time, with no hook on the machine's idle periods
// or timer ticks (power:cpu_idle ran as often as nginx served requests, ~100 ns each time). A
// bpf_timer may live in an array but not in a per-CPU array: hence this second map.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1); // set to the number of possible CPUs by user space
    __type(key, __u32);
    __type(value, struct batch_timer);
} batch_timers SEC(".maps");

// Load-time: gather events in batches (false: send every event at once, as when the kernel has
// no pinned bpf_timer).
const volatile bool batch_events = true;
// Set by user space as it stops: the batch timers send nothing more, user space reads what is
// left in the batches.
bool stopping = false;
// Why the kernel refused a batch timer (a negative errno; 0: it did not), for user space to say.
__s32 batch_timer_error = 0;

// The inner map of `events`: one per CPU, sized and created by user space.
struct cpu_ring {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
};

// @brief Events to user space: one ring buffer per CPU (index: CPU id), so that producers on
// different CPUs never contend for one ring's lock and cache lines. Measured with nginx and wrk
// on two CPUs: a shared ring cost ~150 ns per event with one producing CPU and 400-500 ns with
// two. User space merges the rings back into time order (capture/event_merger.h).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 1); // set to the number of possible CPUs by user space
    __type(key, __u32);
    __array(values, struct cpu_ring);
} events SEC(".maps");

// @brief Per-CPU drop counters, indexed by enum loupe_drop_reason; exported as metrics.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LOUPE_DROP_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drops(__u32 reason, __u64 events)
{
    __u64 *counter = bpf_map_lookup_elem(&drops, &reason);
    if (counter)
        *counter += events; // per-CPU slot: no atomic needed
}

static __always_inline void count_drop(__u32 reason)
{
    count_drops(reason, 1);
}

static __always_inline bool traced(__u32 tgid)
{
    if (tgid == self_tgid)
        return false;
    return tgid_selected(tgid);
}

// Hides a value from the optimiser so that the bound check that follows is really emitted and
// seen by the verifier on the register used for the helper call.
#define OPAQUE(var) asm volatile("" : "+r"(var))
#define COMPILER_BARRIER() asm volatile("" ::: "memory")

// Sends a record holding `event_count` events; when it cannot, they are counted as lost.
static __always_inline void ring_send(void *record, __u64 size, __u64 flags, __u64 event_count)
{
    __u32 cpu = bpf_get_smp_processor_id();
    void *ring = bpf_map_lookup_elem(&events, &cpu);
    // No ring: not reached, user space puts every CPU's ring in place before it attaches a hook.
    if (!ring || bpf_ringbuf_output(ring, record, size, flags) != 0)
        count_drops(LOUPE_DROP_RINGBUF_FULL, event_count);
}

// This CPU's batch, the caller's until batch_leave; NULL when the caller interrupted (softirq,
// hardirq) a program that is writing it. An interrupt runs to its end before the interrupted
// program goes on, so the flag needs no atomic.
static __always_inline struct loupe_cpu_batch *batch_enter(void)
{
    __u32 zero = 0;
    struct loupe_cpu_batch *b = bpf_map_lookup_elem(&batches, &zero);
    if (!b || b->busy)
        return NULL;
    b->busy = 1;
    COMPILER_BARRIER();
    return b;
}

static __always_inline void batch_leave(struct loupe_cpu_batch *b)
{
    COMPILER_BARRIER();
    b->busy = 0;
}

// Sends the batch through this CPU's ring. Wake-ups are batched too: the consumer drains on a
// timer and is woken early only after wakeup_bytes more were sent on this CPU (beyla#2425: waking
// user space per event cost the traced app 40 % more CPU). Counting the bytes here, not asking
// the ring (bpf_ringbuf_query), keeps the producer off the cache line the consumer writes.
static __always_inline void batch_flush(struct loupe_cpu_batch *b)
{
    __u64 size = b->out.bytes;
    if (size == 0)
        return;
    size += offsetof(struct loupe_event_batch, data);
    // Verifier workaround: never true, but bounds the size on the register the helper gets.
    OPAQUE(size);
    if (size > sizeof(struct loupe_event_batch))
        return;
    __u64 flags = BPF_RB_NO_WAKEUP;
    b->unsignalled += size;
    if (b->unsignalled >= wakeup_bytes) {
        b->unsignalled = 0;
        flags = BPF_RB_FORCE_WAKEUP;
    }
    b->out.kind = LOUPE_EVENT_BATCH;
    ring_send(&b->out, size, flags, b->out.events);
    b->out.bytes = 0;
    b->out.events = 0;
}

// Where the next event (at most max_size bytes) is to be written in the batch; the batch is sent
// first when it has no room left for it. batch_commit makes what was written there an event.
static __always_inline void *batch_reserve(struct loupe_cpu_batch *b, __u32 max_size)
{
    __u32 used = b->out.bytes;
    if (used + sizeof(struct loupe_batch_entry) + max_size > LOUPE_BATCH_BYTES) {
        batch_flush(b);
        used = 0;
    }
    // Verifier workaround: a no-op mask (used < LOUPE_BATCH_BYTES here) that bounds the offset.
    OPAQUE(used);
    used &= LOUPE_BATCH_BYTES - 1;
    return &b->out.data[used + sizeof(struct loupe_batch_entry)];
}

// This CPU's batch timer fires on this CPU once the caller has left its batch: sends the batch.
// (A CPU taken offline hands its timers to another CPU, whose batch this then sends: the offline
// CPU's batch waits until the CPU is back, or until user space reads it at shutdown.)
static int send_batch_on_timer(void *map, __u32 *key, struct batch_timer *t)
{
    __u32 zero = 0;
    struct loupe_cpu_batch *b = bpf_map_lookup_elem(&batches, &zero);
    if (!b)
        return 0;
    if (b->busy) {
        // This softirq interrupted a program writing the batch: come back after it.
        if (bpf_timer_start(&t->timer, BATCH_RETRY_NS, TIMER_CPU_PIN) != 0)
            b->timer = LOUPE_BATCH_TIMER_IDLE; // that program's next commit arms it again
        return 0;
    }
    b->timer = LOUPE_BATCH_TIMER_IDLE;
    if (stopping)
        return 0;
    b->busy = 1;
    COMPILER_BARRIER();
    batch_flush(b);
    batch_leave(b);
    return 0;
}

// Whether this CPU's batch timer will send the batch; false when the kernel refuses the timer
// (no bpf_timer for this program type, or no BPF_F_TIMER_CPU_PIN before 6.7): the caller sends
// the batch now, and every event from then on.
static __always_inline bool batch_timer_armed(struct loupe_cpu_batch *b)
{
    if (b->timer == LOUPE_BATCH_TIMER_ARMED)
        return true;
    if (b->timer == LOUPE_BATCH_TIMER_UNUSABLE)
        return false;
    __u32 cpu = bpf_get_smp_processor_id();
    struct batch_timer *t = bpf_map_lookup_elem(&batch_timers, &cpu);
    if (!t)
        return false;
    long err = 0;
    if (b->timer == LOUPE_BATCH_TIMER_UNSET) {
        err = bpf_timer_init(&t->timer, &batch_timers, CLOCK_MONOTONIC);
        if (err == 0)
            err = bpf_timer_set_callback(&t->timer, send_batch_on_timer);
    }
    if (err == 0)
        err = bpf_timer_start(&t->timer, BATCH_TIMER_NS, TIMER_CPU_PIN);
    if (err != 0) {
        b->timer = LOUPE_BATCH_TIMER_UNUSABLE;
        batch_timer_error = (__s32)err;
        return false;
    }
    b->timer = LOUPE_BATCH_TIMER_ARMED;
    return true;
}

static __always_inline void batch_commit(struct loupe_cpu_batch *b, __u32 size, __u64 now)
{
    __u32 used = b->out.bytes;
    OPAQUE(used);
    used &= LOUPE_BATCH_BYTES - 1; // verifier, as in batch_reserve
    struct loupe_batch_entry *entry = (struct loupe_batch_entry *)&b->out.data[used];
    entry->size = size;
    entry->reserved0 = 0;
    if (used == 0)
        b->first_ns = now;
    b->last_entry = used;
    b->out.bytes = used + sizeof(*entry) + ((size + 7) & ~7U);
    b->out.events += 1;
    // Signed: a write's time (write_time) can precede events put in the batch by a task that ran
    // on this CPU while the writer was preempted between its sending and this hook.
    if (!batch_events || (__s64)(now - b->first_ns) >= (__s64)BATCH_MAX_AGE_NS ||
        !batch_timer_armed(b))
        batch_flush(b);
}

// A write whose bytes loupe does not copy (sendfile) that follows an egress event of the same
// connection and thread still in this CPU's batch joins that event: the usual static-file
// response (headers by writev, body by sendfile) costs one event, not two.
static __always_inline bool join_last(struct loupe_cpu_batch *b, __u64 pid_tgid, __s32 fd,
                                      __u64 generation, __u64 length, __u64 now)
{
    if (b->out.bytes == 0)
        return false;
    __u32 at = b->last_entry;
    OPAQUE(at);
    at &= LOUPE_BATCH_BYTES - 1; // verifier, as in batch_reserve
    struct loupe_data_event *last =
        (struct loupe_data_event *)&b->out.data[at + sizeof(struct loupe_batch_entry)];
    if (last->header.kind != LOUPE_EVENT_DATA || last->direction != LOUPE_DIR_EGRESS ||
        last->header.tid != (__u32)pid_tgid || last->header.conn.tgid != pid_tgid >> 32 ||
        last->header.conn.fd != fd || last->header.conn.generation != generation)
        return false;
    __u64 spread = last->spread_ns + (now - last->header.timestamp_ns);
    if (spread > 0xffffffffULL)
        return false;
    last->spread_ns = (__u32)spread;
    last->header.timestamp_ns = now;
    last->length += length;
    last->tail_len = 0; // its last bytes are now the uncopied ones
    return true;
}

static __always_inline void fill_header(struct loupe_event_header *h, __u16 kind, __u64 pid_tgid,
                                        __s32 fd, __u64 generation, __u64 timestamp_ns)
{
    h->kind = kind;
    h->protocol = LOUPE_PROTOCOL_UNKNOWN;
    h->reserved0 = 0;
    h->tid = (__u32)pid_tgid;
    h->timestamp_ns = timestamp_ns;
    h->conn.tgid = pid_tgid >> 32;
    h->conn.fd = fd;
    h->conn.generation = generation;
}

// The socket's fields are read with plain loads: tracepoint arguments of tp_btf programs are
// trusted kernel pointers.
static __always_inline void emit_open(struct loupe_cpu_batch *b, __u64 pid_tgid, __s32 fd,
                                      const struct conn_state *state, struct sock *sk,
                                      struct task_struct *task)
{
    struct loupe_conn_open_event *e = batch_reserve(b, sizeof(*e));

    __builtin_memset(e, 0, sizeof(*e));
    fill_header(&e->header, LOUPE_EVENT_CONN_OPEN, pid_tgid, fd, state->generation,
                state->generation);
    e->role = state->role;
    e->family = sk->__sk_common.skc_family;
    e->local_port = sk->__sk_common.skc_num;
    e->remote_port = bpf_ntohs(sk->__sk_common.skc_dport);
    if (e->family == AF_INET) {
        __builtin_memcpy(e->local_addr, &sk->__sk_common.skc_rcv_saddr, 4);
        __builtin_memcpy(e->remote_addr, &sk->__sk_common.skc_daddr, 4);
    } else {
        BPF_CORE_READ_INTO(&e->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
        BPF_CORE_READ_INTO(&e->remote_addr, sk, __sk_common.skc_v6_daddr);
    }
    BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
    batch_commit(b, sizeof(*e), state->generation);
}

// Copies up to LOUPE_DATA_HEAD_MAX - off bytes from user memory at `src` into head[off..].
// Returns the number of bytes copied.
static __always_inline __u32 copy_head(struct loupe_data_event *e, __u32 off, __u64 src,
                                       __u64 avail)
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
    // the batch's slack (LOUPE_BATCH_SLACK) matches them.
    OPAQUE(off);
    off &= LOUPE_DATA_HEAD_MAX - 1;
    OPAQUE(n);
    n &= 2 * LOUPE_DATA_HEAD_MAX - 1;
    if (bpf_probe_read_user(&e->head[off], n, (const void *)src) != 0)
        return 0;
    return (__u32)n;
}

static __always_inline void copy_tail(struct loupe_data_event *e, __u64 end_addr)
{
    if (bpf_probe_read_user(e->tail, LOUPE_DATA_TAIL_MAX,
                            (const void *)(end_addr - LOUPE_DATA_TAIL_MAX)) == 0)
        e->tail_len = LOUPE_DATA_TAIL_MAX;
}

#define MAX_IOVECS 8

// Fills head (and tail) from an iovec array holding `total` transferred bytes.
static __always_inline void copy_from_iovecs(struct loupe_data_event *e, __u64 iov_addr,
                                             __u64 iovcnt, __u64 total)
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
        off += copy_head(e, off, (__u64)iov.iov_base, len);
        seen += len;
        // The transfer's last byte lies in this iovec: that is where the tail is.
        if (seen == total && total > LOUPE_DATA_HEAD_MAX && len >= LOUPE_DATA_TAIL_MAX)
            copy_tail(e, (__u64)iov.iov_base + len);
    }
    e->head_len = off;
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

// Syscall numbers of the socket reads and writes loupe copies data from, per architecture: the
// tracepoints fire inside sock_recvmsg/sock_sendmsg, and the syscall that called it (left in the
// thread's user registers until it returns) says where the user's bytes and the fd are.
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR(regs) ((regs)->orig_ax)
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDFILE 40
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_NR(regs) ((regs)->syscallno)
#define NR_READV 65
#define NR_WRITEV 66
#define NR_READ 63
#define NR_WRITE 64
#define NR_SENDFILE 71
#define NR_SENDTO 206
#define NR_RECVFROM 207
#define NR_SENDMSG 211
#define NR_RECVMSG 212
#else
#error "loupe's HTTP capture knows the syscall numbers of x86_64 and arm64 only"
#endif

// Sets what the syscall numbered `nr` is (LOUPE_SYS_*), where its bytes are (VECTOR_*) and
// whether it writes. False for one whose buffers loupe cannot read (sendmmsg, recvmmsg, splice,
// io_uring).
#define SYSCALL_CASE(nr_, syscall_, vector_, writes_)                                              \
    case nr_:                                                                                      \
        *syscall = syscall_;                                                                       \
        *vector = vector_;                                                                         \
        *writes = writes_;                                                                         \
        return true;
static __always_inline bool classify_syscall(__u64 nr, __u8 *syscall, __u8 *vector, bool *writes)
{
    switch (nr) {
        SYSCALL_CASE(NR_READ, LOUPE_SYS_READ, VECTOR_BUFFER, false)
        SYSCALL_CASE(NR_READV, LOUPE_SYS_READV, VECTOR_IOVEC, false)
        SYSCALL_CASE(NR_RECVFROM, LOUPE_SYS_RECVFROM, VECTOR_BUFFER, false)
        SYSCALL_CASE(NR_RECVMSG, LOUPE_SYS_RECVMSG, VECTOR_MSGHDR, false)
        SYSCALL_CASE(NR_WRITE, LOUPE_SYS_WRITE, VECTOR_BUFFER, true)
        SYSCALL_CASE(NR_WRITEV, LOUPE_SYS_WRITEV, VECTOR_IOVEC, true)
        SYSCALL_CASE(NR_SENDTO, LOUPE_SYS_SENDTO, VECTOR_BUFFER, true)
        SYSCALL_CASE(NR_SENDMSG, LOUPE_SYS_SENDMSG, VECTOR_MSGHDR, true)
        // sendfile: file bytes the process never sees, only the count
        SYSCALL_CASE(NR_SENDFILE, LOUPE_SYS_SENDFILE, VECTOR_NONE, true)
    default:
        return false;
    }
}
#undef SYSCALL_CASE

// When a write on `state`'s connection `sk` ended, for its event. The TCP stack's clock
// reading, tcp_clock_cache, when this write queued bytes and every byte queued has been sent:
// the sending (tcp_write_xmit) refreshed it after the bytes were queued, so during this write.
// The clock otherwise: bytes held back (autocorking, Nagle, TCP_CORK, congestion or receive
// window) or queued above TCP (a kTLS record kept open), where the cache may be older. A clock
// read costs ~70 ns on the development VM (pvclock), and nginx makes two writes per request.
static __always_inline __u64 write_time(struct sock *sk, struct conn_state *state)
{
    // Verifier: a helper call, not a cast, so that no nullable pointer outlives this function
    // (carried through socket_data, it doubled the states the verifier explores).
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
    if (!tp)
        return bpf_ktime_get_ns();
    __u32 write_seq = tp->write_seq;
    bool queued = write_seq != state->write_seq;
    state->write_seq = write_seq;
    if (queued && tp->snd_nxt == write_seq) {
        __u64 cached = tp->tcp_clock_cache;
        if (cached)
            return cached;
    }
    return bpf_ktime_get_ns();
}

// One read or write of `ret` bytes on `sk` by the current thread. `transmit`: a write.
static __always_inline void socket_data(struct sock *sk, int ret, int flags, bool transmit)
{
    if (ret <= 0 || (flags & MSG_PEEK))
        return; // EAGAIN, EOF and errors carry no data; a peek is read again for real
    // The process filter first: every socket read and write on the machine gets here, most of
    // them from processes not traced. The ids are read from the task, which is needed anyway:
    // one helper call fewer (perf_phases.py on nginx + wrk, --comm nginx: 0.09 µs a request
    // less in wrk's untraced reads and writes, 0.1 less in nginx's).
    struct task_struct *task = bpf_get_current_task_btf();
    __u32 tgid = task->tgid;
    if (!tgid_selected(tgid))
        return;
    __u64 pid_tgid = ((__u64)tgid << 32) | (__u32)task->pid;
    __u16 family = sk->__sk_common.skc_family;
    if (family != AF_INET && family != AF_INET6)
        return;
    if (task->flags & PF_KTHREAD)
        return; // in-kernel socket users (NFS, iSCSI, writeback) are not services
    bool account = account_sockets; // loupe's own sockets too
    bool trace = tgid != self_tgid && sk->sk_protocol == IPPROTO_TCP;
    if (!account && !trace)
        return;
    // The connection's state, created at its first traced I/O; one lookup serves the accounting
    // and the capture.
    struct conn_state *state = NULL;
    if (trace) {
        state = bpf_sk_storage_get(&conns, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
        if (!state)
            count_drop(LOUPE_DROP_CONN_TABLE_FULL);
    }
    if (account)
        account_socket_io(sk, ret, transmit, tgid, task, state ? &state->accounting : NULL);
    if (!state || state->kind == CONN_NOT_HTTP)
        return;
    __u64 now = transmit ? write_time(sk, state) : bpf_ktime_get_ns();
    if (task->flags & PF_IO_WORKER)
        return; // io_uring workers: no syscall of the process behind them
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    __u8 syscall;
    __u8 vector;
    bool writes;
    if (!classify_syscall(SYSCALL_NR(regs), &syscall, &vector, &writes) || writes != transmit) {
        count_drop(LOUPE_DROP_UNSUPPORTED_SYSCALL);
        return;
    }
    __s32 fd = PT_REGS_PARM1_SYSCALL(regs);
    struct loupe_cpu_batch *b = batch_enter();
    if (!b) {
        count_drop(LOUPE_DROP_NESTED);
        return;
    }
    if (!state->generation) {
        // First traced I/O on this connection: announce it.
        state->generation = now;
        state->tgid = tgid;
        state->fd = fd;
        emit_open(b, pid_tgid, fd, state, sk, task);
    }
    if (vector == VECTOR_NONE && join_last(b, pid_tgid, fd, state->generation, (__u64)ret, now)) {
        batch_leave(b);
        return;
    }

    struct loupe_data_event *e = batch_reserve(b, sizeof(*e));
    fill_header(&e->header, LOUPE_EVENT_DATA, pid_tgid, fd, state->generation, now);
    e->length = (__u64)ret;
    e->spread_ns = 0;
    e->direction = transmit ? LOUPE_DIR_EGRESS : LOUPE_DIR_INGRESS;
    e->syscall = syscall;
    e->head_len = 0;
    e->tail_len = 0;
    e->reserved0 = 0;
    e->reserved1 = 0;

    if (vector == VECTOR_BUFFER) {
        __u64 buf = PT_REGS_PARM2_SYSCALL(regs);
        e->head_len = copy_head(e, 0, buf, (__u64)ret);
        if ((__u64)ret > LOUPE_DATA_HEAD_MAX)
            copy_tail(e, buf + (__u64)ret);
    } else if (vector == VECTOR_IOVEC) {
        copy_from_iovecs(e, PT_REGS_PARM2_SYSCALL(regs), PT_REGS_PARM3_SYSCALL(regs), (__u64)ret);
    } else if (vector == VECTOR_MSGHDR) {
        struct user_msghdr msg;
        if (bpf_probe_read_user(&msg, sizeof(msg), (const void *)PT_REGS_PARM2_SYSCALL(regs)) == 0)
            copy_from_iovecs(e, (__u64)msg.msg_iov, msg.msg_iovlen, (__u64)ret);
    }

    if (state->kind == CONN_UNDECIDED) {
        if (looks_like_http(e->head, e->head_len)) {
            state->kind = CONN_HTTP;
        } else if (++state->undecided_events > UNDECIDED_EVENT_BUDGET) {
            state->kind = CONN_NOT_HTTP;
            batch_leave(b); // not committed: the event is left out of the batch
            return;
        }
    }

    __u32 size = offsetof(struct loupe_data_event, head) + e->head_len;
    if (size > sizeof(struct loupe_data_event))
        size = sizeof(struct loupe_data_event);
    batch_commit(b, size, now);
    batch_leave(b);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(http_sock_recv_length, struct sock *sk, int ret, int flags)
{
    socket_data(sk, ret, flags, false);
    return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(http_sock_send_length, struct sock *sk, int ret, int flags)
{
    socket_data(sk, ret, flags, true);
    return 0;
}

// ---- connection lifecycle ----
// Roles: connect() moves a socket to SYN_SENT in the connecting process; a passive connection
// becomes ESTABLISHED from SYN_RECV (in softirq) before accept() returns it. Close: LAST_ACK is
// reached in close() after the peer's FIN, CLOSE at the end of every other path (an active close
// reaches it when the peer's FIN arrives; a reset at once). FIN_WAIT1 is not a close: a client
// that shuts down its write side still reads the response. A close event lets user space end
// what the connection had pending (a close-delimited response, or a request never answered).
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(http_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
    if (sk->sk_protocol != IPPROTO_TCP)
        return 0;
    if (newstate == TCP_SYN_SENT || (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_RECV)) {
        // The client side is known to be in its process: skip the processes not traced.
        if (newstate == TCP_SYN_SENT && !traced(bpf_get_current_pid_tgid() >> 32))
            return 0;
        struct conn_state *state =
            bpf_sk_storage_get(&conns, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
        if (state && !state->generation)
            state->role = newstate == TCP_SYN_SENT ? LOUPE_ROLE_CLIENT : LOUPE_ROLE_SERVER;
        return 0;
    }
    if (newstate != TCP_CLOSE && newstate != TCP_LAST_ACK)
        return 0;
    struct conn_state *state = bpf_sk_storage_get(&conns, sk, NULL, 0);
    if (!state || !state->generation || state->closed)
        return 0;
    state->closed = 1;
    if (state->kind == CONN_NOT_HTTP)
        return 0;
    __u64 now = bpf_ktime_get_ns();
    struct loupe_conn_close_event e = {};
    fill_header(&e.header, LOUPE_EVENT_CONN_CLOSE, (__u64)state->tgid << 32, state->fd,
                state->generation, now);
    struct loupe_cpu_batch *b = batch_enter();
    if (b) {
        struct loupe_conn_close_event *slot = batch_reserve(b, sizeof(*slot));
        *slot = e;
        batch_commit(b, sizeof(*slot), now);
        batch_leave(b);
    } else {
        // A softirq's close that interrupted the writing of this CPU's batch: sent alone (user
        // space puts records back in time order).
        ring_send(&e, sizeof(e), BPF_RB_NO_WAKEUP, 1);
    }
    return 0;
}
