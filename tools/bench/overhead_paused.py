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

With --reference SCRIPT.bt, each round has a third phase, with loupe's hooks detached and that
bpftrace script running: how this host treats the target's reference (a script with two filtered
per-syscall tracepoints kept ~0.98 of nginx's throughput on the machine the target was set on).
bpftrace is a benchmark tool only (`apt-get install bpftrace`); loupe does not use it.
"""
import argparse
import itertools
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
    ap.add_argument("--reference", metavar="SCRIPT.bt",
                    help="also measure phases running this bpftrace script instead of loupe's hooks "
                         "(tools/bench/reference_two_tracepoints.bt: the target's reference)")
    args = ap.parse_args()
    kinds = ["without", "loupe"] + (["reference"] if args.reference else [])
    # Orders that put every kind in every position as often (ABBA for two kinds): a drift of the
    # host's speed within a round weighs on all kinds alike.
    orders = list(itertools.permutations(kinds)) if args.reference else [kinds, kinds[::-1]]
    rounds = []  # per round, requests a second of each kind
    agent_us = []  # the agent process's CPU per request, in phases with hooks
    idle_share = []
    with PausedLoad(args.minutes * 60, path=args.path, workers=args.workers, agent_args=args.agent_arg,
                    all_processes=args.all_processes, reference=args.reference) as load:
        agent_pid = load.agent.proc.pid
        end = time.time() + args.minutes * 60
        while time.time() < end and load.running():
            rate = {}
            for kind in orders[len(rounds) % len(orders)]:
                load.switch(kind == "loupe", args.settle, reference=kind == "reference")
                t0, a0, i0 = time.monotonic(), proc_cpu_seconds(agent_pid), idle_seconds()
                time.sleep(args.phase)
                n = load.served()
                elapsed = time.monotonic() - t0
                rate[kind] = n / elapsed
                idle_share.append((idle_seconds() - i0) / (elapsed * os.cpu_count()))
                if kind == "loupe" and n:
                    agent_us.append((proc_cpu_seconds(agent_pid) - a0) * 1e6 / n)
            rounds.append(rate)
            print(f"round {len(rounds)}: " + ", ".join(f"{k} {rate[k]:.0f} req/s" for k in kinds) +
                  ", " + ", ".join(f"{k}/without {rate[k] / rate['without']:.3f}" for k in kinds[1:]),
                  flush=True)
    for kind in kinds[1:]:
        ratios = [r[kind] / r["without"] for r in rounds]
        med, lo, hi = median_ci(ratios)
        print(f"{kind}: median ratio over {len(rounds)} rounds: {med:.3f} (95 % CI {lo:.3f}-{hi:.3f}); "
              f"median with / median without: "
              f"{statistics.median(r[kind] for r in rounds) / statistics.median(r['without'] for r in rounds):.3f}; "
              f"mean {statistics.mean(ratios):.3f}")
    if args.reference:
        med, lo, hi = median_ci([r["loupe"] / r["reference"] for r in rounds])
        print(f"loupe/reference: median {med:.3f} (95 % CI {lo:.3f}-{hi:.3f})")
    # The agent's own share is steadier than throughput on a noisy host; idle CPUs mean the
    # phases were not CPU-bound, and the ratio then says little about CPU cost.
    print(f"agent CPU with hooks: median {statistics.median(agent_us):.2f} us a request; "
          f"idle CPU share: median {statistics.median(idle_share):.3f}")

if __name__ == "__main__":
    main()
