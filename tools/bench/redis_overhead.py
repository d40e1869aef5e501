#!/usr/bin/env python3
"""Redis throughput with and without loupe, in short rotating phases of one run: a private
redis-server serving one long redis-benchmark run (GET and SET, -P 1 or -P 16); one agent whose
kernel hooks are detached (SIGUSR1) and attached again (SIGUSR2) from phase to phase, and with
--reference a third phase running a bpftrace script instead (reference_redis.bt: two filtered
syscall tracepoints timing read -> write of redis-server). Throughput of a phase: redis-server's
own total_commands_processed. Prints each round, the median ratios with their 95 % confidence
intervals, and loupe / reference.

    sudo python3 tools/bench/redis_overhead.py [--minutes 4] [--phase 3] [--pipeline 1]
        [--reference tools/bench/reference_redis.bt] [--all-processes]
"""
import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import Agent, proc_cpu_seconds  # noqa: E402
from overhead_paused import median_ci  # noqa: E402
from paused_load import ReferenceTracer  # noqa: E402
from test_redis import RedisServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=4)
    ap.add_argument("--phase", type=float, default=3.0)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--all-processes", action="store_true",
                    help="trace every process (the agent's default) instead of --comm redis-server")
    ap.add_argument("--reference", metavar="SCRIPT.bt")
    args = ap.parse_args()
    kinds = ["without", "loupe"] + (["reference"] if args.reference else [])
    orders = list(itertools.permutations(kinds)) if args.reference else [kinds, kinds[::-1]]
    server = RedisServer()
    agent = Agent(*([] if args.all_processes else ["--comm", "redis-server"]))
    reference = ReferenceTracer(args.reference) if args.reference else None
    bench = subprocess.Popen(
        ["redis-benchmark", "-p", str(server.port), "-t", "get,set", "-n", "2000000000",
         "-P", str(args.pipeline), "-c", str(args.clients), "-r", "100000", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rounds, agent_us = [], []
    try:
        time.sleep(2)
        end = time.time() + args.minutes * 60
        while time.time() < end and bench.poll() is None:
            rate = {}
            for kind in orders[len(rounds) % len(orders)]:
                if reference:
                    reference.set(kind == "reference")
                agent.set_hooks_paused(kind != "loupe")
                time.sleep(args.settle)
                c0 = int(server.info("stats")["total_commands_processed"])
                t0, a0 = time.monotonic(), proc_cpu_seconds(agent.proc.pid)
                time.sleep(args.phase)
                n = int(server.info("stats")["total_commands_processed"]) - c0 - 1  # our INFO
                elapsed = time.monotonic() - t0
                rate[kind] = n / elapsed
                if kind == "loupe" and n > 0:
                    agent_us.append((proc_cpu_seconds(agent.proc.pid) - a0) * 1e6 / n)
            rounds.append(rate)
            print(f"round {len(rounds)}: " + ", ".join(f"{k} {rate[k]:.0f} ops/s" for k in kinds)
                  + ", " + ", ".join(f"{k}/without {rate[k] / rate['without']:.3f}" for k in kinds[1:]),
                  flush=True)
    finally:
        if reference:
            reference.set(False)
        bench.terminate()
        bench.wait()
        agent.stop()
        server.stop()
    for kind in kinds[1:]:
        med, lo, hi = median_ci([r[kind] / r["without"] for r in rounds])
        print(f"{kind}: median ratio over {len(rounds)} rounds: {med:.3f} (95 % CI {lo:.3f}-{hi:.3f})")
    if args.reference:
        med, lo, hi = median_ci([r["loupe"] / r["reference"] for r in rounds])
        print(f"loupe/reference: median {med:.3f} (95 % CI {lo:.3f}-{hi:.3f})")
    print(f"agent CPU with hooks: median {statistics.median(agent_us):.2f} us an operation")


if __name__ == "__main__":
    main()
