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
    LOUPE_PROFILE_COUNTER_COUNT,
};

/* Key of the count maps: one entry per distinct (process, user stack, kernel stack). */
struct loupe_profile_key {
    __u32 tgid;
    __s32 user_stack_id;   /* < 0: none */
    __s32 kernel_stack_id; /* < 0: none (the sample hit user mode) */
    __u32 reserved;
};

#endif /* LOUPE_BPF_PROFILER_ABI_H */
