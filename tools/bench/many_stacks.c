/* A CPU burner whose samples almost never share a stack: eight functions call each other through
 * a table, the next one picked at random, `depth` calls deep (default 6: 8^6 = 262,144 distinct
 * user stacks), then spin briefly. For the agent's footprint under many distinct stacks
 * (tools/bench/profile_agent_cost.py --workload many-stacks). Built with clang -O2
 * -fno-omit-frame-pointer; the work after each call keeps it from being a tail call (a tail call
 * would leave its caller off the stack). Usage: many_stacks [depth] [seconds, default forever]. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

typedef uint64_t (*step_fn)(int depth, uint64_t x);
static step_fn steps[8];
static volatile uint64_t sink;

static uint64_t xorshift(uint64_t x)
{
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

__attribute__((noinline)) static uint64_t spin(uint64_t x)
{
    for (int i = 0; i < 2000; i++)
        x = xorshift(x);
    return x;
}

#define STEP(n)                                                                  \
    __attribute__((noinline)) uint64_t step_##n(int depth, uint64_t x)           \
    {                                                                            \
        x = xorshift(x + n);                                                     \
        if (depth == 0)                                                          \
            return spin(x);                                                      \
        uint64_t r = steps[x & 7](depth - 1, x >> 3 | x << 61);                  \
        return r ^ (x * (n + 1));                                                \
    }
STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)

int main(int argc, char **argv)
{
    step_fn all[8] = {step_0, step_1, step_2, step_3, step_4, step_5, step_6, step_7};
    for (int i = 0; i < 8; i++)
        steps[i] = all[i];
    int depth = argc > 1 ? atoi(argv[1]) : 6;
    double seconds = argc > 2 ? atof(argv[2]) : 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    uint64_t x = 88172645463325252ULL ^ (uint64_t)start.tv_nsec;
    for (uint64_t round = 0;; round++) {
        x = xorshift(x);
        sink += steps[x & 7](depth, x);
        if (seconds > 0 && (round & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 > seconds)
                return 0;
        }
    }
}
