#!/usr/bin/env python3
"""CPU cost of loupe per SQL statement, as redis_cost.py measures it per Redis command: a private
PostgreSQL under `pgbench -S` or MariaDB under `sysbench oltp_point_select` (sql_load.py), an
agent attached before the clients connect, and kernel.bpf_stats_enabled=1. Over a window of the
steady run, prints the BPF run time of every loupe program per SELECT and the agent's own CPU per
SELECT (SELECTs: the server's pg_stat_statements calls or Com_select).

    sudo python3 tools/bench/sql_cost.py --system postgresql|mariadb [--seconds 10] [--clients 8]
        [--mode ...] [--all-processes]
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from cost import print_per_operation, prog_stats  # noqa: E402
from loupe_e2e import Agent, proc_cpu_seconds  # noqa: E402
from sql_load import LOADS  # noqa: E402
from sql_overhead import load_args  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", choices=sorted(LOADS), required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--mode", help="pgbench -M (default simple) or sysbench --db-ps-mode (default auto)")
    ap.add_argument("--all-processes", action="store_true",
                    help="trace every process (the agent's default) instead of --comm of the server")
    args = ap.parse_args()
    load = LOADS[args.system](**load_args(args))
    agent = None
    try:
        agent = Agent(*([] if args.all_processes else ["--comm", load.server_comm]))
        agent.settle(1.0)  # past its start-up work (first /proc scan, identities)
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
        load.start(args.seconds + 30)
        time.sleep(3)  # connections made, statements prepared: the steady state only
        c0, before, cpu0, t0 = (load.operations(), prog_stats(), proc_cpu_seconds(agent.proc.pid),
                                time.monotonic())
        time.sleep(args.seconds)
        c1, after, cpu1, t1 = (load.operations(), prog_stats(), proc_cpu_seconds(agent.proc.pid),
                               time.monotonic())
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
        load.stop()
        if agent:
            agent.stop()
    ops = c1 - c0
    print(f"{args.system}: {ops} SELECTs in {t1 - t0:.1f} s ({ops / (t1 - t0):.0f}/s), "
          f"{args.clients} clients, "
          f"{'every process (server and client sides)' if args.all_processes else '--comm ' + load.server_comm}")
    print_per_operation(before, after, ops, cpu1 - cpu0, load.unit)


if __name__ == "__main__":
    main()
