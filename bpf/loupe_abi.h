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
    LOUPE_PROBE_COUNT,
};

/* Record the doctor's tracepoint program sends through the ring buffer. */
struct loupe_doctor_event {
    __u32 tgid;
    __u32 probe; /* enum loupe_doctor_probe */
    __u64 timestamp_ns;
};

#endif /* LOUPE_BPF_LOUPE_ABI_H */
