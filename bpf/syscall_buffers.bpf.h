/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Where the bytes of the syscall behind a socket read or write are, and copying them: the socket
 * tracepoints fire inside sock_recvmsg/sock_sendmsg, and the syscall that called it (its number
 * and arguments left in the thread's user registers until it returns) says where the user's
 * buffers and the fd are. */
#ifndef LOUPE_BPF_SYSCALL_BUFFERS_BPF_H
#define LOUPE_BPF_SYSCALL_BUFFERS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
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

// Where the next bytes of a syscall's data are: a cursor over its buffer or its iovec array.
struct byte_source {
    __u64 iov;       // user address of the next iovec to read (iovec kinds)
    __u64 iov_left;  // iovecs not read yet
    __u64 base;      // user address of the next byte to copy
    __u64 avail;     // bytes of the transfer at base in the current buffer or iovec
    __u64 piece;     // bytes of the transfer in the current buffer or iovec, all told
    __u64 remaining; // bytes of the transfer not copied yet
};

// iovecs a copy or a search for the data's end reads at most, each. (A writev of more moves
// bytes loupe does not see: they count as not copied.)
#define MAX_IOVECS 8

// Points `src` at the start of the `total` bytes a syscall of kind `vector` moved; false when
// they are not in user memory (sendfile) or cannot be found.
static __always_inline bool open_source(struct byte_source *src, __u8 vector, struct pt_regs *regs,
                                        __u64 total)
{
    src->iov = 0;
    src->iov_left = 0;
    src->base = 0;
    src->avail = 0;
    src->piece = 0;
    src->remaining = total;
    if (vector == VECTOR_BUFFER) {
        src->base = PT_REGS_PARM2_SYSCALL(regs);
        src->avail = total;
        src->piece = total;
        return true;
    }
    if (vector == VECTOR_IOVEC) {
        src->iov = PT_REGS_PARM2_SYSCALL(regs);
        src->iov_left = PT_REGS_PARM3_SYSCALL(regs);
        return true;
    }
    if (vector == VECTOR_MSGHDR) {
        struct user_msghdr msg;
        if (bpf_probe_read_user(&msg, sizeof(msg), (const void *)PT_REGS_PARM2_SYSCALL(regs)) != 0)
            return false;
        src->iov = (__u64)msg.msg_iov;
        src->iov_left = msg.msg_iovlen;
        return true;
    }
    return false;
}

// Moves `src` to the next iovec; false when there is none to read.
static __always_inline bool next_iovec(struct byte_source *src)
{
    struct iovec iov;
    if (src->iov_left == 0 || src->remaining == 0 ||
        bpf_probe_read_user(&iov, sizeof(iov), (const void *)src->iov) != 0)
        return false;
    src->iov += sizeof(iov);
    src->iov_left--;
    src->base = (__u64)iov.iov_base;
    src->avail = iov.iov_len < src->remaining ? iov.iov_len : src->remaining;
    src->piece = src->avail;
    return true;
}

// The most one copy_from_source call copies.
#define COPY_MAX LOUPE_COPY_PIECE_MAX

// What a copy may write: the bytes it copies, and past them the room the verifier's bounds need
// (an offset below COPY_MAX plus a length below 2 * COPY_MAX). A batch's slack
// (LOUPE_BATCH_SLACK) makes that room there after any event.
struct copy_window {
    __u8 bytes[3 * COPY_MAX];
};

// Copies up to `want` (<= COPY_MAX) bytes of the transfer from `src` into `dst`, advancing `src`;
// returns how many. A fault ends the copy (counted). Verifier: a global function, verified once
// on its own (inlined, its loop's branches multiplied with every path of its callers).
__noinline __u32 copy_from_source(struct copy_window *dst, __u32 want, struct byte_source *src)
{
    if (!dst || !src)
        return 0; // verifier: a global function's pointers may be NULL
    __u32 fill = 0;
    for (int i = 0; i < MAX_IOVECS; i++) {
        if (fill >= want || src->remaining == 0)
            break;
        if (src->avail == 0 && !next_iovec(src))
            break;
        __u64 n = want - fill;
        if (n > src->avail)
            n = src->avail;
        if (n == 0)
            continue; // an empty iovec
        // Verifier workaround: no-op masks (fill < want <= COPY_MAX, n <= COPY_MAX) that give
        // the verifier bounds it keeps through register spills.
        __u32 at = fill;
        OPAQUE(at);
        at &= COPY_MAX - 1;
        OPAQUE(n);
        n &= 2 * COPY_MAX - 1;
        if (bpf_probe_read_user(&dst->bytes[at], n, (const void *)src->base) != 0) {
            count_drop(LOUPE_DROP_COPY_FAULT);
            src->remaining = 0;
            break;
        }
        fill += n;
        src->base += n;
        src->avail -= n;
        src->remaining -= n;
    }
    return fill;
}

// The user address just past the transfer's last byte, when it lies within the next MAX_IOVECS
// iovecs and the buffer or iovec holding it holds at least `tail` bytes of the transfer (0
// otherwise). `src` is a copy: the caller's cursor does not move.
__noinline __u64 source_end(struct byte_source *cursor, __u32 tail)
{
    if (!cursor)
        return 0; // verifier: a global function's pointers may be NULL
    struct byte_source src = *cursor;
    for (int i = 0; i < MAX_IOVECS; i++) {
        if (src.remaining <= src.avail)
            return src.piece >= tail ? src.base + src.remaining : 0;
        src.remaining -= src.avail;
        src.avail = 0;
        if (!next_iovec(&src))
            return 0;
    }
    return 0;
}

#endif /* LOUPE_BPF_SYSCALL_BUFFERS_BPF_H */
