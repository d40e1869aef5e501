/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What profiler.bpf.c and user space (capture/profile_capture.cpp) share. */
#ifndef LOUPE_BPF_PROFILER_ABI_H
#define LOUPE_BPF_PROFILER_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Frames kept per stack: the kernel's own default limit (sysctl kernel.perf_event_max_stack). */
#define LOUPE_PROFILE_STACK_DEPTH 127

/* Node counters (per-CPU array slots of profile_counters). */
enum loupe_profile_counter {
    LOUPE_PROFILE_SAMPLES = 0,       /* samples of selected processes, counted or not */
    LOUPE_PROFILE_LOST_COUNTS_FULL,  /* the count map was full: sample dropped */
    LOUPE_PROFILE_LOST_USER_STACK,   /* user stack not taken (stack map full or collision) */
    LOUPE_PROFILE_LOST_KERNEL_STACK, /* kernel stack not taken (idem) */
    LOUPE_PROFILE_DWARF_SAMPLES,     /* samples taken in DWARF mode (sent, not counted) */
    LOUPE_PROFILE_LOST_DWARF_RING,   /* DWARF sample dropped: the ring buffer was full */
    LOUPE_PROFILE_LOST_DWARF_COPY,   /* DWARF sample sent without its stack: the copy faulted */
    LOUPE_PROFILE_COUNTER_COUNT,
};

/* Key of the count maps: one entry per distinct (process, user stack, kernel stack). */
struct loupe_profile_key {
    __u32 tgid;
    __s32 user_stack_id;   /* < 0: none */
    __s32 kernel_stack_id; /* < 0: none (the sample hit user mode) */
    __u32 reserved;
};

/* DWARF mode: the user stack bytes copied per sample, from the user stack pointer up (less when
 * the stack's mapping ends sooner). 16 KiB holds the frames of most programs' hot paths; a deeper
 * stack unwinds as far as the copy reaches. */
#define LOUPE_PROFILE_DWARF_STACK_BYTES 16384

/* x86-64 user registers in DWARF numbering (what libdw's unwinder takes): 0 rax, 1 rdx, 2 rcx,
 * 3 rbx, 4 rsi, 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15, 16 rip. */
#define LOUPE_PROFILE_DWARF_REGS 17
#define LOUPE_PROFILE_DWARF_REG_SP 7
#define LOUPE_PROFILE_DWARF_REG_IP 16

/* One DWARF-mode sample, sent through the ring buffer: stack bytes cannot be aggregated in the
 * kernel. Sent truncated to header + stack_bytes. */
struct loupe_profile_dwarf_sample {
    __u32 tgid;
    __u32 tid;
    __u64 regs[LOUPE_PROFILE_DWARF_REGS]; /* user registers when the sample was taken */
    __u32 kernel_depth;                   /* kernel_ips used (0: the sample hit user mode) */
    __u32 stack_bytes;                    /* stack bytes copied, from regs[7] (rsp) up */
    __u64 kernel_ips[LOUPE_PROFILE_STACK_DEPTH]; /* leaf first */
    __u8 stack[LOUPE_PROFILE_DWARF_STACK_BYTES];
};

#endif /* LOUPE_BPF_PROFILER_ABI_H */
