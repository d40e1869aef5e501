#!/usr/bin/env python3
"""nginx HTTPS throughput with and without loupe (issue 24), in rotating phases of one long run:
nginx with `ssl` (TLS 1.3, self-signed) serving its default page to one long `wrk -t2 -c50
https://` (keep-alive), and phase by phase: no tracer ("without"), a `loupe agent` (`--comm
nginx`, or every process with --all-processes; its defaults otherwise, 19 Hz profiling included)
and, with --reference, the bpftrace script instead (reference_openssl.bt: uprobes on SSL_read and
SSL_write, entry and return). Throughput of a phase: nginx's access log.

The agent is started for its phases and stopped after them, not paused: a paused agent keeps its
uprobes attached (their links are the libraries'), and each hit still traps into the kernel, so
a paused phase is not one without a tracer. Prints each round, the median ratios to "without"
with their 95 % confidence intervals, loupe / reference, the agent's CPU per request, and nginx's
and wrk's CPU per request (steadier than throughput on a shared host; the uprobes' traps land in
the traced processes' own time).

Run as root, alone under the BPF lock (it loads BPF):
    flock /tmp/loupe-bpf.lock python3 tools/bench/tls_overhead.py --minutes 5 \\
        --reference tools/bench/reference_openssl.bt [--all-processes]
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../tests/e2e"))
import loupe_e2e  # noqa: E402
from loupe_e2e import Agent, Nginx  # noqa: E402
from paused_load import AccessLogCount, ReferenceTracer, cpu_seconds_of, nginx_pids  # noqa: E402
from rotating_phases import print_kind_table, report, rotate_phases  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loupe", default=os.path.join(HERE, "..", "..", "build", "loupe"))
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--phase", type=float, default=4.0, help="seconds measured in each phase")
    ap.add_argument("--settle", type=float, default=1.5,
                    help="seconds between a tracer's start (agent ready, bpftrace attached) and "
                         "its phase's measure")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--all-processes", action="store_true",
                    help="trace every process (the agent's default) instead of --comm nginx")
    ap.add_argument("--reference", metavar="SCRIPT.bt")
    ap.add_argument("--agent-arg", action="append", default=[])
    args = ap.parse_args()
    loupe_e2e.LOUPE = os.path.abspath(args.loupe)
    agent_args = args.agent_arg if args.all_processes else ["--comm", "nginx", *args.agent_arg]
    kinds = ["without", "loupe"] + (["reference"] if args.reference else [])
    nginx = Nginx(workers=args.workers, tls=True)
    reference = ReferenceTracer(args.reference) if args.reference else None
    wrk = subprocess.Popen(["wrk", "-t2", "-c50", f"-d{int(args.minutes * 60 + 300)}s",
                            nginx.url("/")], stdout=subprocess.DEVNULL)
    agent = None
    stop_seconds = []  # SIGTERM to exit, under this load

    def switch(kind):
        nonlocal agent
        if reference:
            reference.set(kind == "reference")
        if kind == "loupe":
            agent = agent or Agent(*agent_args)
            return agent.proc.pid
        if agent:
            stop_seconds.append(agent.stop(timeout=60))
            agent = None
        return None

    try:
        time.sleep(2)  # warm-up: the handshakes of wrk's connections
        servers = nginx_pids(nginx)
        rounds, phases = rotate_phases(kinds, switch, AccessLogCount(nginx),
                                       lambda: wrk.poll() is None, args.minutes, args.phase,
                                       args.settle, unit="req", counters={
                                           "nginx_cpu": lambda: cpu_seconds_of(servers),
                                           "wrk_cpu": lambda: cpu_seconds_of([wrk.pid])})
    finally:
        switch("without")
        if reference:
            reference.set(False)
        wrk.terminate()
        wrk.wait()
        nginx.stop()
    print(f"{len(rounds)} rounds of {args.phase} s phases, nginx https {args.workers} workers, "
          f"wrk -t2 -c50, agent {' '.join(agent_args) or '(every process)'}; medians")
    report(rounds, [1e6 * p["cpu_seconds"] / p["operations"] for p in phases
                    if p["kind"] == "loupe" and p["operations"] > 0],
           [p["idle_share"] for p in phases], unit="request")
    print_kind_table(rounds, phases, unit="req", columns={
        "nginx CPU µs/req": lambda p: 1e6 * p["nginx_cpu"] / max(p["operations"], 1),
        "wrk CPU µs/req": lambda p: 1e6 * p["wrk_cpu"] / max(p["operations"], 1)})
    if stop_seconds:
        print(f"agent stop (SIGTERM to exit) under this load: median "
              f"{sorted(stop_seconds)[len(stop_seconds) // 2]:.1f} s, max {max(stop_seconds):.1f} s")


if __name__ == "__main__":
    main()
