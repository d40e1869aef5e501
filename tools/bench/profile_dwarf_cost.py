#!/usr/bin/env python3
"""The cost of DWARF-mode profiling per sample, against frame pointers, on the same busy process:
tests/e2e/profile/split.c built gcc -O2 -fomit-frame-pointer, profiled by `loupe profile --unwind
fp|dwarf` for --seconds at --frequency. Per mode, medians of --repeats:
- loupe's own CPU (user + system, from wait4), per sample kept (the whole run: start-up, reading
  /proc/kallsyms and the ELF files, unwinding, naming);
- the BPF program's run time per run (kernel.bpf_stats_enabled=1, bpftool's run_time_ns /
  run_cnt of this loupe's sample_stack program, read just before the run ends).
Run as root, alone under the BPF lock:
    flock /tmp/loupe-bpf.lock python3 tools/bench/profile_dwarf_cost.py --repeats 3"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def bpf_run_stats(loupe_pid):
    """run_time_ns and run_cnt of this loupe's sample_stack program: by the pid bpftool names as
    its holder, else the newest program of that name."""
    progs = json.loads(subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True,
                                      text=True, check=True).stdout)
    mine = [p for p in progs if p.get("name") == "sample_stack"]
    held = [p for p in mine if any(h.get("pid") == loupe_pid for h in p.get("pids", []))]
    chosen = max(held or mine, key=lambda p: p["id"], default=None)
    if not chosen:
        return 0, 0
    return chosen.get("run_time_ns", 0), chosen.get("run_cnt", 0)


def trial(loupe, binary, mode, seconds, frequency, work):
    workload = subprocess.Popen([binary, str(seconds + 20)])
    out = os.path.join(work, f"{mode}.folded")
    try:
        time.sleep(0.5)
        proc = subprocess.Popen([loupe, "profile", "--pid", str(workload.pid), "--duration",
                                 f"{seconds}s", "--frequency", str(frequency), "--unwind", mode,
                                 "--output", out], stderr=subprocess.PIPE, text=True)
        stats = {}

        def sample_stats():
            time.sleep(seconds - 1)
            stats["bpf"] = bpf_run_stats(proc.pid)
        reader = threading.Thread(target=sample_stats)
        reader.start()
        _, status, usage = os.wait4(proc.pid, 0)
        stderr = proc.stderr.read()
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join()
        if proc.returncode != 0:
            raise SystemExit(f"loupe profile --unwind {mode} failed: {stderr}")
    finally:
        workload.kill()
        workload.wait()
    with open(out) as f:
        samples = sum(int(line.rsplit(" ", 1)[1]) for line in f if line.strip())
    run_time, run_cnt = stats.get("bpf", (0, 0))
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "samples": samples,
            "bpf_ns_per_run": run_time / run_cnt if run_cnt else float("nan"),
            "quality": next((l for l in stderr.splitlines() if "unwind quality" in l), "")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loupe", default=os.path.join(REPO, "build", "loupe"))
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--frequency", type=int, default=99)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="loupe-dwarf-bench-")
    binary = os.path.join(work, "split")
    subprocess.run(["gcc", "-O2", "-fomit-frame-pointer", "-o", binary,
                    os.path.join(REPO, "tests", "e2e", "profile", "split.c")], check=True)
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        stats_before = f.read().strip()
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    try:
        results = {"fp": [], "dwarf": []}
        for _ in range(args.repeats):
            for mode in results:
                results[mode].append(trial(args.loupe, binary, mode, args.seconds, args.frequency,
                                           work))
    finally:
        subprocess.run(["sysctl", "-q", f"kernel.bpf_stats_enabled={stats_before}"], check=True)
    print(f"| --unwind | samples | loupe CPU s ({args.seconds} s) | loupe CPU µs/sample | "
          f"BPF ns/run |")
    print("|---|---|---|---|---|")
    medians = {}
    for mode, trials in results.items():
        cpu = statistics.median(t["cpu_s"] for t in trials)
        samples = statistics.median(t["samples"] for t in trials)
        bpf = statistics.median(t["bpf_ns_per_run"] for t in trials)
        medians[mode] = (cpu, samples)
        print(f"| {mode} | {samples:.0f} | {cpu:.3f} | {1e6 * cpu / samples:.0f} | {bpf:.0f} |")
    # Start-up (kallsyms, ELF files) is the same in both modes: the difference is the unwinding.
    extra = medians["dwarf"][0] - medians["fp"][0]
    print(f"DWARF mode's extra loupe CPU: {extra:.3f} s, {1e6 * extra / medians['dwarf'][1]:.0f} "
          "µs per sample")
    for mode, trials in results.items():
        print(mode, trials[-1]["quality"])


if __name__ == "__main__":
    main()
