/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The process filter shared by loupe's BPF objects (--pid/--comm/--port). */
#ifndef LOUPE_BPF_TRACED_TGIDS_BPF_H
#define LOUPE_BPF_TRACED_TGIDS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "loupe_abi.h"

// Set by user space before load: when false every process is selected and the map is not read.
const volatile bool filter_tgids = false;

// @brief Selected processes, one bit per tgid (bit tgid % 64 of word tgid / 64), written by user
// space. Every hooked event of every process asks it, so it is an array: the verifier inlines the
// lookup into a few instructions, where the hash it replaced cost ~100 ns a run on nginx.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, LOUPE_TGID_BITMAP_WORDS);
    __type(key, __u32);
    __type(value, __u64);
} traced_tgids SEC(".maps");

static __always_inline bool tgid_selected(__u32 tgid)
{
    if (!filter_tgids)
        return true;
    __u32 word = tgid / 64;
    __u64 *bits = bpf_map_lookup_elem(&traced_tgids, &word);
    return bits && ((*bits >> (tgid % 64)) & 1);
}

#endif /* LOUPE_BPF_TRACED_TGIDS_BPF_H */
