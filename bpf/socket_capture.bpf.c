// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// Socket data capture from the socket layer's own tracepoints: sock_recv_length and sock_send_length
// fire inside every recvmsg/sendmsg of a socket (read, recvfrom, writev, sendfile... alike) in the
// calling process, after the data moved; inet_sock_set_state gives roles and closes. No kprobes,
// no fentry, no syscall tracepoints: files, pipes and the rest of a process's syscalls never run
// loupe code, and the per-connection state lives on the socket itself.
//
// Per TCP connection of a traced process, every read/write becomes one data event carrying the
// first bytes (and last bytes) of the data (a sendfile joins the write before it); first sight of
// a connection and its end become open/close events. Parsing happens in user space.
// Cost control (BRIEF §3): each program returns early for loupe itself, filtered-out processes,
// non-TCP sockets and connections that turned out to speak none of the protocols loupe parses
// (the enabled ones, classified from their first bytes: protocol_classify.bpf.h); events reach the rings in
// per-CPU batches, and wake-ups are batched too.
//
// The concerns live in headers of their own: the per-CPU batch transport (event_batch.bpf.h),
// finding the syscall's buffers and copying from them (syscall_buffers.bpf.h), protocol
// classification (protocol_classify.bpf.h); this file has the per-connection state and the hooks.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "kernel_defs.bpf.h"
#include "loupe_abi.h"
#include "process_stats.bpf.h"
#include "protocol_classify.bpf.h"
#include "syscall_buffers.bpf.h"
#include "event_batch.bpf.h"
#include "tls_openssl.bpf.h"
#include "tls_go.bpf.h"
#include "traced_tgids.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Classification (protocol_classify.bpf.h) of a connection not classified yet ("undecided"):
// - CR/LF before a message start are skipped (a client may send empty lines first: RFC 9112
//   2.2), in the first CLASSIFY_BYTES bytes of a read or write; a read or write of CR/LF alone
//   sends no event, but its bytes count against BLANK_BYTE_BUDGET;
// - a read or write that is the beginning of a message start, too short to decide (`GE`, `*3\r`),
//   sends no event: its bytes are held in the connection's state, and the next read or write in
//   the same direction is classified with them in front; the event that classifies the
//   connection carries the held bytes first (spread_ns says when they moved). So a request line
//   written a few bytes at a time is classified, and its parser sees the request from its start;
// - any other read or write that classifies nothing (in either direction: a connection picked up
//   mid-stream sees ends of messages first) spends one of UNDECIDED_EVENT_BUDGET events, sent
//   for user space to count as garbage; past the budget the connection is ignored for good.
// Data events sent for an undecided connection that began no message: lets user space count
// garbage on a server's port, and bounds the cost of the connections loupe does not parse (TLS,
// protocols not enabled).
#define UNDECIDED_EVENT_BUDGET 8
// CR/LF skipped before any message start of an undecided connection; beyond, it is ignored.
#define BLANK_BYTE_BUDGET 256

// ---- load-time configuration (set by user space before load) ----
// (filter_tgids: traced_tgids.bpf.h)
const volatile __u32 self_tgid = 0;    // loupe never traces itself
// The per-process maps of process_stats.bpf.h are the resource object's (shared by user space):
// account every socket read and write there too.
const volatile bool account_sockets = false;
// Bytes of one read or write copied on a connection of each protocol (index: enum
// loupe_protocol), in its data event's head and the chunk events after it: what the protocol's
// parser needs to find every message boundary (a pipeline of requests, several responses read
// at once). Undecided connections get their head only.
const volatile __u32 copy_cap[LOUPE_PROTOCOL_COUNT] = {
    [LOUPE_PROTOCOL_UNKNOWN] = LOUPE_DATA_HEAD_MAX,
    [LOUPE_PROTOCOL_HTTP1] = LOUPE_COPY_CAP_DEFAULT,
    [LOUPE_PROTOCOL_REDIS] = LOUPE_COPY_CAP_DEFAULT,
    [LOUPE_PROTOCOL_POSTGRES] = LOUPE_COPY_CAP_DEFAULT,
    [LOUPE_PROTOCOL_MYSQL] = LOUPE_COPY_CAP_DEFAULT,
};

// A chunk copies at most what a copy_from_source call does.
_Static_assert(LOUPE_CHUNK_BYTES <= COPY_MAX && LOUPE_DATA_HEAD_MAX <= COPY_MAX,
               "events larger than one copy");

struct conn_state {
    __u64 generation; // when loupe first saw I/O on it (0: not yet)
    __u32 tgid;       // process and fd of that first I/O: the close event names them
    __s32 fd;
    __u8 protocol;    // enum loupe_protocol: LOUPE_PROTOCOL_UNKNOWN until classified
    __u8 role;        // enum loupe_conn_role, learnt from the TCP state changes
    __u8 undecided_events; // events sent while undecided that began no message
    __u8 closed;      // close event sent
    __u8 ignored;     // none of the enabled protocols: no more events for it
    __u8 announced;   // open event sent (with the connection's first event)
    __u8 held_len;    // bytes in held[]: the beginning of a message start, too short to decide
    __u8 held_egress; // held[] was written (not read) by the process
    __u16 blank_bytes; // CR/LF skipped while undecided
    // PostgreSQL answered an SSLRequest/GSSENCRequest with 'S'/'G', or a MySQL client sent an SSL
    // request: encrypted from then on, so no more socket data events (its close still is sent;
    // a TLS library's plaintext comes through its uprobes).
    __u8 encrypted;
    __u8 early_events; // data events sent once classified, up to 255: the SSL answer is early
    __u8 tls;          // TLS_* (tls_openssl.bpf.h): its socket carries TLS records
    __u8 mysql_ssl_header; // MySQL: the last event was an SSL request's header, read alone
    __u8 reserved0[2];
    __u32 write_seq;  // the TCP write_seq its last write left (write_time)
    __u64 held_ns;    // when the first held byte moved
    __u8 held[CLASSIFY_BYTES];
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

// @brief Per SSL* of a process (tls_openssl.bpf.h): the connection it is tied to (generation, tgid,
// fd) and the classification state of its plaintext, as a socket's is in `conns`. LRU-bounded
// (TLS_SESSIONS_MAX); an entry goes at SSL_free.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, TLS_SESSIONS_MAX);
    __type(key, struct tls_session_key);
    __type(value, struct conn_state);
} tls_sessions SEC(".maps");

// Set by user space while capture is paused: the uprobes send nothing.
bool tls_paused = false;

static __always_inline bool traced(__u32 tgid)
{
    if (tgid == self_tgid)
        return false;
    return tgid_selected(tgid);
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
    // Not after chunks: the event they belong to and they share one timestamp (user space joins
    // them by it), and the last entry would be a chunk anyway.
    if (last->header.kind != LOUPE_EVENT_DATA || last->direction != LOUPE_DIR_EGRESS ||
        last->captured != last->head_len ||
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

static __always_inline void fill_header(struct loupe_event_header *h, __u16 kind, __u8 protocol,
                                        __u64 pid_tgid, __s32 fd, __u64 generation,
                                        __u64 timestamp_ns)
{
    h->kind = kind;
    h->protocol = protocol;
    h->flags = 0;
    h->tid = (__u32)pid_tgid;
    h->timestamp_ns = timestamp_ns;
    h->conn.tgid = pid_tgid >> 32;
    h->conn.fd = fd;
    h->conn.generation = generation;
}

// Writes the open event of `state`'s connection at `e` (its protocol is set once the first data
// event decided it). The socket's fields are read with CO-RE reads, not plain loads: the Go TLS
// uprobe passes a socket found through the fd table (tls_go.bpf.h), which the verifier does not
// trust as it trusts a tp_btf argument. An open event is sent once per connection.
static __always_inline void fill_open(struct loupe_conn_open_event *e, __u64 pid_tgid, __s32 fd,
                                      const struct conn_state *state, struct sock *sk,
                                      struct task_struct *task, __u64 now)
{
    __builtin_memset(e, 0, sizeof(*e));
    fill_header(&e->header, LOUPE_EVENT_CONN_OPEN, state->protocol, pid_tgid, fd,
                state->generation, now);
    e->role = state->role;
    e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
    e->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    if (e->family == AF_INET) {
        BPF_CORE_READ_INTO((__u32 *)e->local_addr, sk, __sk_common.skc_rcv_saddr);
        BPF_CORE_READ_INTO((__u32 *)e->remote_addr, sk, __sk_common.skc_daddr);
    } else {
        BPF_CORE_READ_INTO(&e->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
        BPF_CORE_READ_INTO(&e->remote_addr, sk, __sk_common.skc_v6_daddr);
    }
    BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
}

// What becomes of a read or write of an undecided connection (see UNDECIDED_EVENT_BUDGET).
#define UNDECIDED_SEND 0 // its event is sent (classified now, or garbage within the budget)
#define UNDECIDED_KEEP 1 // no event: CR/LF only, or its bytes are held
#define UNDECIDED_STOP 2 // no event, and none ever again: the connection is ignored

// One more event of an undecided connection that began no message.
static __always_inline int spend_budget(struct conn_state *state)
{
    if (++state->undecided_events > UNDECIDED_EVENT_BUDGET) {
        state->ignored = 1;
        return UNDECIDED_STOP;
    }
    return UNDECIDED_SEND;
}

// Classifies the data event `e` of an undecided connection (its head begins with the bytes held
// before it, when `held`). Verifier: a global function, verified once on its own; inlined, its
// branches multiplied with those of the copies around it past the verifier's 1M instructions.
__noinline int classify_undecided(struct conn_state *state, struct loupe_data_event *e, bool held,
                                  bool egress, __u64 now)
{
    if (!state || !e)
        return UNDECIDED_STOP; // verifier: a global function's pointers may be NULL
    __u32 len = e->head_len;
    __u32 skip = 0;
    if (!held) {
#pragma unroll
        for (int i = 0; i < CLASSIFY_BYTES; i++) {
            __u8 c = e->head[i];
            if (skip == i && i < len && (c == '\r' || c == '\n'))
                skip++; // no break: clang unrolls only a loop without one here
        }
        if (skip == len && len == e->length) {
            state->blank_bytes += len;
            if (state->blank_bytes > BLANK_BYTE_BUDGET) {
                state->ignored = 1;
                return UNDECIDED_STOP;
            }
            return UNDECIDED_KEEP;
        }
    }
    __u8 start[CLASSIFY_BYTES];
    // Verifier workaround: skip <= CLASSIFY_BYTES already; the mask carries that bound.
    OPAQUE(skip);
    skip &= 2 * CLASSIFY_BYTES - 1;
    __builtin_memcpy(start, &e->head[skip], CLASSIFY_BYTES); // head[] is larger: past len unused
    len -= skip;
    if (looks_like_tls_record(start, len)) {
        // Ciphertext: never parsed. Its plaintext comes from the TLS library's hooks, when the
        // process uses one loupe hooks (socket_data ties them); counted at close otherwise.
        state->tls = TLS_RECORDS;
        state->held_len = 0;
        return UNDECIDED_KEEP;
    }
    bool maybe = false;
    __u8 protocol = classify_start(start, len, e->length - skip, &maybe);
    if (protocol != LOUPE_PROTOCOL_UNKNOWN) {
        state->protocol = protocol;
        state->held_len = 0;
        e->header.protocol = protocol;
        return UNDECIDED_SEND;
    }
    // A "maybe" is always shorter than CLASSIFY_BYTES (classify_start): all of it fits in held[].
    if (maybe && len < CLASSIFY_BYTES && e->head_len == e->length) {
        if (!held)
            state->held_ns = now;
        __builtin_memcpy(state->held, start, CLASSIFY_BYTES);
        state->held_len = len;
        state->held_egress = egress;
        return UNDECIDED_KEEP;
    }
    state->held_len = 0;
    return spend_budget(state);
}


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

// The chunks of one read or write: its bytes [offset, end) still to copy, and where they are.
struct chunk_job {
    struct byte_source src;
    __u64 pid_tgid;
    __u64 generation;
    __u64 now; // the data event's timestamp, which its chunks share
    __s32 fd;
    __u32 offset;
    __u32 end;
    __u16 protocol;
    __u8 flags; // the data event's header flags
    __u8 reserved0;
};

// bpf_loop callback: copies the next chunk of `ctx` (a struct chunk_job) into a chunk event;
// returns 1 to stop (all copied, or a copy fell short).
static long copy_chunk(__u64 index, void *ctx)
{
    struct chunk_job *job = ctx;
    if (job->offset >= job->end)
        return 1;
    // The caller holds this CPU's batch (busy): looked up again, as a callback gets no pointer
    // to it but through its context.
    __u32 zero = 0;
    struct loupe_cpu_batch *b = bpf_map_lookup_elem(&batches, &zero);
    if (!b)
        return 1;
    __u32 want = job->end - job->offset;
    if (want > LOUPE_CHUNK_BYTES)
        want = LOUPE_CHUNK_BYTES;
    struct loupe_data_chunk_event *c =
        batch_reserve(b, offsetof(struct loupe_data_chunk_event, data) + want);
    fill_header(&c->header, LOUPE_EVENT_DATA_CHUNK, job->protocol, job->pid_tgid, job->fd,
                job->generation, job->now);
    c->header.flags = job->flags;
    c->offset = job->offset;
    c->reserved0 = 0;
    __u32 got = copy_from_source((struct copy_window *)c->data, want, &job->src);
    if (got == 0)
        return 1;
    c->len = got;
    batch_append(b, offsetof(struct loupe_data_chunk_event, data) + got, job->now);
    // As batch_commit, but without arming the timer (the data event's commit did, or the batch
    // goes out at once).
    if (!batch_events || b->timer != LOUPE_BATCH_TIMER_ARMED ||
        (__s64)(job->now - b->first_ns) >= (__s64)BATCH_MAX_AGE_NS)
        batch_flush(b);
    job->offset += got;
    return got < want;
}

// Sends the data event of one read or write of `total` bytes on the connection of `state` (its
// bytes at job->src when `readable`), and on a classified connection the chunk events after it;
// the connection's open event first when `sk` is given and it was not announced yet. Shared by
// the socket tracepoints and the TLS uprobes (`flags`: LOUPE_EVENT_FLAG_*; `timed`: the caller
// may arm the batch timer, which uprobes, as kprobe-type programs, may not). The caller holds `b`
// and has set job's pid_tgid, fd, generation and now.
static __always_inline void emit_data(struct loupe_cpu_batch *b, struct conn_state *state,
                                      struct chunk_job *job, bool readable, __u64 ret,
                                      bool transmit, __u8 syscall, __u8 vector, __u8 flags,
                                      struct sock *sk, struct task_struct *task, bool timed)
{
    __u64 pid_tgid = job->pid_tgid;
    __s32 fd = job->fd;
    __u64 now = job->now;
    bool undecided = state->protocol == LOUPE_PROTOCOL_UNKNOWN;
    __u32 held = 0;
    if (undecided && state->held_len && state->held_len <= CLASSIFY_BYTES) {
        if (state->held_egress == transmit) {
            held = state->held_len;
        } else {
            // The message start held went unfinished: the other side talks now.
            state->held_len = 0;
            if (spend_budget(state) == UNDECIDED_STOP)
                return;
        }
    }

    // Room for the bytes this event's head can hold, not for a whole head: small events pack.
    __u64 total = ret + held;
    __u32 head_room = total < LOUPE_DATA_HEAD_MAX ? total : LOUPE_DATA_HEAD_MAX;
    if (vector == VECTOR_NONE)
        head_room = held;
    __u32 event_size = (offsetof(struct loupe_data_event, head) + head_room + 7) & ~7U;

    // The connection's first event comes after its open event, in the same batch: room for both.
    bool announce = sk && !state->announced;
    struct batch_mark mark;
    struct loupe_conn_open_event *open = NULL;
    if (announce) {
        batch_mark(b, &mark);
        open = batch_reserve(b, sizeof(*open) + sizeof(struct loupe_batch_entry) + event_size);
        fill_open(open, pid_tgid, fd, state, sk, task, now);
        batch_append(b, sizeof(*open), now);
    }
    struct loupe_data_event *e = batch_reserve(b, event_size);
    fill_header(&e->header, LOUPE_EVENT_DATA, state->protocol, pid_tgid, fd, state->generation,
                now);
    e->header.flags = flags;
    e->length = total;
    e->spread_ns = 0;
    e->direction = transmit ? LOUPE_DIR_EGRESS : LOUPE_DIR_INGRESS;
    e->syscall = syscall;
    e->head_len = 0;
    e->tail_len = 0;
    e->reserved0 = 0;
    e->captured = 0;
    if (held) {
        __builtin_memcpy(e->head, state->held, CLASSIFY_BYTES);
        e->head_len = held;
        __u64 spread = now > state->held_ns ? now - state->held_ns : 0;
        e->spread_ns = spread > 0xffffffffULL ? 0xffffffffU : (__u32)spread;
    }

    if (readable) {
        // Verifier workaround: a no-op mask (held <= CLASSIFY_BYTES) that bounds the offset.
        __u32 at = held;
        OPAQUE(at);
        at &= 2 * CLASSIFY_BYTES - 1;
        __u32 want = head_room > at ? head_room - at : 0;
        if (vector == VECTOR_BUFFER && want != 0) {
            // The usual read or write, one buffer: copied here, without the cursor's walk
            // (cost.py: ~10 ns a run less). Verifier: no-op mask (want <= LOUPE_DATA_HEAD_MAX).
            __u64 n = want;
            OPAQUE(n);
            n &= 2 * LOUPE_DATA_HEAD_MAX - 1;
            if (bpf_probe_read_user(&e->head[at], n, (const void *)job->src.base) == 0) {
                e->head_len = at + n;
                job->src.base += n;
                job->src.avail -= n;
                job->src.remaining -= n;
            } else {
                count_drop(LOUPE_DROP_COPY_FAULT);
                readable = false;
            }
        } else {
            e->head_len =
                at + copy_from_source((struct copy_window *)&e->head[at], want, &job->src);
        }
    }

    if (undecided && classify_undecided(state, e, held != 0, transmit, now) != UNDECIDED_SEND) {
        // Not committed: the event (and the open event before it) is left out of the batch.
        if (announce)
            batch_undo(b, &mark);
        return;
    }
    if (announce) {
        open->header.protocol = state->protocol;
        state->announced = 1;
    }

    // What the connection's protocol copies of a read or write: the rest goes in chunk events.
    __u32 protocol = state->protocol;
    __u32 cap = protocol < LOUPE_PROTOCOL_COUNT ? copy_cap[protocol] : LOUPE_DATA_HEAD_MAX;
    __u64 limit = total < cap ? total : cap;
    bool chunks = readable && e->head_len == head_room && limit > head_room;
    e->captured = chunks ? limit : e->head_len;
    if (readable && e->captured < total) {
        // The last bytes too: where a chunked body's terminator is.
        __u64 end = source_end(&job->src, LOUPE_DATA_TAIL_MAX);
        if (end && bpf_probe_read_user(e->tail, LOUPE_DATA_TAIL_MAX,
                                       (const void *)(end - LOUPE_DATA_TAIL_MAX)) == 0)
            e->tail_len = LOUPE_DATA_TAIL_MAX;
    }
    __u32 size = offsetof(struct loupe_data_event, head) + e->head_len;
    if (size > sizeof(struct loupe_data_event))
        size = sizeof(struct loupe_data_event);
    // Encryption negotiated inside the protocol: this event still goes (user space counts it);
    // later reads and writes cost no copy. Among the connection's first events only, and socket
    // bytes only (`sk`): a TLS library's plaintext is past the switch.
    // - PostgreSQL's one-byte answer to an SSLRequest or GSSENCRequest: 'S' or 'G' means TLS or
    //   GSS encryption from the next byte on. A 1-byte 'S' write is no other PostgreSQL message
    //   (every typed message is 5 bytes at least), and the answer comes among the first events
    //   (after SSLRequest, or GSSENCRequest, 'N', SSLRequest).
    // - A MySQL client's SSL request (after the server's greeting): the TLS handshake follows
    //   it at once, the client's ClientHello even in the same server read. A server may read
    //   its header alone, then its payload.
    if (sk) {
        if (state->early_events < 255)
            state->early_events++;
        if (protocol == LOUPE_PROTOCOL_POSTGRES && total == 1 && e->head_len == 1 &&
            state->early_events <= 4 && (e->head[0] == 'S' || e->head[0] == 'G'))
            state->encrypted = 1;
        if (protocol == LOUPE_PROTOCOL_MYSQL && state->early_events <= 4) {
            if (mysql_ssl_request(e->head, e->head_len, total) ||
                (state->mysql_ssl_header && mysql_ssl_request_payload(e->head, e->head_len, total)))
                state->encrypted = 1;
            state->mysql_ssl_header = !transmit && total == 4 &&
                                      mysql_ssl_request_header(e->head, e->head_len);
        }
    }
    if (timed)
        batch_commit(b, size, now);
    else
        batch_commit_untimed(b, size, now);
    if (chunks) {
        job->offset = head_room;
        job->end = limit;
        job->protocol = protocol;
        job->flags = flags;
        bpf_loop((limit - head_room + LOUPE_CHUNK_BYTES - 1) / LOUPE_CHUNK_BYTES, copy_chunk, job,
                 0);
    }
}

// Sends the close event of `state`'s connection under its current generation.
static __always_inline void send_close(struct conn_state *state, __u64 now)
{
    struct loupe_conn_close_event e = {};
    fill_header(&e.header, LOUPE_EVENT_CONN_CLOSE, state->protocol, (__u64)state->tgid << 32,
                state->fd, state->generation, now);
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
}

// Sends the open event of `state`'s connection (addresses, role) ahead of events that come
// without one: TLS plaintext from the uprobes.
// `timed`: the caller may arm the batch timer (not a uprobe), as for emit_data.
static __always_inline void announce_connection(struct sock *sk, struct conn_state *state,
                                                struct task_struct *task, __u64 pid_tgid,
                                                __s32 fd, __u64 now, bool timed)
{
    struct loupe_cpu_batch *b = batch_enter();
    if (!b) {
        count_drop(LOUPE_DROP_NESTED);
        return;
    }
    struct loupe_conn_open_event *open = batch_reserve(b, sizeof(*open));
    fill_open(open, pid_tgid, fd, state, sk, task, now);
    if (timed)
        batch_commit(b, sizeof(*open), now);
    else
        batch_commit_untimed(b, sizeof(*open), now);
    batch_leave(b);
    state->announced = 1;
}

static __always_inline void first_io(struct conn_state *state, __u64 pid_tgid, __s32 fd, __u64 now)
{
    if (!state->generation) {
        state->generation = now;
        state->tgid = pid_tgid >> 32;
        state->fd = fd;
    }
}

// A read of TLS records outside any SSL call (see tls_openssl.bpf.h, memory BIOs): the thread
// remembers the connection, announced, for an SSL call that makes no socket call of its own.
static __always_inline void note_ciphertext_read(struct sock *sk, struct conn_state *state,
                                                 struct task_struct *task, __u64 pid_tgid,
                                                 __s32 fd, __u64 now)
{
    struct tls_call *call =
        bpf_task_storage_get(&tls_calls, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!call)
        return;
    first_io(state, pid_tgid, fd, now);
    if (!state->announced)
        announce_connection(sk, state, task, pid_tgid, fd, now, true);
    call->bio_generation = state->generation;
    call->bio_ns = now;
    call->bio_fd = fd;
}

// A TLS socket that a Go crypto/tls call tied (its session in tls_sessions, keyed by the socket:
// tls_go.bpf.h) becomes TLS_GO: its open event was sent by the uprobe, under the session's
// generation, which its close event names too. A read of its handshake may have announced it
// before (note_ciphertext_read, for memory BIOs): that announcement is closed here, so that every
// open event sent has its close. Only sockets still TLS_RECORDS look (one lookup per read
// or write of a TLS socket no library tied yet, and per close of one).
static __always_inline void adopt_go_session(struct sock *sk, struct conn_state *state)
{
    struct tls_session_key key = {.tgid = state->tgid, .ssl = (__u64)sk};
    struct conn_state *session = bpf_map_lookup_elem(&tls_sessions, &key);
    if (!session || session->tls != TLS_GO)
        return;
    if (state->announced && state->generation != session->generation)
        send_close(state, bpf_ktime_get_ns());
    state->tls = TLS_GO;
    state->generation = session->generation;
    state->fd = session->fd;
    state->announced = 1;
}

// A read or write of a connection by a thread inside an SSL call (tls_calls): the ciphertext of
// that call. The connection becomes TLS for good (nothing of its own bytes is copied again), its
// open event is sent (addresses, role), and the thread's call learns its connection, which the
// call's uretprobe ties to the SSL*. Returns whether the caller is done with this read or write:
// always for a TLS connection, in an SSL call or not (handshakes run outside SSL_read/SSL_write).
// Outside a call, a read of a TLS connection not tied yet is noted for memory-BIO ties.
static __always_inline bool tls_socket_io(struct sock *sk, struct conn_state *state,
                                          struct task_struct *task, __u64 pid_tgid, __s32 fd,
                                          __u64 now, bool transmit)
{
    struct tls_call *call = bpf_task_storage_get(&tls_calls, task, NULL, 0);
    if (!call || !call->ssl) {
        if (state->tls == TLS_RECORDS)
            adopt_go_session(sk, state);
        if (state->tls != TLS_RECORDS)
            return state->tls != TLS_NONE;
        if (!transmit && !tls_bio_tied(pid_tgid >> 32, state->generation, &state->tls))
            note_ciphertext_read(sk, state, task, pid_tgid, fd, now);
        return true;
    }
    if (state->tls != TLS_OPENSSL) {
        state->tls = TLS_OPENSSL;
        count_tls(LOUPE_TLS_CONN_OPENSSL);
    }
    first_io(state, pid_tgid, fd, now);
    call->fd = fd;
    call->generation = state->generation;
    if (!state->announced)
        announce_connection(sk, state, task, pid_tgid, fd, now, true);
    return true;
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
    if (!state || state->ignored)
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
    // A PostgreSQL or MySQL connection's bytes after its switch to TLS are ciphertext: never
    // copied. A TLS library's call that moves them still ties its SSL* to this connection, so
    // that the session's plaintext comes through the library's uprobes.
    if (state->encrypted) {
        tls_socket_io(sk, state, task, pid_tgid, fd, now, transmit);
        return;
    }
    // A connection not classified yet may be the socket of an SSL call (a classified one speaks
    // plaintext on its socket: no TLS library writes it).
    if (state->protocol == LOUPE_PROTOCOL_UNKNOWN &&
        tls_socket_io(sk, state, task, pid_tgid, fd, now, transmit))
        return;
    struct loupe_cpu_batch *b = batch_enter();
    if (!b) {
        count_drop(LOUPE_DROP_NESTED);
        return;
    }
    // First traced I/O on this connection: it gets its id (an open event announces it with its
    // first event).
    first_io(state, pid_tgid, fd, now);
    if (vector == VECTOR_NONE && join_last(b, pid_tgid, fd, state->generation, (__u64)ret, now)) {
        batch_leave(b);
        return;
    }
    struct chunk_job job;
    job.pid_tgid = pid_tgid;
    job.generation = state->generation;
    job.now = now;
    job.fd = fd;
    bool readable = open_source(&job.src, vector, regs, (__u64)ret);
    emit_data(b, state, &job, readable, (__u64)ret, transmit, syscall, vector, 0, sk, task, true);
    batch_leave(b);
    // Its first read of TLS records (the ClientHello of a server): noted for memory-BIO ties.
    if (!transmit && state->tls == TLS_RECORDS)
        note_ciphertext_read(sk, state, task, pid_tgid, fd, now);
}


SEC("tp_btf/sock_recv_length")
int BPF_PROG(socket_recv, struct sock *sk, int ret, int flags)
{
    socket_data(sk, ret, flags, false);
    return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(socket_send, struct sock *sk, int ret, int flags)
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
int BPF_PROG(socket_states, struct sock *sk, int oldstate, int newstate)
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
    if (state && state->tls == TLS_RECORDS && !state->closed)
        adopt_go_session(sk, state); // tied by a Go call since the socket's last read or write
    if (state && state->tls == TLS_GO) {
        // A Go session is keyed by its socket: it ends with it.
        struct tls_session_key key = {.tgid = state->tgid, .ssl = (__u64)sk};
        bpf_map_delete_elem(&tls_sessions, &key);
    }
    if (state && state->tls == TLS_RECORDS && !state->closed &&
        !tls_bio_tied(state->tgid, state->generation, &state->tls)) {
        // TLS that no hooked library's call ever tied: counted, never read (its close event
        // still goes when a read announced it).
        count_tls(LOUPE_TLS_CONN_UNKNOWN);
        if (!state->announced) {
            state->closed = 1;
            return 0;
        }
    }
    if (!state || !state->announced || state->closed)
        return 0;
    state->closed = 1;
    if (state->ignored)
        return 0;
    send_close(state, bpf_ktime_get_ns());
    return 0;
}


// ---- TLS plaintext: OpenSSL (tls_openssl.bpf.h) ----
// User space attaches these to every libssl it finds, for every process. Entry: the thread
// remembers its call. Return: the plaintext moved goes out as the data of the SSL*'s connection.

static __always_inline void tls_enter(void *ssl, void *buf, __u64 ex_length, bool egress)
{
    struct task_struct *task = bpf_get_current_task_btf();
    __u32 tgid = task->tgid;
    if (tgid == self_tgid || !tgid_selected(tgid) || !ssl)
        return;
    struct tls_call *call = bpf_task_storage_get(&tls_calls, task, NULL,
                                                 BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!call)
        return;
    // An inner call (a library whose SSL_read calls SSL_read_ex) replaces the outer one: its
    // return sends the bytes, the outer one's then finds no call.
    call->ssl = (__u64)ssl;
    call->buf = (__u64)buf;
    call->ex_length = ex_length;
    call->generation = 0;
    call->fd = -1;
    call->egress = egress;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
    tls_enter(ssl, buf, 0, false);
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
    tls_enter(ssl, (void *)buf, 0, true);
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
    tls_enter(ssl, buf, (__u64)readbytes, false);
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, __u64 num, __u64 *written)
{
    tls_enter(ssl, (void *)buf, (__u64)written, true);
    return 0;
}

// SSL_do_handshake (SSL_accept and SSL_connect call it): no plaintext, but its socket calls tie
// the SSL* to its connection before the first SSL_read, which OpenSSL may serve from its buffer
// (a request that came in the same read as the client's Finished) with no socket call of its own.
SEC("uprobe")
int BPF_KPROBE(ssl_handshake_enter, void *ssl)
{
    tls_enter(ssl, NULL, 0, false);
    return 0;
}

// SSL_free: the SSL* is forgotten (its address may serve another connection next).
SEC("uprobe")
int BPF_KPROBE(ssl_free_enter, void *ssl)
{
    struct tls_session_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .ssl = (__u64)ssl};
    bpf_map_delete_elem(&tls_sessions, &key);
    return 0;
}

// Ties the SSL* of `key` to the connection (generation, fd): a fresh state, its plaintext
// classified from its start.
static __always_inline struct conn_state *tie_session(struct tls_session_key *key,
                                                      __u64 generation, __s32 fd)
{
    struct conn_state fresh = {};
    fresh.generation = generation;
    fresh.tgid = key->tgid;
    fresh.fd = fd;
    fresh.tls = TLS_OPENSSL;
    bpf_map_update_elem(&tls_sessions, key, &fresh, BPF_ANY);
    return bpf_map_lookup_elem(&tls_sessions, key);
}

// The plaintext an SSL call moved: the state of its SSL* (tied to the connection a socket call
// inside it named, else the one tied before), and its data event. Verifier: a global function,
// verified once.
__noinline int tls_send(struct tls_call *call, __u64 pid_tgid, __s64 moved)
{
    if (!call)
        return 0; // verifier: a global function's pointers may be NULL
    struct tls_session_key key = {.tgid = pid_tgid >> 32, .ssl = call->ssl};
    struct conn_state *state = bpf_map_lookup_elem(&tls_sessions, &key);
    if (call->generation && (!state || state->generation != call->generation)) {
        // First call on this SSL* with a socket call inside (or a new connection under a reused
        // SSL*): tied now.
        state = tie_session(&key, call->generation, call->fd);
    }
    __u64 now = bpf_ktime_get_ns();
    if (!call->generation && !state && call->bio_generation &&
        now - call->bio_ns < TLS_BIO_TIE_NS) {
        // A memory-BIO call (no socket call inside) on an SSL* tied to nothing: tied to the
        // thread's last read of TLS records, which it is decrypting.
        state = tie_session(&key, call->bio_generation, call->bio_fd);
        struct tls_bio_tie_key tie = {.tgid = key.tgid, .generation = call->bio_generation};
        __u8 one = 1;
        bpf_map_update_elem(&tls_bio_ties, &tie, &one, BPF_ANY);
        call->bio_generation = 0;
        count_tls(LOUPE_TLS_BIO_TIES);
    }
    if (!state) {
        if (moved > 0)
            count_tls(LOUPE_TLS_UNTIED_CALLS); // a handshake's call moves no plaintext
        return 0;
    }
    if (moved <= 0 || state->ignored)
        return 0;
    struct loupe_cpu_batch *b = batch_enter();
    if (!b) {
        count_drop(LOUPE_DROP_NESTED);
        return 0;
    }
    bool egress = call->egress;
    struct chunk_job job;
    job.pid_tgid = pid_tgid;
    job.generation = state->generation;
    job.now = call->start_ns ? call->start_ns : now; // a Go write: when it began (go_tls_enter)
    job.fd = state->fd;
    job.src.iov = 0;
    job.src.iov_left = 0;
    job.src.base = call->buf;
    job.src.avail = moved;
    job.src.piece = moved;
    job.src.remaining = moved;
    emit_data(b, state, &job, true, (__u64)moved, egress,
              egress ? LOUPE_SYS_WRITE : LOUPE_SYS_READ, VECTOR_BUFFER, LOUPE_EVENT_FLAG_TLS, NULL,
              NULL, false);
    batch_leave(b);
    return 0;
}

// The return of SSL_read, SSL_write, SSL_read_ex, SSL_write_ex and SSL_do_handshake alike (the
// call says which).
SEC("uretprobe")
int BPF_KRETPROBE(ssl_return, long ret)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct tls_call *call = bpf_task_storage_get(&tls_calls, task, NULL, 0);
    if (!call || !call->ssl)
        return 0;
    // All four return an int: the upper half of the register is not part of it (-1 comes back
    // as 0xffffffff).
    int rc = (int)ret;
    __s64 moved = rc;
    if (call->ex_length) {
        // SSL_*_ex: 1 on success, the count in *ex_length.
        __u64 n = 0;
        if (rc != 1 || bpf_probe_read_user(&n, sizeof(n), (const void *)call->ex_length) != 0)
            n = 0;
        moved = (__s64)n;
    }
    __u64 pid_tgid = ((__u64)task->tgid << 32) | (__u32)task->pid;
    if (!call->buf)
        moved = 0; // SSL_do_handshake: ties, sends nothing
    if (!tls_paused)
        tls_send(call, pid_tgid, moved);
    call->ssl = 0;
    return 0;
}


// ---- TLS plaintext: Go crypto/tls (tls_go.bpf.h) ----
// User space attaches go_tls_read_enter / go_tls_write_enter at the entry of (*Conn).Read and
// (*Conn).Write of each Go executable, and go_tls_return at every RET instruction of both. The
// attach cookie of an entry probe is the address of the itab `go:itab.*net.TCPConn,net.Conn`
// minus the function's own address (both from .symtab, so that it holds for a PIE loaded
// anywhere), or 0 when the executable has no .symtab (stripped: the fd must then be a socket).

// The socket of the *tls.Conn at `conn`, its fd in *fd, or NULL when it is not a *net.TCPConn
// over a socket of this process.
static __always_inline struct sock *go_conn_socket(struct pt_regs *ctx, struct task_struct *task,
                                                   __u64 conn, __s32 *fd)
{
    __u64 iface[2]; // net.Conn: itab, data
    if (bpf_probe_read_user(iface, sizeof(iface), (const void *)(conn + GO_TLS_CONN_NET_CONN)))
        return NULL;
    __u64 itab_offset = bpf_get_attach_cookie(ctx);
    if (itab_offset && iface[0] != PT_REGS_IP(ctx) + itab_offset)
        return NULL; // another net.Conn (a wrapper, a Unix socket): its fd is not at this place
    __u64 netfd = 0;
    __s64 sysfd = -1;
    if (bpf_probe_read_user(&netfd, sizeof(netfd), (const void *)(iface[1] + GO_TCP_CONN_NETFD)) ||
        bpf_probe_read_user(&sysfd, sizeof(sysfd), (const void *)(netfd + GO_NETFD_SYSFD)) ||
        sysfd < 0 || sysfd > 0x7fffffff)
        return NULL;
    *fd = (__s32)sysfd;
    return sock_of_fd(task, sysfd);
}

// A Conn's first call, or the first since its socket's session was evicted: ties the socket
// (a session keyed by it, the connection's open event). The role is the Conn's own (isClient):
// a uprobe cannot read the socket's state, where the TCP role is.
static __always_inline struct conn_state *go_tie(struct tls_session_key *key, __u64 conn,
                                                 struct sock *sk, struct task_struct *task,
                                                 __u64 pid_tgid, __s32 fd)
{
    __u8 is_client = 0;
    bpf_probe_read_user(&is_client, sizeof(is_client), (const void *)(conn + GO_TLS_CONN_IS_CLIENT));
    struct conn_state fresh = {};
    __u64 now = bpf_ktime_get_ns();
    fresh.generation = now;
    fresh.tgid = key->tgid;
    fresh.fd = fd;
    fresh.tls = TLS_GO;
    fresh.role = is_client ? LOUPE_ROLE_CLIENT : LOUPE_ROLE_SERVER;
    fresh.announced = 1;
    if (bpf_map_update_elem(&tls_sessions, key, &fresh, BPF_ANY) != 0)
        return NULL;
    count_tls(LOUPE_TLS_CONN_GO);
    announce_connection(sk, &fresh, task, pid_tgid, fd, now, false);
    return bpf_map_lookup_elem(&tls_sessions, key);
}

static __always_inline void go_tls_enter(struct pt_regs *ctx, bool egress)
{
    struct task_struct *task = bpf_get_current_task_btf();
    __u32 tgid = task->tgid;
    if (tgid == self_tgid || !tgid_selected(tgid))
        return;
    __u64 conn = PT_REGS_RC(ctx); // RAX
    __u64 g = ctx->r14;
    if (!conn || !g)
        return;
    __s32 fd = -1;
    struct sock *sk = go_conn_socket(ctx, task, conn, &fd);
    if (!sk) {
        count_tls(LOUPE_TLS_GO_UNREADABLE_CALLS);
        return;
    }
    __u64 pid_tgid = ((__u64)tgid << 32) | (__u32)task->pid;
    struct tls_session_key key = {.tgid = tgid, .ssl = (__u64)sk};
    struct conn_state *session = bpf_map_lookup_elem(&tls_sessions, &key);
    if (!session || session->fd != fd)
        session = go_tie(&key, conn, sk, task, pid_tgid, fd);
    if (!session)
        return;
    struct go_call_key call_key = {.tgid = tgid, .g = g};
    struct tls_call call = {};
    call.ssl = (__u64)sk;
    call.buf = ctx->bx;
    call.buf_len = ctx->cx;
    call.fd = fd;
    call.egress = egress;
    // A write's plaintext is stamped with the time the write began, not the RET's: another
    // goroutine may read the answer to it (an HTTP client's readLoop) and reach its own RET before
    // this goroutine reaches this one; user space puts events back in timestamp order (within its
    // 40 ms hold-back), so the request then comes before its response. A read's bytes are there
    // at its RET only.
    call.start_ns = egress ? bpf_ktime_get_ns() : 0;
    // A goroutine that entered again (morestack restarts a function from its first instruction)
    // replaces its call.
    bpf_map_update_elem(&go_calls, &call_key, &call, BPF_ANY);
}

SEC("uprobe")
int go_tls_read_enter(struct pt_regs *ctx)
{
    go_tls_enter(ctx, false);
    return 0;
}

SEC("uprobe")
int go_tls_write_enter(struct pt_regs *ctx)
{
    go_tls_enter(ctx, true);
    return 0;
}

// At each RET of Read and Write: RAX = n. The goroutine's call goes out through tls_send, as an
// SSL call's does, and is forgotten.
SEC("uprobe")
int go_tls_return(struct pt_regs *ctx)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct go_call_key call_key = {.tgid = task->tgid, .g = ctx->r14};
    struct tls_call *call = bpf_map_lookup_elem(&go_calls, &call_key);
    if (!call)
        return 0;
    __s64 moved = (__s64)PT_REGS_RC(ctx);
    if (moved < 0 || (__u64)moved > call->buf_len)
        moved = 0; // not an n this call could return: sends nothing
    __u64 pid_tgid = ((__u64)task->tgid << 32) | (__u32)task->pid;
    // generation 0: tls_send uses the session tied at entry.
    if (!tls_paused && moved > 0)
        tls_send(call, pid_tgid, moved);
    bpf_map_delete_elem(&go_calls, &call_key);
    return 0;
}
