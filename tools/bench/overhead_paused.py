#!/usr/bin/env python3
"""End-to-end overhead measured in short alternating phases: nginx serving its default page to one
long `wrk -t2 -c50` run, with one agent whose kernel hooks are detached (SIGUSR1) and attached
again (SIGUSR2) every phase. Throughput of each phase comes from nginx's access log; each pair
of adjacent phases gives a ratio (with / without). Prints every pair, the median ratio with its
95 % confidence interval, and the ratio of the median rates.

Why: restarting an agent between runs (overhead.py) puts ~35 s between the runs of a pair, and on
a shared VM the host's speed drifts by more than loupe's cost within that time. Here the two
sides of a pair are seconds apart, and there are ten times as many pairs. Also prints the agent
process's CPU per request (phases with hooks) and the share of idle CPU time. What it leaves out:
the idle agent process stays up in the phases without hooks (~0.3 % of one core here, its /proc
scans and timers), and the hooks of process exits and TCP state changes stay attached (they fire
once per process or connection state change; wrk's connections stay open).

    sudo python3 tools/bench/overhead_paused.py [--minutes 5] [--phase 2] [--all-processes]
"""
import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import CLK_TCK, proc_cpu_seconds  # noqa: E402
from paused_load import PausedLoad  # noqa: E402


def idle_seconds():
    """Idle + iowait time of all CPUs so far (a phase with idle CPUs was not CPU-bound)."""
    fields = open("/proc/stat").readline().split()
    return (int(fields[4]) + int(fields[5])) / CLK_TCK


def median_ci(values):
    """The median and a distribution-free 95 % confidence interval for it (order statistics)."""
    v = sorted(values)
    n = len(v)
    k = max(0, math.floor(n / 2 - 1.96 * math.sqrt(n) / 2))
    return statistics.median(v), v[k], v[n - 1 - k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--phase", type=float, default=2.0, help="seconds measured in each phase")
    ap.add_argument("--settle", type=float, default=0.3,
                    help="seconds left out after each switch (attaching a hook patches kernel text on every CPU)")
    ap.add_argument("--path", default="/")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--all-processes", action="store_true",
                    help="trace every process (the agent's default) instead of --comm nginx")
    ap.add_argument("--agent-arg", action="append", default=[])
    args = ap.parse_args()
    rows = []
    agent_us = []  # the agent process's CPU per request, in phases with hooks
    idle_share = []
    with PausedLoad(args.minutes * 60, path=args.path, workers=args.workers, agent_args=args.agent_arg,
                    all_processes=args.all_processes) as load:
        agent_pid = load.agent.proc.pid
        end = time.time() + args.minutes * 60
        pair = 0
        while time.time() < end and load.running():
            # ABBA order: a drift of the host's speed within a pair weighs on both sides alike.
            order = (True, False) if pair % 2 == 0 else (False, True)
            rate = {}
            for paused in order:
                load.switch(not paused, args.settle)
                t0, a0, i0 = time.monotonic(), proc_cpu_seconds(agent_pid), idle_seconds()
                time.sleep(args.phase)
                n = load.served()
                elapsed = time.monotonic() - t0
                rate[paused] = n / elapsed
                idle_share.append((idle_seconds() - i0) / (elapsed * os.cpu_count()))
                if not paused and n:
                    agent_us.append((proc_cpu_seconds(agent_pid) - a0) * 1e6 / n)
            pair += 1
            rows.append((rate[True], rate[False]))
            print(f"pair {pair}: without {rate[True]:.0f} req/s, with {rate[False]:.0f} req/s, "
                  f"ratio {rate[False] / rate[True]:.3f}", flush=True)
    ratios = [on / off for off, on in rows]
    med, lo, hi = median_ci(ratios)
    print(f"median ratio over {len(rows)} pairs: {med:.3f} (95 % CI {lo:.3f}-{hi:.3f}); "
          f"median with / median without: {statistics.median(r[1] for r in rows) / statistics.median(r[0] for r in rows):.3f}; "
          f"mean {statistics.mean(ratios):.3f}")
    # The agent's own share is steadier than throughput on a noisy host; idle CPUs mean the
    # phases were not CPU-bound, and the ratio then says little about CPU cost.
    print(f"agent CPU with hooks: median {statistics.median(agent_us):.2f} us a request; "
          f"idle CPU share: median {statistics.median(idle_share):.3f}")


if __name__ == "__main__":
    main()
