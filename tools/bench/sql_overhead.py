#!/usr/bin/env python3
"""PostgreSQL or MariaDB throughput with and without loupe, in short rotating phases of one run
(as redis_overhead.py does for Redis): a private server serving one long `pgbench -S` or
`sysbench oltp_point_select` run (sql_load.py); one agent whose kernel hooks are detached
(SIGUSR1) and attached again (SIGUSR2) from phase to phase, and with --reference a third phase
running a bpftrace script instead (reference_postgres.bt / reference_mysql.bt: two filtered
syscall tracepoints timing recvfrom -> sendto of the server). Throughput of a phase: the server's
own count of SELECTs (pg_stat_statements calls, Com_select). Prints each round, the median ratios
with their 95 % confidence intervals, loupe / reference, and the agent's CPU per SELECT.

    sudo python3 tools/bench/sql_overhead.py --system postgresql|mariadb [--minutes 4] [--phase 3]
        [--clients 8] [--mode simple|extended|prepared (pgbench) / auto|disable (sysbench)]
        [--reference tools/bench/reference_postgres.bt] [--all-processes]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import Agent  # noqa: E402
from paused_load import ReferenceTracer  # noqa: E402
from rotating_phases import report, rotate  # noqa: E402
from sql_load import LOADS  # noqa: E402


def load_args(args):
    return {"clients": args.clients, **({"mode": args.mode} if args.mode else {})}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", choices=sorted(LOADS), required=True)
    ap.add_argument("--minutes", type=float, default=4)
    ap.add_argument("--phase", type=float, default=3.0)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--mode", help="pgbench -M (default simple) or sysbench --db-ps-mode (default auto)")
    ap.add_argument("--all-processes", action="store_true",
                    help="trace every process (the agent's default) instead of --comm of the server")
    ap.add_argument("--reference", metavar="SCRIPT.bt")
    args = ap.parse_args()
    load = LOADS[args.system](**load_args(args))
    agent = reference = None
    try:
        agent = Agent(*([] if args.all_processes else ["--comm", load.server_comm]))
        agent.settle(1.0)  # past its start-up work
        reference = ReferenceTracer(args.reference) if args.reference else None
        load.start(args.minutes * 60 + 120)  # the reference's start-ups add to the rounds' time
        time.sleep(3)  # connections made, caches warm
        results = rotate(agent, load.operations, load.running, args.minutes, args.phase,
                         args.settle, reference=reference, unit=load.unit)
    finally:
        load.stop()
        if agent:
            agent.stop()
    print(f"{args.system}, {args.clients} clients, "
          f"{'every process' if args.all_processes else '--comm ' + load.server_comm}")
    report(*results, unit=load.unit)


if __name__ == "__main__":
    main()
