// Stands in for the kernel's BTF header when a BPF header of pure computation (the protocol
// classifiers of bpf/protocol_classify.bpf.h) is compiled into a user-space unit test.
#pragma once

#include <linux/types.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
