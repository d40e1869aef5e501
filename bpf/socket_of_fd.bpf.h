/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Helpers shared by loupe's BPF programs to find the socket behind a file descriptor of the
 * current process (CO-RE reads of the fd table: works for sockets opened before loupe started). */
#ifndef LOUPE_BPF_SOCKET_OF_FD_BPF_H
#define LOUPE_BPF_SOCKET_OF_FD_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "kernel_defs.bpf.h"

#define S_IFMT 00170000
#define S_IFSOCK 0140000

// The struct sock behind `fd` of the current process when it is a TCP/IPv4-or-IPv6 socket.
static __always_inline struct sock *tcp_sock_of_fd(__s32 fd)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    struct file **fd_array;
    struct file *file = NULL;

    if (fd < 0 || !fdt || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
        return NULL;
    fd_array = BPF_CORE_READ(fdt, fd);
    bpf_probe_read_kernel(&file, sizeof(file), &fd_array[fd]);
    if (!file)
        return NULL;
    if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
        return NULL;
    struct socket *sock = BPF_CORE_READ(file, private_data);
    struct sock *sk = BPF_CORE_READ(sock, sk);
    if (!sk)
        return NULL;
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
        (family != AF_INET && family != AF_INET6))
        return NULL;
    return sk;
}

#endif /* LOUPE_BPF_SOCKET_OF_FD_BPF_H */
