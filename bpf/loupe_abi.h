/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The only kernel/user ABI of loupe: every struct and constant that crosses the boundary between
 * the BPF programs in bpf/ and the C++ daemon in userspace/ is defined here, once.
 * Plain C, fixed-width types, explicit padding: the layout must be identical on both sides.
 */
#ifndef LOUPE_BPF_LOUPE_ABI_H
#define LOUPE_BPF_LOUPE_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Features that `loupe doctor` verifies by running a program of that kind (doctor_probes.bpf.c). */
enum loupe_doctor_probe {
    LOUPE_PROBE_TRACEPOINT = 0,
    LOUPE_PROBE_RAW_TP,
    LOUPE_PROBE_TP_BTF,
    LOUPE_PROBE_UPROBE,
    LOUPE_PROBE_KPROBE,
    LOUPE_PROBE_FENTRY,
    LOUPE_PROBE_PERF_EVENT,
    LOUPE_PROBE_SOCK_SEND_LENGTH,
    LOUPE_PROBE_SOCK_RECV_LENGTH,
    LOUPE_PROBE_INET_SOCK_SET_STATE,
    LOUPE_PROBE_COUNT,
};

/* Record the doctor's tracepoint program sends through the ring buffer. */
struct loupe_doctor_event {
    __u32 tgid;
    __u32 probe; /* enum loupe_doctor_probe */
    __u64 timestamp_ns;
};

/* ---- Socket capture (socket_capture.bpf.c) ------------------------------------------- */

/* Bytes of a read/write carried by its data event (head[]): most requests and responses whole.
 * On a connection classified as a protocol, the bytes after them, up to the protocol's copy cap
 * (load-time: socket_capture's copy_cap[]), follow in chunk events; bytes past the cap are
 * counted (length), not copied. */
#define LOUPE_DATA_HEAD_MAX 1024
/* Bytes of the data a chunk event carries at most: the rest of a 4 KiB copy cap in one event
 * (fewer events cost less than smaller ones: docs/BENCHMARKS.md). */
#define LOUPE_CHUNK_BYTES 3072
/* A power of two at least LOUPE_DATA_HEAD_MAX and LOUPE_CHUNK_BYTES: what one copy into an event
 * may write at most, as the BPF verifier sees it (syscall_buffers.bpf.h's copy_window). */
#define LOUPE_COPY_PIECE_MAX 4096
/* The largest copy cap of a protocol: bytes of one read/write copied in all. */
#define LOUPE_COPY_CAP_MAX 65536
/* The copy cap of HTTP/1 and Redis unless configured otherwise: a pipeline of requests, or
 * responses read together, fits, so that the parsers find every message boundary. */
#define LOUPE_COPY_CAP_DEFAULT 4096
/* Last bytes of a read/write whose data was not all copied: where a chunked body's terminator
 * lives. */
#define LOUPE_DATA_TAIL_MAX 16
/* Bytes of events one CPU gathers before it sends them as one ring record (a batch). */
#define LOUPE_BATCH_BYTES 4096
/* Words of the traced_tgids bitmap: one bit per possible tgid (PID_MAX_LIMIT, 4 Mi on 64 bits). */
#define LOUPE_TGID_BITMAP_WORDS (4194304 / 64)
/* --comm names the kernel itself selects new processes by (traced_tgids.bpf.h), at most. */
#define LOUPE_SELECT_COMMS 8

/* The protocol a connection's bytes were classified as (in the kernel, from their first bytes;
 * user space confirms). The value of protocols::Protocol. Which ones the kernel looks for is
 * load-time configuration: a bit (1 << protocol) each in socket_capture's enabled_protocols. */
enum loupe_protocol {
    LOUPE_PROTOCOL_UNKNOWN = 0,
    LOUPE_PROTOCOL_HTTP1 = 1,
    LOUPE_PROTOCOL_REDIS = 2,
    LOUPE_PROTOCOL_POSTGRES = 3,
    LOUPE_PROTOCOL_MYSQL = 4, // MySQL and MariaDB (one wire protocol)
    LOUPE_PROTOCOL_COUNT,
};

enum loupe_event_kind {
    LOUPE_EVENT_CONN_OPEN = 1,
    LOUPE_EVENT_DATA = 2,
    LOUPE_EVENT_CONN_CLOSE = 3,
    LOUPE_EVENT_BATCH = 4, /* struct loupe_event_batch: several of the others */
    LOUPE_EVENT_DATA_CHUNK = 5, /* more bytes of the data event before it */
};

enum loupe_conn_role {
    LOUPE_ROLE_UNKNOWN = 0, /* already open when loupe started, or role not learnt yet */
    LOUPE_ROLE_SERVER = 1,  /* accepted: a passive open (SYN_RECV -> ESTABLISHED) */
    LOUPE_ROLE_CLIENT = 2,  /* connected: an active open (SYN_SENT) */
};

enum loupe_direction {
    LOUPE_DIR_INGRESS = 0, /* the traced process read the bytes */
    LOUPE_DIR_EGRESS = 1,  /* the traced process wrote the bytes */
};

enum loupe_syscall {
    LOUPE_SYS_READ = 1,
    LOUPE_SYS_READV,
    LOUPE_SYS_RECVFROM,
    LOUPE_SYS_RECVMSG,
    LOUPE_SYS_WRITE,
    LOUPE_SYS_WRITEV,
    LOUPE_SYS_SENDTO,
    LOUPE_SYS_SENDMSG,
    LOUPE_SYS_SENDFILE,
};

/* Per-CPU drop counters (index of the `drops` map). */
enum loupe_drop_reason {
    LOUPE_DROP_RINGBUF_FULL = 0,  /* ring buffer had no room: each event of the record is lost */
    LOUPE_DROP_UNSUPPORTED_SYSCALL, /* socket I/O from a syscall whose buffers loupe cannot read
                                       (sendmmsg, recvmmsg, splice, io_uring) */
    LOUPE_DROP_CONN_TABLE_FULL,   /* no memory for a connection's state */
    LOUPE_DROP_NESTED,            /* socket I/O traced while its CPU's batch was being written
                                     by the program it interrupted (not expected: socket reads
                                     and writes run in process context) */
    LOUPE_DROP_COPY_FAULT,        /* reading the bytes of a socket read or write from user memory
                                     failed: the event carries fewer of them */
    LOUPE_DROP_COUNT,
};

/* loupe_event_header.flags */
#define LOUPE_EVENT_FLAG_TLS 1 /* a data event's bytes are TLS plaintext, read or written through a
                                  TLS library's call (the socket itself carried ciphertext) */

/* TLS libraries loupe reads plaintext from (index of socket_capture's `tls_counters`). */
enum loupe_tls_counter {
    LOUPE_TLS_CONN_OPENSSL = 0, /* connections tied to an OpenSSL SSL* (their plaintext is read) */
    LOUPE_TLS_CONN_UNKNOWN,     /* connections that carried TLS records but were never tied to a
                                   hooked library's call: counted at their close, never parsed */
    LOUPE_TLS_UNTIED_CALLS,     /* SSL_read/SSL_write calls that moved plaintext on an SSL* whose
                                   socket loupe never saw (lost, or opened before loupe) */
    LOUPE_TLS_BIO_TIES,         /* SSL* tied to the thread's last read of TLS records (memory
                                   BIOs: Node) */
    LOUPE_TLS_CONN_GO,          /* connections tied to a Go crypto/tls Conn (plaintext read) */
    LOUPE_TLS_GO_UNREADABLE_CALLS, /* Go Conn.Read/Write calls whose net.Conn is not a
                                      *net.TCPConn over a socket of the process: not read */
    LOUPE_TLS_COUNTER_COUNT,
};

/* A connection is (tgid, fd) plus the generation it got when loupe first saw it: a reused fd
 * gets a new generation, so a stale request can never pair with a stranger's response. */
struct loupe_conn_ref {
    __u32 tgid;
    __s32 fd;
    __u64 generation;
};

struct loupe_event_header {
    __u16 kind;    /* enum loupe_event_kind */
    __u8 protocol; /* enum loupe_protocol of the connection when the event was made: UNKNOWN
                      until an event classified it (that event carries its protocol) */
    __u8 flags;    /* LOUPE_EVENT_FLAG_* */
    __u32 tid;
    __u64 timestamp_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
    struct loupe_conn_ref conn;
};

struct loupe_conn_open_event {
    struct loupe_event_header header;
    __u8 role;   /* enum loupe_conn_role */
    __u8 family; /* AF_INET or AF_INET6 */
    __u16 local_port;
    __u16 remote_port;
    __u16 reserved0;
    __u8 local_addr[16];  /* IPv4: first 4 bytes, network order */
    __u8 remote_addr[16];
    char comm[16]; /* the process's name (thread group leader) */
};

/* One read or write of a connection: its first bytes (head), and on a classified connection
 * chunk events right after it with the bytes that follow, up to its protocol's copy cap. */
struct loupe_data_event {
    struct loupe_event_header header; /* timestamp: when the (last) syscall moved its bytes */
    __u64 length;    /* bytes the syscall moved (with those held before it, see spread_ns) */
    /* Not 0: the event holds more than one syscall's bytes, and the first one's moved spread_ns
     * before header.timestamp_ns. Either writes of uncopied bytes (sendfile) that followed the
     * first one at once on the same connection, thread and CPU (length counts them all, head
     * and tail are the first one's); or the bytes of reads or writes too short to classify the
     * connection, held in the kernel and put at the start of head (then `length` counts them,
     * and a message starting in the event started spread_ns earlier). */
    __u32 spread_ns;
    __u8 direction;  /* enum loupe_direction */
    __u8 syscall;    /* enum loupe_syscall (of the first write when joined) */
    __u16 head_len;  /* valid bytes in head[] */
    __u16 tail_len;  /* valid bytes in tail[]: the data's last bytes, when not all were copied */
    __u16 reserved0;
    /* Bytes of the data copied: head[] and the chunk events that follow (in order, on the same
     * CPU, with the same header but for its kind) with the bytes from head_len up to here. */
    __u32 captured;
    __u8 tail[LOUPE_DATA_TAIL_MAX];
    __u8 head[LOUPE_DATA_HEAD_MAX]; /* only head_len bytes travel through the ring buffer */
};

/* More bytes of the data event before it: data[0..len) are its bytes [offset, offset + len). */
struct loupe_data_chunk_event {
    struct loupe_event_header header; /* the data event's, kind LOUPE_EVENT_DATA_CHUNK */
    __u32 offset;
    __u16 len;
    __u16 reserved0;
    __u8 data[LOUPE_CHUNK_BYTES]; /* only len bytes travel through the ring buffer */
};

struct loupe_conn_close_event {
    struct loupe_event_header header;
};

/* The usual ring record: the events one CPU produced since its last batch, in order, each an
 * entry header followed by the event, every entry 8-byte aligned. (An event that interrupted the
 * writing of its CPU's batch, a softirq's connection close, travels alone as its own record.) */
struct loupe_event_batch {
    __u16 kind;   /* LOUPE_EVENT_BATCH */
    __u16 events; /* entries in data[] */
    __u32 bytes;  /* of data[] in use */
    __u8 data[LOUPE_BATCH_BYTES];
};

struct loupe_batch_entry {
    __u32 size; /* of the event that follows; the next entry starts 8-byte aligned after it */
    __u32 reserved0;
};

/* Room after a batch's data[]: an event starts below LOUPE_BATCH_BYTES, and the BPF verifier must
 * see every write into it in bounds from masked offsets (a copy into head[] or a chunk's data[]
 * reaches at most 3 * LOUPE_COPY_PIECE_MAX past its start: syscall_buffers.bpf.h's
 * copy_window). */
#define LOUPE_BATCH_SLACK                                                                          \
    (sizeof(struct loupe_batch_entry) + sizeof(struct loupe_data_event) + 3 * LOUPE_COPY_PIECE_MAX)

/* The timer that sends a CPU's batch when it stops growing (loupe_cpu_batch.timer). */
#define LOUPE_BATCH_TIMER_UNSET 0    /* not initialised yet */
#define LOUPE_BATCH_TIMER_IDLE 1     /* initialised, not running */
#define LOUPE_BATCH_TIMER_ARMED 2    /* will send the batch */
#define LOUPE_BATCH_TIMER_UNUSABLE 3 /* the kernel refused it: events are sent one by one */

/* One CPU's batch being gathered: the value of the HTTP capture's `batches` per-CPU array. User
 * space reads what is left in it when it stops. */
struct loupe_cpu_batch {
    __u32 busy;        /* a program of this CPU is writing it: one interrupting it keeps off */
    __u32 last_entry;  /* offset in out.data of the last event's entry (when out.bytes > 0) */
    __u64 first_ns;    /* when the oldest event of the batch was produced */
    __u64 unsignalled; /* bytes sent through this CPU's ring since it last woke the consumer */
    __u32 timer;       /* state of this CPU's batch timer (LOUPE_BATCH_TIMER_*) */
    __u32 reserved0;
    struct loupe_event_batch out;
    __u8 slack[LOUPE_BATCH_SLACK];
};

/* ---- Resources (resources.bpf.c) ------------------------------------------------------ */

/* Log2 histograms in microseconds: bucket i counts values in [2^i, 2^(i+1)) us (bucket 0 also
 * holds everything below 1 us, the last one everything above). */
#define LOUPE_LOG2_BUCKETS 32

/* What the kernel counts per process (thread group), cumulative since loupe first saw it. */
struct loupe_proc_stats {
    char comm[16]; /* the process's name when the entry was created */
    __u64 disk_read_ops;
    __u64 disk_write_ops;
    __u64 disk_read_bytes; /* block layer, attributed to the submitter */
    __u64 disk_write_bytes;
    __u64 net_tx_bytes;
    __u64 net_rx_bytes;
    __u64 tcp_opened;
    __u64 tcp_accepted;
    __u64 tcp_closed;
    __u64 tcp_failed;
    __u64 tcp_retransmits;
    __u64 tcp_resets_sent;
    __u64 tcp_resets_received;
    /* Exact sums of the histograms below, in nanoseconds (bucket midpoints would be off by up
     * to -25 %/+50 %). */
    __u64 disk_latency_sum_ns;
    __u64 runqueue_latency_sum_ns;
    __u64 tcp_rtt_sum_ns;
    __u64 tcp_duration_sum_ns;
    __u64 disk_latency_us[LOUPE_LOG2_BUCKETS];
    __u64 runqueue_latency_us[LOUPE_LOG2_BUCKETS];
    __u64 tcp_rtt_us[LOUPE_LOG2_BUCKETS];
    __u64 tcp_duration_us[LOUPE_LOG2_BUCKETS];
};

/* Owner of a TCP socket (value of the `sock_owners` map, key: struct sock address). */
struct loupe_sock_owner {
    __u32 tgid;        /* 0 until the owning process is known (see `passive`) */
    __u8 passive;      /* accepted from a listener: its process is learnt at its first read or
                        * write, or at its close (whichever comes first), and counted as an
                        * accept there */
    __u8 reserved[3];
    __u64 established; /* when the connection was established; 0 when it predates loupe */
};

/* Node-wide counters (index of the `node_counters` per-CPU array). */
enum loupe_node_counter {
    LOUPE_NODE_TCP_RETRANSMITS = 0, /* every retransmit, attributed to a process or not */
    LOUPE_NODE_PROC_STATS_FULL,     /* a process could not get a stats entry */
    LOUPE_NODE_EXIT_EVENTS_LOST,    /* ring buffer full at a process exit */
    LOUPE_NODE_COUNTER_COUNT,
};

/* Sent when the last thread of a process exits: its final totals, so that processes living
 * between two samples of /proc are still accounted. */
struct loupe_proc_exit_event {
    __u32 tgid;
    __u32 has_stats; /* stats below are valid */
    char comm[16];   /* thread group leader's name */
    __u64 cpu_ns;    /* total CPU of the process (sum_exec_runtime of all its threads) */
    __u64 io_read_bytes;  /* as /proc/PID/io read_bytes */
    __u64 io_write_bytes; /* as /proc/PID/io write_bytes */
    struct loupe_proc_stats stats;
};

#endif /* LOUPE_BPF_LOUPE_ABI_H */
