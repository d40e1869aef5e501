#!/usr/bin/env python3
"""Overhead of CPU profiling on nginx + wrk (issue 25's second load), in rotating phases of one
long run: nginx (2 workers) serving its default page to one long `wrk -t2 -c50`, and phase by
phase one of: no profiler ("without"), `loupe profile --comm nginx` at 19, 49 and 99 Hz,
`perf record -F 99 -g -a` (every CPU, as loupe's per-CPU events) and `perf record -F 99 -g -p`
(nginx's processes). With --agent, two more phases: `loupe agent --comm nginx` with
--profile-frequency 0 and 19 (socket capture included: their ratio is what profiling adds).

Each profiler is started at its phase's start and stopped (SIGINT) at its end; the phase is
measured after `--settle` seconds (attached, past start-up). Reported per kind (medians over the
rounds): nginx's throughput (its access log) as a ratio to the "without" phase of the same round,
nginx's and wrk's CPU per request (steadier than throughput on a shared host; sampling interrupts
and perf's in-interrupt unwinding land in the interrupted task's time), the profiler process's
own CPU while measured as a share of the machine, the in-kernel run time
of loupe's sampling program (kernel.bpf_stats_enabled=1) as a share of the machine, and the
profiler process's whole-life CPU (start-up, symbolization at exit; perf's `perf report` is not
run). perf's sampling and unwinding run in the interrupt, charged to the task interrupted: they
show in throughput only.

Run as root, alone under the BPF lock (it loads BPF):
    flock /tmp/loupe-bpf.lock python3 tools/bench/profile_nginx_overhead.py --minutes 6
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../tests/e2e"))
import loupe_e2e  # noqa: E402
from cost import prog_stats, run_time_by_program  # noqa: E402
from loupe_e2e import Agent, Nginx  # noqa: E402
from paused_load import AccessLogCount, cpu_seconds_of, nginx_pids  # noqa: E402
from rotating_phases import print_kind_table, rotate_phases  # noqa: E402


class Profilers:
    """At most one profiler at a time: `switch(kind)` stops the current one and starts `kind`'s;
    returns its pid (None for "without"). Keeps each stopped profiler's whole-life CPU seconds."""

    def __init__(self, loupe, nginx, work):
        self.loupe, self.nginx, self.work = loupe, nginx, work
        self.proc = self.agent = self.kind = None
        self.lifetime_cpu = {}  # kind: [CPU seconds of each run, start to exit]

    def switch(self, kind):
        if kind == self.kind:
            return self.pid()
        self.stop()
        self.kind = kind
        if kind.startswith("loupe-"):
            self.proc = subprocess.Popen(
                [self.loupe, "profile", "--comm", "nginx", "--frequency", kind.split("-")[1],
                 "--duration", "30m", "--output", os.path.join(self.work, "p.folded")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif kind.startswith("perf-"):
            target = ["-a"] if kind == "perf-a" else ["-p", ",".join(map(str, nginx_pids(self.nginx)))]
            self.proc = subprocess.Popen(["perf", "record", "-F", "99", "-g", "-q", *target, "-o",
                                          os.path.join(self.work, "perf.data")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif kind.startswith("agent-"):
            self.agent = Agent("--comm", "nginx", "--profile-frequency", kind.split("-")[1])
        return self.pid()

    def pid(self):
        return self.agent.proc.pid if self.agent else self.proc.pid if self.proc else None

    def stop(self):
        if self.agent:
            self.agent.stop(timeout=60)
            self.agent = None
        if self.proc:
            self.proc.send_signal(signal.SIGINT)  # both write their files and exit
            try:
                _, _, usage = os.wait4(self.proc.pid, 0)
                self.lifetime_cpu.setdefault(self.kind, []).append(usage.ru_utime + usage.ru_stime)
            except ChildProcessError:
                pass
            self.proc = None
        self.kind = None


def sampler_run_ns():
    """Run time so far of every BPF program named sample_stack (loupe's perf_event program)."""
    return sum(ns for name, (_, ns) in run_time_by_program({}, prog_stats()).items()
               if name == "sample_stack")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loupe", default=os.path.join(HERE, "..", "..", "build", "loupe"))
    ap.add_argument("--minutes", type=float, default=6)
    ap.add_argument("--phase", type=float, default=5.0, help="seconds measured in each phase")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds between a profiler's start and its phase's measure")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--agent", action="store_true",
                    help="also phases of an agent (--comm nginx) at --profile-frequency 0 and 19")
    args = ap.parse_args()
    loupe_e2e.LOUPE = os.path.abspath(args.loupe)  # the binary loupe_e2e.Agent runs
    kinds = ["without", "loupe-19", "loupe-49", "loupe-99"]
    if shutil.which("perf"):
        kinds += ["perf-a", "perf-p"]
    if args.agent:
        kinds += ["agent-0", "agent-19"]
    work = tempfile.mkdtemp(prefix="loupe-profile-nginx-")
    nginx = Nginx(workers=args.workers)
    wrk = subprocess.Popen(["wrk", "-t2", "-c50", f"-d{int(args.minutes * 60 + 300)}s",
                            nginx.url("/")], stdout=subprocess.DEVNULL)
    profilers = Profilers(args.loupe, nginx, work)
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        stats_before = f.read().strip()
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    try:
        time.sleep(2)  # warm-up
        servers = nginx_pids(nginx)
        rounds, phases = rotate_phases(kinds, profilers.switch, AccessLogCount(nginx),
                                       lambda: wrk.poll() is None, args.minutes, args.phase,
                                       args.settle, unit="req", counters={
                                           "bpf_ns": sampler_run_ns,
                                           "nginx_cpu": lambda: cpu_seconds_of(servers),
                                           "wrk_cpu": lambda: cpu_seconds_of([wrk.pid])})
    finally:
        profilers.stop()
        subprocess.run(["sysctl", "-q", f"kernel.bpf_stats_enabled={stats_before}"], check=True)
        wrk.terminate()
        wrk.wait()
        nginx.stop()
        shutil.rmtree(work, ignore_errors=True)
    cpus = os.cpu_count()
    print(f"{len(rounds)} rounds of {args.phase} s phases, nginx {args.workers} workers, wrk -t2 "
          f"-c50, {cpus} CPUs; medians")
    print_kind_table(rounds, phases, unit="req", columns={
        "BPF sampler, % of machine": lambda p: 100 * p["bpf_ns"] / 1e9 / (p["seconds"] * cpus),
        "nginx CPU µs/req": lambda p: 1e6 * p["nginx_cpu"] / max(p["operations"], 1),
        "wrk CPU µs/req": lambda p: 1e6 * p["wrk_cpu"] / max(p["operations"], 1)})
    for kind, runs in profilers.lifetime_cpu.items():
        runs = sorted(runs)
        print(f"{kind}: whole-life CPU of each run (start-up, the phase, exit): median "
              f"{runs[len(runs) // 2]:.3f} s over {len(runs)} runs")


if __name__ == "__main__":
    main()
