/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* State of the TLS plaintext capture of Go's crypto/tls: uprobes on (*Conn).Read and
 * (*Conn).Write at entry and at every RET instruction of each (never a uretprobe: it rewrites the
 * return address on the goroutine's stack, which the Go runtime moves and inspects, and crashes
 * the program; golang/go#22008). Go >= 1.17 on amd64 only: its register ABI (ABIInternal).
 *
 *   entry      RAX = *tls.Conn, RBX = b.ptr, RCX = b.len, R14 = the current goroutine (g).
 *              The Conn's socket is found from its fields (conn net.Conn -> *net.TCPConn ->
 *              *netFD -> poll.FD.Sysfd) and the fd table of the current task. The first call on a
 *              socket ties it: a session in tls_sessions keyed {tgid, struct sock *}, the
 *              connection's open event. The call is remembered per goroutine in go_calls.
 *   each RET   RAX = n (bytes moved), RBX/RCX = the error. The plaintext goes out through
 *              tls_send, as OpenSSL's does.
 *   socket     The socket tracepoints mark a TLS socket whose session exists as TLS_GO (its
 *              ciphertext is never copied, its close event names the session's generation); its
 *              close forgets the session.
 *
 * A uprobe only reads user memory (bpf_probe_read_user), never writes it. */
#ifndef LOUPE_BPF_TLS_GO_BPF_H
#define LOUPE_BPF_TLS_GO_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "kernel_defs.bpf.h"
#include "tls_openssl.bpf.h"

// Field offsets: constants, the layout of Go 1.17 to 1.22 (tested with go1.19.8; not read from
// DWARF): tls.Conn starts with `conn net.Conn` (an interface: itab, data) and `isClient bool`;
// a *net.TCPConn points to net.conn{fd *netFD}; netFD starts with poll.FD{fdmu fdMutex (state
// uint64, rsema and wsema uint32: 16 bytes), Sysfd int}.
#define GO_TLS_CONN_NET_CONN 0
#define GO_TLS_CONN_IS_CLIENT 16
#define GO_TCP_CONN_NETFD 0
#define GO_NETFD_SYSFD 16

// Calls of a goroutine between entry and RET. Keyed by goroutine, not thread: a goroutine that
// blocks in Read is parked and resumes on any thread (M); its g pointer stays.
struct go_call_key {
    __u32 tgid;
    __u32 reserved0;
    __u64 g; // the runtime.g of the goroutine (R14 in ABIInternal code)
};

// Bound of go_calls: goroutines inside Conn.Read/Write at once, machine-wide (a server blocks
// one goroutine in Read per idle keep-alive connection). A call that never reaches a RET (a
// panic unwinding through it) stays until its goroutine calls again, the LRU evicts it, or user
// space forgets its process when it is gone (TlsLibraries::forget_dead_processes).
#define GO_CALLS_MAX 65536

// The value is OpenSSL's struct tls_call: ssl = the socket (struct sock *), the session key.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, GO_CALLS_MAX);
    __type(key, struct go_call_key);
    __type(value, struct tls_call);
} go_calls SEC(".maps");

// The socket open at `fd` in the current task's fd table, or NULL (no such fd, or not a socket).
// Plain CO-RE reads: the file may be closed meanwhile by another thread (then the read finds
// another file, or a NULL slot), which is what user space would have found too.
static __always_inline struct sock *sock_of_fd(struct task_struct *task, __s64 fd)
{
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
        return NULL;
    struct file **slots = BPF_CORE_READ(fdt, fd);
    struct file *file = NULL;
    if (bpf_probe_read_kernel(&file, sizeof(file), &slots[fd]) != 0 || !file)
        return NULL;
    if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
        return NULL;
    struct socket *socket = BPF_CORE_READ(file, private_data);
    return socket ? BPF_CORE_READ(socket, sk) : NULL;
}

#endif /* LOUPE_BPF_TLS_GO_BPF_H */
