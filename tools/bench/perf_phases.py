#!/usr/bin/env python3
"""Where loupe's cost lands, per request: nginx serving its default page to one long
`wrk -t2 -c50` run, with one agent whose hooks are detached (SIGUSR1) and attached (SIGUSR2) in
alternate phases, as in overhead_paused.py; `perf record -a` samples every CPU in each phase. Prints
the CPU time per request (from the samples) of nginx, wrk and the agent, split into

  loupe-only   kernel functions that run only while loupe's hooks are attached: the BPF programs,
               the helpers they call and the tracepoint dispatch (a function is loupe-only when
               the phases without hooks hold under 5 % of its samples in the phases with them);
  kernel       the rest of the process's kernel time (samples taken while interrupts are off
               land at the next point where they are on: the sched_switch program shows up in
               finish_task_switch, inside this line);
  user         the process's own code;

with the median over the pairs of phases of each line, with and without hooks, and their
difference. Why: on a shared VM the throughput ratio swings by several per cent from minute to
minute, while these per-request figures (direct costs especially) repeat within a few per cent;
the gap between the total difference and the direct costs is the indirect cost (caches, the
agent's thread taking turns with nginx's).

    sudo python3 tools/bench/perf_phases.py [--pairs 4] [--phase 6] [--agent-arg=...]

With --reference SCRIPT.bt, loupe's hooks stay detached and the phases alternate between that
bpftrace script running and not (see overhead_paused.py): the lines then say what the reference
costs, "bpftrace-only" in place of "loupe-only".
"""
import argparse
import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from paused_load import PausedLoad  # noqa: E402

SAMPLE_HZ = 2999  # not a multiple of the kernel's tick: samples do not lock onto its timers


def samples_by_symbol(data):
    """{(comm, symbol, is_kernel): samples} of a perf.data file."""
    out = subprocess.check_output(["perf", "report", "-i", data, "--stdio", "-n", "--sort", "comm,sym"],
                                  stderr=subprocess.DEVNULL, text=True)
    counts = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if m and not line.startswith("#"):
            counts[(m.group(2), m.group(4).strip(), m.group(3) == "k")] += int(m.group(1))
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--phase", type=float, default=6.0, help="seconds sampled in each phase")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds left out after each switch")
    ap.add_argument("--agent-arg", action="append", default=[])
    ap.add_argument("--reference", metavar="SCRIPT.bt",
                    help="measure this bpftrace script instead of loupe's hooks (which stay detached)")
    args = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("perf_phases.py needs perf (Debian: apt-get install linux-perf)")
    work = tempfile.mkdtemp(prefix="loupe-perf-phases-")
    phases = []  # (with_hooks, requests, perf.data)
    tracer = "bpftrace" if args.reference else "loupe"
    with PausedLoad(args.pairs * 2 * (args.phase + args.settle + 4), agent_args=args.agent_arg,
                    reference=args.reference) as load:
        for i in range(args.pairs * 2):
            on = (i % 4) in (1, 2)  # ABBA order, as in overhead_paused.py
            load.switch(on and not args.reference, args.settle, reference=on and bool(args.reference))
            data = os.path.join(work, f"phase{i}.data")
            subprocess.run(["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", str(SAMPLE_HZ), "-o", data,
                            "--", "sleep", str(args.phase)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            phases.append((on, load.served(), data))

    counts = [(hooks, requests, samples_by_symbol(data)) for hooks, requests, data in phases]
    shutil.rmtree(work, ignore_errors=True)
    with_total = collections.Counter()
    without_total = collections.Counter()
    for hooks, _, c in counts:
        (with_total if hooks else without_total).update(c)
    loupe_only = {key for key, n in with_total.items()
                  if key[2] and without_total[key] < 0.05 * n}

    def line_of(key):
        comm, symbol, kernel = key
        if comm.startswith("loupe"):
            return "agent (all)"
        if comm not in ("nginx", "wrk"):
            return "other processes"
        if key in loupe_only:
            return f"{comm} {tracer}-only"
        return f"{comm} {'kernel' if kernel else 'user'}"

    per_phase = []  # (hooks, {line: us per request})
    for hooks, requests, c in counts:
        lines = collections.Counter()
        for key, n in c.items():
            lines[line_of(key)] += n / SAMPLE_HZ * 1e6 / max(requests, 1)
        lines["total"] = sum(lines.values())
        per_phase.append((hooks, lines, requests / args.phase))

    order = [f"nginx {tracer}-only", "nginx kernel", "nginx user", f"wrk {tracer}-only", "wrk kernel", "wrk user",
             "agent (all)", "other processes", "total"]
    print("µs of CPU per request, median over the phases (with hooks / without / difference)")
    for name in order:
        on = statistics.median(l[name] for h, l, _ in per_phase if h)
        off = statistics.median(l[name] for h, l, _ in per_phase if not h)
        print(f"  {name:<18} {on:8.2f} {off:8.2f} {on - off:+8.2f}")
    ratios = [per_phase[i + 1][2] / per_phase[i][2] if per_phase[i + 1][0] else per_phase[i][2] / per_phase[i + 1][2]
              for i in range(0, len(per_phase) - 1, 2)]
    print(f"throughput ratio per pair: {' '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")
    print(f"{tracer}-only kernel functions, µs per request with hooks (top 12):")
    requests_on = sum(r for h, r, _ in counts if h)
    top = sorted(((n, key) for key, n in with_total.items() if key in loupe_only), reverse=True)[:12]
    for n, (comm, symbol, _) in top:
        print(f"  {n / SAMPLE_HZ * 1e6 / requests_on:6.3f}  {comm:<6} {symbol}")


if __name__ == "__main__":
    main()
