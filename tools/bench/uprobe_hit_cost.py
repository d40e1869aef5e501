#!/usr/bin/env python3
"""The cost of one uprobe hit on this kernel (issue 24: each SSL_read/SSL_write call of a traced
process pays it, whatever the program does): a C program calls an empty function --calls times and
reports its own CPU time per call (user + system: the trap is kernel time of the caller), with no
probe, with a uprobe at the function's entry, and with a uprobe and a uretprobe, each running a
bpftrace program that does almost nothing (a per-thread map store at entry, its delete at return).
Alternating, medians of --repeats. kernel.bpf_stats_enabled is left off: the programs' own run
time is a small part of the figure, and cost.py measures loupe's.

Run as root, alone under the BPF lock (bpftrace loads BPF):
    flock /tmp/loupe-bpf.lock python3 tools/bench/uprobe_hit_cost.py [--calls 1000000] [--repeats 5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paused_load import ReferenceTracer  # noqa: E402

CALLER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
__attribute__((noinline)) int probed(int x) { __asm__ volatile(""); return x + 1; }
int main(int argc, char **argv)
{
    long calls = atol(argv[1]);
    struct timespec a, b;
    int sum = 0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (long i = 0; i < calls; i++)
        sum = probed(sum);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / calls);
    return sum == 0;
}
"""

SCRIPTS = {
    "uprobe": 'BEGIN {{ printf("ready\\n"); }}\n'
              'uprobe:{binary}:probed {{ @entered[tid] = arg0; }}\n',
    "uprobe + uretprobe": 'BEGIN {{ printf("ready\\n"); }}\n'
                          'uprobe:{binary}:probed {{ @entered[tid] = arg0; }}\n'
                          'uretprobe:{binary}:probed {{ delete(@entered[tid]); }}\n',
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="loupe-uprobe-cost-")
    binary = os.path.join(work, "caller")
    with open(binary + ".c", "w") as f:
        f.write(CALLER)
    subprocess.run(["cc", "-O2", "-o", binary, binary + ".c"], check=True)
    tracers = {"no probe": None}
    for kind, text in SCRIPTS.items():
        path = os.path.join(work, kind.replace(" ", "").replace("+", "_") + ".bt")
        with open(path, "w") as f:
            f.write(text.format(binary=binary))
        tracers[kind] = ReferenceTracer(path)
    results = {kind: [] for kind in tracers}
    for _ in range(args.repeats):
        for kind, tracer in tracers.items():
            if tracer:
                tracer.set(True)
            try:
                out = subprocess.run([binary, str(args.calls)], capture_output=True, text=True,
                                     check=True).stdout
            finally:
                if tracer:
                    tracer.set(False)
            results[kind].append(float(out))
    base = statistics.median(results["no probe"])
    print(f"{args.calls} calls, medians of {args.repeats}; load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    print("| | ns per call (CPU) | more than no probe |")
    print("|---|---|---|")
    for kind, runs in results.items():
        med = statistics.median(runs)
        print(f"| {kind} | {med:.0f} | {'' if kind == 'no probe' else f'{med - base:.0f} ns'} |")


if __name__ == "__main__":
    main()
