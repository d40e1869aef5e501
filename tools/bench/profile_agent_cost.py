#!/usr/bin/env python3
"""The agent's own CPU with continuous profiling at 0 (off), 19, 49 and 99 Hz, profiling every
process on the machine (no --pid/--comm), plus the split workload of tests/e2e/profile/split.c
keeping one CPU busy so that there is something to sample. Each phase: a fresh agent, 3 s to
settle, then its CPU seconds (user + system, /proc/PID/stat) over `--seconds`; phases in a
shuffled order, repeated. Reported: medians, as a share of the whole machine, and the samples the
agent kept per second.

Usage: sudo tools/bench/profile_agent_cost.py [--loupe build/loupe] [--seconds 20] [--repeats 2]
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


def samples_total(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(r"^loupe_profile_samples_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def phase(loupe, hz, seconds):
    port = free_port()
    agent = subprocess.Popen([loupe, "agent", "--listen", f"127.0.0.1:{port}", "--profile-frequency", str(hz)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        before, kept_before = cpu_seconds(agent.pid), samples_total(port)
        time.sleep(seconds)
        used, kept = cpu_seconds(agent.pid) - before, samples_total(port) - kept_before
    finally:
        agent.terminate()
        agent.wait()
    return used, kept / seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loupe", default="build/loupe")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="loupe-profile-agent-bench-")
    binary = os.path.join(work, "split")
    subprocess.run(["clang", "-O2", "-fno-omit-frame-pointer", "-o", binary, SPLIT_C], check=True)
    load = subprocess.Popen([binary])
    cpus = os.cpu_count()
    results = {hz: [] for hz in (0, 19, 49, 99)}
    try:
        for _ in range(args.repeats):
            order = list(results)
            random.shuffle(order)
            for hz in order:
                results[hz].append(phase(args.loupe, hz, args.seconds))
    finally:
        load.kill()
        load.wait()
    print(f"agent CPU over {args.seconds:.0f} s, every process profiled, {cpus} CPUs, medians of {args.repeats}")
    print(f"{'Hz':>4} {'agent CPU s':>12} {'% machine':>10} {'samples/s kept':>15}")
    for hz, runs in results.items():
        used = statistics.median(r[0] for r in runs)
        kept = statistics.median(r[1] for r in runs)
        print(f"{hz:>4} {used:12.3f} {100 * used / (args.seconds * cpus):9.2f}% {kept:15.1f}")


if __name__ == "__main__":
    main()
