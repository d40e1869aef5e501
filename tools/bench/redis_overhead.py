#!/usr/bin/env python3
"""Redis throughput with and without loupe, in short rotating phases of one run: a private
redis-server serving one long redis-benchmark run (GET and SET, -P 1 or -P 16); one agent whose
kernel hooks are detached (SIGUSR1) and attached again (SIGUSR2) from phase to phase, and with
--reference a third phase running a bpftrace script instead (reference_redis.bt: two filtered
syscall tracepoints timing read -> write of redis-server). Throughput of a phase: redis-server's
own total_commands_processed. Prints each round, the median ratios with their 95 % confidence
intervals, and loupe / reference (rotating_phases.py).

    sudo python3 tools/bench/redis_overhead.py [--minutes 4] [--phase 3] [--pipeline 1]
        [--reference tools/bench/reference_redis.bt] [--all-processes]
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import Agent  # noqa: E402
from paused_load import ReferenceTracer  # noqa: E402
from rotating_phases import report, rotate  # noqa: E402
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
    server = RedisServer()
    agent = Agent(*([] if args.all_processes else ["--comm", "redis-server"]))
    reference = ReferenceTracer(args.reference) if args.reference else None
    bench = subprocess.Popen(
        ["redis-benchmark", "-p", str(server.port), "-t", "get,set", "-n", "2000000000",
         "-P", str(args.pipeline), "-c", str(args.clients), "-r", "100000", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        results = rotate(agent, lambda: int(server.info("stats")["total_commands_processed"]),
                         lambda: bench.poll() is None, args.minutes, args.phase, args.settle,
                         reference=reference, per_reading=1, unit="commands")
    finally:
        bench.terminate()
        bench.wait()
        agent.stop()
        server.stop()
    report(*results, unit="command")


if __name__ == "__main__":
    main()
