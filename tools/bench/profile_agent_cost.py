#!/usr/bin/env python3
"""The agent's own CPU and memory with continuous profiling at 0 (off), 19, 49 and 99 Hz,
profiling every process on the machine (no --pid/--comm), while a workload keeps CPUs busy so that
there is something to sample: the split program of tests/e2e/profile/split.c (a handful of
stacks), or with --workload many-stacks --processes N, N copies of many_stacks.c (almost every
sample a new stack: the agent's per-window bounds at work). Each phase: a fresh agent, 3 s to
settle, then its CPU seconds (user + system, /proc/PID/stat) over `--seconds`, and its VmRSS and
VmHWM at the end; phases in a shuffled order, repeated. Reported: medians; CPU as a share of the
whole machine; the samples the agent kept, and those dropped at its bounds, per second.

Usage: sudo tools/bench/profile_agent_cost.py [--loupe build/loupe] [--seconds 20] [--repeats 2]
           [--workload split|many-stacks] [--processes 1] [--frequencies 0,19,49,99]
"""
import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT_C = os.path.join(HERE, "..", "..", "tests", "e2e", "profile", "split.c")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def profile_counts(port):
    """{"kept": samples kept so far, and each reason of loupe_profile_lost_samples_total}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    kept = re.search(r"^loupe_profile_samples_total (\S+)$", text, re.M)
    counts = {"kept": float(kept.group(1)) if kept else 0.0}
    for reason, value in re.findall(r'^loupe_profile_lost_samples_total\{reason="(\w+)"\} (\S+)$',
                                    text, re.M):
        counts[reason] = float(value)
    return counts


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def phase(loupe, hz, seconds):
    port = free_port()
    agent = subprocess.Popen([loupe, "agent", "--listen", f"127.0.0.1:{port}", "--profile-frequency", str(hz)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        before, counts_before = cpu_seconds(agent.pid), profile_counts(port)
        time.sleep(seconds)
        used = cpu_seconds(agent.pid) - before
        counts = profile_counts(port)
        rss, hwm = status_kib(agent.pid, "VmRSS"), status_kib(agent.pid, "VmHWM")
    finally:
        agent.terminate()
        agent.wait()
    rates = {k: (v - counts_before.get(k, 0.0)) / seconds for k, v in counts.items()}
    return {"cpu": used, "kept": rates.get("kept", 0.0), "dropped": rates.get("bounds", 0.0),
            "lost": sum(v for k, v in rates.items() if k not in ("kept", "bounds")),
            "rss_mib": rss / 1024, "hwm_mib": hwm / 1024}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loupe", default="build/loupe")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workload", choices=["split", "many-stacks"], default="split")
    parser.add_argument("--processes", type=int, default=1, help="copies of the workload")
    parser.add_argument("--frequencies", default="0,19,49,99")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="loupe-profile-agent-bench-")
    binary = os.path.join(work, args.workload)
    source = SPLIT_C if args.workload == "split" else os.path.join(HERE, "many_stacks.c")
    subprocess.run(["clang", "-O2", "-fno-omit-frame-pointer", "-o", binary, source], check=True)
    loads = [subprocess.Popen([binary]) for _ in range(args.processes)]
    cpus = os.cpu_count()
    results = {int(hz): [] for hz in args.frequencies.split(",")}
    try:
        for _ in range(args.repeats):
            order = list(results)
            random.shuffle(order)
            for hz in order:
                results[hz].append(phase(args.loupe, hz, args.seconds))
    finally:
        for load in loads:
            load.kill()
            load.wait()
    print(f"agent over {args.seconds:.0f} s, every process profiled, {args.processes} x "
          f"{args.workload}, {cpus} CPUs, medians of {args.repeats}; load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    print("| --profile-frequency | agent CPU s | % of machine | samples/s kept | dropped/s (bounds) "
          "| lost/s (kernel) | VmRSS MiB | VmHWM MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for hz, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {hz} | {med['cpu']:.3f} | {100 * med['cpu'] / (args.seconds * cpus):.2f} % | "
              f"{med['kept']:.1f} | {med['dropped']:.1f} | {med['lost']:.1f} | {med['rss_mib']:.1f} | "
              f"{med['hwm_mib']:.1f} |")


if __name__ == "__main__":
    main()
