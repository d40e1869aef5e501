/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Kernel constants loupe's BPF programs need that vmlinux.h does not carry (macros, not types). */
#ifndef LOUPE_BPF_KERNEL_DEFS_BPF_H
#define LOUPE_BPF_KERNEL_DEFS_BPF_H

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define MSG_PEEK 2

/* inode.i_mode file types */
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* task_struct.flags */
#define PF_EXITING 0x00000004
#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000

/* TCP states (include/net/tcp_states.h) */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LAST_ACK 9

/* Clocks and bpf_timer_start flags (uapi; BPF_F_TIMER_CPU_PIN is 6.7+, so not in the vmlinux.h
 * of an older build host) */
#define CLOCK_MONOTONIC 1
#define TIMER_CPU_PIN 2

#endif /* LOUPE_BPF_KERNEL_DEFS_BPF_H */
