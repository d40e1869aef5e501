/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* State of the TLS plaintext capture (OpenSSL's SSL_read/SSL_write and their _ex forms), shared
 * by the uprobes of socket_capture.bpf.c and its socket tracepoints. No kprobe: the socket
 * tracepoint that fires inside an SSL call, on the same thread, names the socket of the SSL*.
 *
 *   SSL_write entry (uprobe)        remembers {SSL*, buffer, length} in the thread's tls_calls
 *     write() -> sock_send_length   sees the thread in an SSL call: marks the connection TLS (its
 *                                   ciphertext is never copied), sends its open event, and notes
 *                                   the connection (fd, generation) in the thread's call
 *   SSL_write return (uretprobe)    ties SSL* -> connection in tls_sessions, sends the plaintext
 *                                   (the return value's bytes) as the connection's data event
 *
 * A read served from OpenSSL's own buffer makes no socket call: tls_sessions names its
 * connection. A uprobe only reads user memory (bpf_probe_read_user), never writes it.
 *
 * Memory BIOs (Node's TLSWrap): the runtime reads and writes the socket itself and hands the
 * records to OpenSSL through memory, so no SSL call makes a socket call. Such a runtime reads a
 * connection's records and passes them to SSL_read (or SSL_do_handshake) at once, on the same
 * thread: the thread remembers its last read of TLS records made outside any SSL call, and an
 * SSL call on an SSL* tied to nothing, with no socket call inside, ties to that connection. */
#ifndef LOUPE_BPF_TLS_OPENSSL_BPF_H
#define LOUPE_BPF_TLS_OPENSSL_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "loupe_abi.h"

// conn_state.tls: what loupe knows of a connection's TLS.
#define TLS_NONE 0    // no TLS seen
#define TLS_RECORDS 1 // its first bytes were TLS records, no hooked library's call tied it yet
#define TLS_OPENSSL 2 // tied to an OpenSSL SSL*: its plaintext comes from the uprobes
#define TLS_GO 3      // tied to a Go crypto/tls Conn (tls_go.bpf.h): its plaintext comes from the uprobes

// The SSL call a thread is in (between a uprobe and its uretprobe).
struct tls_call {
    __u64 ssl;        // the SSL* (0: in no call)
    __u64 buf;        // the caller's buffer (0: SSL_do_handshake)
    __u64 ex_length;  // SSL_*_ex: where the library writes the bytes moved (a size_t *); else 0
    __u64 generation; // of the connection a socket call inside this call named (0: none)
    __u64 buf_len;    // Go's calls (tls_go.bpf.h): the buffer's length, bounding a RET's n
    __u64 start_ns;   // the time its data event carries; 0: the return's (see go_tls_enter)
    __s32 fd;
    __u8 egress;      // SSL_write*
    __u8 reserved[3];
    // The thread's last read of TLS records outside any SSL call (0: none, or used by a tie).
    __u64 bio_generation;
    __u64 bio_ns;
    __s32 bio_fd;
    __u32 reserved1;
};

// A memory-BIO tie must follow its read this closely: such a runtime calls SSL_read in the
// callback of the read itself.
#define TLS_BIO_TIE_NS (100ULL * 1000 * 1000)

struct tls_bio_tie_key {
    __u32 tgid;
    __u32 reserved0;
    __u64 generation;
};

// @brief Connections whose SSL* a memory-BIO call tied (from a uprobe, which cannot reach the
// socket's storage): the connection's next socket read, or its close, marks it OpenSSL, counts
// it and forgets the entry. LRU-bounded: an entry lost is a connection counted as unknown.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct tls_bio_tie_key);
    __type(value, __u8);
} tls_bio_ties SEC(".maps");

// @brief The SSL call each thread is in: task storage, freed with the thread (a process killed
// mid-call leaves nothing behind), one lookup from the current task in the uprobes and in the
// socket tracepoints that fire inside the call.
struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct tls_call);
} tls_calls SEC(".maps");

struct tls_session_key {
    __u32 tgid;
    __u32 reserved0;
    __u64 ssl; // the SSL* in that process
};

// Per SSL* (the value of tls_sessions): the connection it is tied to, and the classification
// state of its plaintext. The struct conn_state of socket_capture.bpf.c (defined there).
struct conn_state;

// Bound of tls_sessions: SSL objects tied at once, machine-wide. An entry is forgotten at
// SSL_free, or evicted least recently used; an SSL* evicted while in use is tied again at its next
// socket call (a read served from OpenSSL's buffer before that is counted as untied).
#define TLS_SESSIONS_MAX 32768

// Per-CPU TLS counters, indexed by enum loupe_tls_counter.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LOUPE_TLS_COUNTER_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} tls_counters SEC(".maps");

static __always_inline void count_tls(__u32 counter)
{
    __u64 *value = bpf_map_lookup_elem(&tls_counters, &counter);
    if (value)
        *value += 1;
}

// Whether a memory-BIO call tied this connection (tls_bio_ties); if so it is OpenSSL's from now.
static __always_inline bool tls_bio_tied(__u32 tgid, __u64 generation, __u8 *tls)
{
    struct tls_bio_tie_key key = {.tgid = tgid, .generation = generation};
    if (!bpf_map_lookup_elem(&tls_bio_ties, &key))
        return false;
    bpf_map_delete_elem(&tls_bio_ties, &key);
    *tls = TLS_OPENSSL;
    count_tls(LOUPE_TLS_CONN_OPENSSL);
    return true;
}

// A TLS record header (RFC 8446 5.1): content type 20-23 (change_cipher_spec, alert, handshake,
// application_data), then legacy version 3.x (SSL 3.0 to TLS 1.3 records all say 3.0-3.4).
static __always_inline bool looks_like_tls_record(const __u8 *p, __u32 len)
{
    return len >= 3 && p[0] >= 20 && p[0] <= 23 && p[1] == 3 && p[2] <= 4;
}

#endif /* LOUPE_BPF_TLS_OPENSSL_BPF_H */
