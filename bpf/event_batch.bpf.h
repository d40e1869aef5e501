/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The socket capture's transport to user space: events are written in place into a per-CPU
 * batch, and a batch reaches its CPU's ring buffer as one record when it is full, when it gets
 * old, or by its CPU's pinned bpf_timer. Drop counters live here too: every loss of an event is
 * counted where it happens. */
#ifndef LOUPE_BPF_EVENT_BATCH_BPF_H
#define LOUPE_BPF_EVENT_BATCH_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kernel_defs.bpf.h"
#include "loupe_abi.h"

// ---- load-time configuration (set by user space before load) ----
const volatile __u64 wakeup_bytes = 0; // wake the consumer after this much more in a CPU's ring

// A batch is sent at its CPU's next event once its oldest event is this old...
#define BATCH_MAX_AGE_NS 1000000ULL
// ... and at the latest this long after its first event, by its CPU's batch timer. Not 1 ms too:
// arming a timer that becomes its CPU's next expiry reprograms the CPU's timer device (a VM exit
// on a VM). Measured with nginx + wrk: ~120 ns a request more at 1 ms than at 10 ms.
#define BATCH_TIMER_NS 10000000ULL
// A batch timer that interrupted the writing of its batch tries again this much later.
#define BATCH_RETRY_NS 100000ULL

// @brief Per-CPU batches: events are written in place here (too big for the 512-byte BPF stack)
// and reach the CPU's ring several at a time, so that one ring reservation and commit serves many
// events. A batch is sent when full, and when it gets old (BATCH_MAX_AGE_NS, BATCH_TIMER_NS).
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct loupe_cpu_batch); // (loupe_abi.h)
} batches SEC(".maps");

struct batch_timer {
    struct bpf_timer timer;
};

// @brief Per CPU (index: CPU id), the timer that sends its batch BATCH_TIMER_NS after the
// batch's first event, pinned to that CPU: a batch that stops growing (its process went quiet,
// its CPU went idle) still reaches user space in time, with no hook on the machine's idle periods
// or timer ticks (power:cpu_idle ran as often as nginx served requests, ~100 ns each time). A
// bpf_timer may live in an array but not in a per-CPU array: hence this second map.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1); // set to the number of possible CPUs by user space
    __type(key, __u32);
    __type(value, struct batch_timer);
} batch_timers SEC(".maps");

// Load-time: gather events in batches (false: send every event at once, as when the kernel has
// no pinned bpf_timer).
const volatile bool batch_events = true;
// Set by user space as it stops: the batch timers send nothing more, user space reads what is
// left in the batches.
bool stopping = false;
// Why the kernel refused a batch timer (a negative errno; 0: it did not), for user space to say.
__s32 batch_timer_error = 0;

// The inner map of `events`: one per CPU, sized and created by user space.
struct cpu_ring {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
};

// @brief Events to user space: one ring buffer per CPU (index: CPU id), so that producers on
// different CPUs never contend for one ring's lock and cache lines. Measured with nginx and wrk
// on two CPUs: a shared ring cost ~150 ns per event with one producing CPU and 400-500 ns with
// two. User space merges the rings back into time order (capture/event_merger.h).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 1); // set to the number of possible CPUs by user space
    __type(key, __u32);
    __array(values, struct cpu_ring);
} events SEC(".maps");

// @brief Per-CPU drop counters, indexed by enum loupe_drop_reason; exported as metrics.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LOUPE_DROP_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drops(__u32 reason, __u64 events)
{
    __u64 *counter = bpf_map_lookup_elem(&drops, &reason);
    if (counter)
        *counter += events; // per-CPU slot: no atomic needed
}

static __always_inline void count_drop(__u32 reason)
{
    count_drops(reason, 1);
}

// Hides a value from the optimiser so that the bound check that follows is really emitted and
// seen by the verifier on the register used for the helper call.
#define OPAQUE(var) asm volatile("" : "+r"(var))
#define COMPILER_BARRIER() asm volatile("" ::: "memory")

// Sends a record holding `event_count` events; when it cannot, they are counted as lost.
static __always_inline void ring_send(void *record, __u64 size, __u64 flags, __u64 event_count)
{
    __u32 cpu = bpf_get_smp_processor_id();
    void *ring = bpf_map_lookup_elem(&events, &cpu);
    // No ring: not reached, user space puts every CPU's ring in place before it attaches a hook.
    if (!ring || bpf_ringbuf_output(ring, record, size, flags) != 0)
        count_drops(LOUPE_DROP_RINGBUF_FULL, event_count);
}

// This CPU's batch, the caller's until batch_leave; NULL when the caller interrupted (softirq,
// hardirq) a program that is writing it. An interrupt runs to its end before the interrupted
// program goes on, so the flag needs no atomic.
static __always_inline struct loupe_cpu_batch *batch_enter(void)
{
    __u32 zero = 0;
    struct loupe_cpu_batch *b = bpf_map_lookup_elem(&batches, &zero);
    if (!b || b->busy)
        return NULL;
    b->busy = 1;
    COMPILER_BARRIER();
    return b;
}

static __always_inline void batch_leave(struct loupe_cpu_batch *b)
{
    COMPILER_BARRIER();
    b->busy = 0;
}

// Sends the batch through this CPU's ring. Wake-ups are batched too: the consumer drains on a
// timer and is woken early only after wakeup_bytes more were sent on this CPU (beyla#2425: waking
// user space per event cost the traced app 40 % more CPU). Counting the bytes here, not asking
// the ring (bpf_ringbuf_query), keeps the producer off the cache line the consumer writes.
static __always_inline void batch_flush(struct loupe_cpu_batch *b)
{
    __u64 size = b->out.bytes;
    if (size == 0)
        return;
    size += offsetof(struct loupe_event_batch, data);
    // Verifier workaround: never true, but bounds the size on the register the helper gets.
    OPAQUE(size);
    if (size > sizeof(struct loupe_event_batch))
        return;
    __u64 flags = BPF_RB_NO_WAKEUP;
    b->unsignalled += size;
    if (b->unsignalled >= wakeup_bytes) {
        b->unsignalled = 0;
        flags = BPF_RB_FORCE_WAKEUP;
    }
    b->out.kind = LOUPE_EVENT_BATCH;
    ring_send(&b->out, size, flags, b->out.events);
    b->out.bytes = 0;
    b->out.events = 0;
}

// Where the next event (at most max_size bytes) is to be written in the batch; the batch is sent
// first when it has no room left for it. batch_commit makes what was written there an event.
static __always_inline void *batch_reserve(struct loupe_cpu_batch *b, __u32 max_size)
{
    __u32 used = b->out.bytes;
    if (used + sizeof(struct loupe_batch_entry) + max_size > LOUPE_BATCH_BYTES) {
        batch_flush(b);
        used = 0;
    }
    // Verifier workaround: a no-op mask (used < LOUPE_BATCH_BYTES here) that bounds the offset.
    OPAQUE(used);
    used &= LOUPE_BATCH_BYTES - 1;
    return &b->out.data[used + sizeof(struct loupe_batch_entry)];
}

// This CPU's batch timer fires on this CPU once the caller has left its batch: sends the batch.
// (A CPU taken offline hands its timers to another CPU, whose batch this then sends: the offline
// CPU's batch waits until the CPU is back, or until user space reads it at shutdown.)
static int send_batch_on_timer(void *map, __u32 *key, struct batch_timer *t)
{
    __u32 zero = 0;
    struct loupe_cpu_batch *b = bpf_map_lookup_elem(&batches, &zero);
    if (!b)
        return 0;
    if (b->busy) {
        // This softirq interrupted a program writing the batch: come back after it.
        if (bpf_timer_start(&t->timer, BATCH_RETRY_NS, TIMER_CPU_PIN) != 0)
            b->timer = LOUPE_BATCH_TIMER_IDLE; // that program's next commit arms it again
        return 0;
    }
    b->timer = LOUPE_BATCH_TIMER_IDLE;
    if (stopping)
        return 0;
    b->busy = 1;
    COMPILER_BARRIER();
    batch_flush(b);
    batch_leave(b);
    return 0;
}

// Whether this CPU's batch timer will send the batch; false when the kernel refuses the timer
// (no bpf_timer for this program type, or no BPF_F_TIMER_CPU_PIN before 6.7): the caller sends
// the batch now, and every event from then on.
static __always_inline bool batch_timer_armed(struct loupe_cpu_batch *b)
{
    if (b->timer == LOUPE_BATCH_TIMER_ARMED)
        return true;
    if (b->timer == LOUPE_BATCH_TIMER_UNUSABLE)
        return false;
    __u32 cpu = bpf_get_smp_processor_id();
    struct batch_timer *t = bpf_map_lookup_elem(&batch_timers, &cpu);
    if (!t)
        return false;
    long err = 0;
    if (b->timer == LOUPE_BATCH_TIMER_UNSET) {
        err = bpf_timer_init(&t->timer, &batch_timers, CLOCK_MONOTONIC);
        if (err == 0)
            err = bpf_timer_set_callback(&t->timer, send_batch_on_timer);
    }
    if (err == 0)
        err = bpf_timer_start(&t->timer, BATCH_TIMER_NS, TIMER_CPU_PIN);
    if (err != 0) {
        b->timer = LOUPE_BATCH_TIMER_UNUSABLE;
        batch_timer_error = (__s32)err;
        return false;
    }
    b->timer = LOUPE_BATCH_TIMER_ARMED;
    return true;
}

// Makes what was written at batch_reserve's place an event of the batch, without sending the
// batch: for an event that another must follow in the same batch (batch_commit sends it).
static __always_inline void batch_append(struct loupe_cpu_batch *b, __u32 size, __u64 now)
{
    __u32 used = b->out.bytes;
    OPAQUE(used);
    used &= LOUPE_BATCH_BYTES - 1; // verifier, as in batch_reserve
    struct loupe_batch_entry *entry = (struct loupe_batch_entry *)&b->out.data[used];
    entry->size = size;
    entry->reserved0 = 0;
    if (used == 0)
        b->first_ns = now;
    b->last_entry = used;
    b->out.bytes = used + sizeof(*entry) + ((size + 7) & ~7U);
    b->out.events += 1;
}

// Where a batch stood, for batch_undo to take back the events appended since.
struct batch_mark {
    __u32 bytes;
    __u32 events;
    __u32 last_entry;
    __u64 first_ns;
};

static __always_inline void batch_mark(struct loupe_cpu_batch *b, struct batch_mark *m)
{
    m->bytes = b->out.bytes;
    m->events = b->out.events;
    m->last_entry = b->last_entry;
    m->first_ns = b->first_ns;
}

static __always_inline void batch_undo(struct loupe_cpu_batch *b, const struct batch_mark *m)
{
    b->out.bytes = m->bytes;
    b->out.events = m->events;
    b->last_entry = m->last_entry;
    b->first_ns = m->first_ns;
}

// Makes what was written at batch_reserve's place an event, and sends the batch when it is due.
static __always_inline void batch_commit(struct loupe_cpu_batch *b, __u32 size, __u64 now)
{
    batch_append(b, size, now);
    // Signed: a write's time (write_time) can precede events put in the batch by a task that ran
    // on this CPU while the writer was preempted between its sending and this hook.
    if (!batch_events || (__s64)(now - b->first_ns) >= (__s64)BATCH_MAX_AGE_NS ||
        !batch_timer_armed(b))
        batch_flush(b);
}

// As batch_commit, but never arms the batch timer: for programs that may not use a bpf_timer
// (kprobe-type programs: uprobes). The batch waits for a timer armed already, else goes now.
static __always_inline void batch_commit_untimed(struct loupe_cpu_batch *b, __u32 size, __u64 now)
{
    batch_append(b, size, now);
    if (!batch_events || b->timer != LOUPE_BATCH_TIMER_ARMED ||
        (__s64)(now - b->first_ns) >= (__s64)BATCH_MAX_AGE_NS)
        batch_flush(b);
}

#endif /* LOUPE_BPF_EVENT_BATCH_BPF_H */
