/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Where the bytes of the syscall behind a socket read or write are, and copying them: the socket
 * tracepoints fire inside sock_recvmsg/sock_sendmsg, and the syscall that called it (its number
 * and arguments left in the thread's user registers until it returns) says where the user's
 * buffers and the fd are. */
#ifndef LOUPE_BPF_SYSCALL_BUFFERS_BPF_H
#define LOUPE_BPF_SYSCALL_BUFFERS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "event_batch.bpf.h"
#include "loupe_abi.h"

// Buffer kinds of the hooked syscalls: where the transferred bytes are found.
#define VECTOR_NONE 0   // sendfile: none in user memory
#define VECTOR_BUFFER 1 // read, write, recvfrom, sendto: (buf, count)
#define VECTOR_IOVEC 2  // readv, writev: (iov, iovcnt)
#define VECTOR_MSGHDR 3 // recvmsg, sendmsg: a msghdr holding an iovec array

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

#endif /* LOUPE_BPF_SYSCALL_BUFFERS_BPF_H */
