/* A CPU-bound program whose time splits 3:1 between burn_heavy and burn_light, both called from
 * run_split: the profiler must find each function's share and the caller chain
 * main -> run_split -> burn_*. The two loops differ in a constant so that the compiler cannot
 * fold them into one function. Built with clang -O2 -fno-omit-frame-pointer: clang keeps the
 * frame pointer in leaf functions too (GCC 12 drops it there, and the leaf's caller with it).
 * Runs for argv[1] seconds (default: forever), or argv[2] rounds of run_split when given (a fixed
 * amount of work, for benchmarks). */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static volatile uint64_t sink;

__attribute__((noinline)) uint64_t burn_heavy(uint64_t rounds)
{
    uint64_t x = 88172645463325252ULL;
    for (uint64_t i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

__attribute__((noinline)) uint64_t burn_light(uint64_t rounds)
{
    uint64_t x = 2463534242ULL;
    for (uint64_t i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

__attribute__((noinline)) void run_split(uint64_t rounds)
{
    sink += burn_heavy(3 * rounds);
    sink += burn_light(rounds);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0;
    long rounds = argc > 2 ? atol(argv[2]) : 0;
    if (rounds > 0) {
        for (long i = 0; i < rounds; i++)
            run_split(200000);
        return 0;
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        run_split(200000);
        if (seconds > 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 > seconds)
                return 0;
        }
    }
}
