#!/usr/bin/env python3
"""CPU cost of loupe per Redis command, as cost.py measures it per nginx request: a private
redis-server under redis-benchmark (GET and SET, -P 1 unless --pipeline), an agent attached, and
kernel.bpf_stats_enabled=1. Prints the BPF run time of every loupe program per command and the
agent's own CPU per command (commands: redis-server's total_commands_processed).

    sudo python3 tools/bench/redis_cost.py [--seconds 10] [--pipeline 1] [--all-processes]
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from cost import print_per_operation, prog_stats  # noqa: E402
from loupe_e2e import Agent, proc_cpu_seconds  # noqa: E402
from test_redis import RedisServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--all-processes", action="store_true")
    args = ap.parse_args()
    server = RedisServer()
    agent = Agent(*([] if args.all_processes else ["--comm", "redis-server"]))
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    time.sleep(1)
    try:
        c0 = int(server.info("stats")["total_commands_processed"])
        before, cpu0, t0 = prog_stats(), proc_cpu_seconds(agent.proc.pid), time.time()
        bench = subprocess.Popen(
            ["redis-benchmark", "-p", str(server.port), "-t", "get,set", "-n", "2000000000",
             "-P", str(args.pipeline), "-c", "50", "-r", "100000", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.seconds)
        bench.terminate()
        bench.wait()
        after, cpu1, t1 = prog_stats(), proc_cpu_seconds(agent.proc.pid), time.time()
        ops = int(server.info("stats")["total_commands_processed"]) - c0 - 2
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
        agent.stop()
        server.stop()
    print(f"{ops} commands in {t1 - t0:.1f} s ({ops / (t1 - t0):.0f}/s), -P {args.pipeline}, "
          f"{'all processes' if args.all_processes else '--comm redis-server'}")
    print_per_operation(before, after, ops, cpu1 - cpu0, "command")


if __name__ == "__main__":
    main()
