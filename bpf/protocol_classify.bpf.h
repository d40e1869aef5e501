/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Protocol classification of a connection from the first bytes of its data: one small
 * looks_like_<protocol>() per protocol. User space confirms (its parsers resynchronise), so these
 * may be permissive, but they run in the traced process's reads and writes: they must be cheap. */
#ifndef LOUPE_BPF_PROTOCOL_CLASSIFY_BPF_H
#define LOUPE_BPF_PROTOCOL_CLASSIFY_BPF_H

#include "vmlinux.h"

static __always_inline bool looks_like_http(const __u8 *p, __u16 len)
{
    if (len < 4)
        return false;
    // Request methods and "HTTP" (a status line), compared as their first four bytes.
    __u32 w = p[0] | (p[1] << 8) | (p[2] << 16) | ((__u32)p[3] << 24);
#define W(a, b, c, d) ((__u32)(a) | ((__u32)(b) << 8) | ((__u32)(c) << 16) | ((__u32)(d) << 24))
    return w == W('G', 'E', 'T', ' ') || w == W('P', 'O', 'S', 'T') || w == W('P', 'U', 'T', ' ') ||
           w == W('H', 'E', 'A', 'D') || w == W('D', 'E', 'L', 'E') || w == W('P', 'A', 'T', 'C') ||
           w == W('O', 'P', 'T', 'I') || w == W('C', 'O', 'N', 'N') || w == W('T', 'R', 'A', 'C') ||
           w == W('H', 'T', 'T', 'P');
#undef W
}

#endif /* LOUPE_BPF_PROTOCOL_CLASSIFY_BPF_H */
