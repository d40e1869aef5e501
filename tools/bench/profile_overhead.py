#!/usr/bin/env python3
"""Overhead of CPU profiling on a fixed amount of CPU work (issue 25).

The workload is tests/e2e/profile/split.c (clang -O2 -fno-omit-frame-pointer) doing a fixed
number of rounds. Each trial runs it under one of: nothing, `loupe profile --comm` at 19, 49 and
99 Hz, `perf record -F 99 -g -a` (whole machine, as loupe's per-CPU events are) and
`perf record -F 99 -g -p PID` (that process alone), in a shuffled order, repeated. Reported per
phase: the workload's CPU seconds (user + system, from wait4: the cost of sampling interrupts lands
in the sampled task's time) and the profiler's own CPU seconds (its process and children) as a
share of the machine over the trial.

Usage: sudo tools/bench/profile_overhead.py [--loupe build/loupe] [--rounds 3000] [--repeats 5]
"""
import argparse
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT_C = os.path.join(HERE, "..", "..", "tests", "e2e", "profile", "split.c")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime
    return sum(int(x) for x in fields[11:15]) / ticks


def run_trial(phase, binary, rounds, loupe, work):
    profiler = None
    if phase.startswith("loupe"):
        hz = phase.split("-")[1]
        profiler = subprocess.Popen([loupe, "profile", "--comm", "split-bench", "--frequency", hz,
                                     "--duration", "10m", "--output", os.path.join(work, "p.folded")],
                                    stderr=subprocess.DEVNULL)
        time.sleep(1.5)  # loaded and attached
    started = time.time()
    workload = subprocess.Popen([binary, "0", str(rounds)])
    if phase == "perf-a":
        profiler = subprocess.Popen(["perf", "record", "-F", "99", "-g", "-a", "-q", "-o",
                                     os.path.join(work, "perf.data")], stderr=subprocess.DEVNULL)
    elif phase == "perf-p":
        profiler = subprocess.Popen(["perf", "record", "-F", "99", "-g", "-q", "-p", str(workload.pid),
                                     "-o", os.path.join(work, "perf.data")], stderr=subprocess.DEVNULL)
    profiler_cpu_before = cpu_seconds(profiler.pid) if profiler else 0
    _, _, usage = os.wait4(workload.pid, 0)
    elapsed = time.time() - started
    profiler_cpu = 0.0
    if profiler:
        profiler_cpu = cpu_seconds(profiler.pid) - profiler_cpu_before
        profiler.send_signal(signal.SIGINT)  # both write their files and exit
        try:
            profiler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            profiler.kill()
            profiler.wait()
    return usage.ru_utime + usage.ru_stime, elapsed, profiler_cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loupe", default="build/loupe")
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="loupe-profile-bench-")
    binary = os.path.join(work, "split-bench")
    subprocess.run(["clang", "-O2", "-fno-omit-frame-pointer", "-o", binary, SPLIT_C], check=True)
    phases = ["none", "loupe-19", "loupe-49", "loupe-99", "perf-a", "perf-p"]
    if shutil.which("perf") is None:
        phases = [p for p in phases if not p.startswith("perf")]
    results = {p: [] for p in phases}
    cpus = os.cpu_count()
    for _ in range(args.repeats):
        order = phases[:]
        random.shuffle(order)
        for phase in order:
            results[phase].append(run_trial(phase, binary, args.rounds, args.loupe, work))
    base = statistics.median(r[0] for r in results["none"])
    print(f"{args.rounds} rounds, {args.repeats} trials per phase, {cpus} CPUs; medians")
    print(f"{'phase':10} {'workload CPU s':>15} {'vs none':>8} {'elapsed s':>10} {'profiler CPU s':>15} {'% machine':>10}")
    for phase in phases:
        work_cpu = statistics.median(r[0] for r in results[phase])
        elapsed = statistics.median(r[1] for r in results[phase])
        prof = statistics.median(r[2] for r in results[phase])
        share = 100 * statistics.median(r[2] / (r[1] * cpus) for r in results[phase])
        print(f"{phase:10} {work_cpu:15.3f} {100 * (work_cpu / base - 1):+7.1f}% {elapsed:10.2f} "
              f"{prof:15.3f} {share:9.2f}%")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
