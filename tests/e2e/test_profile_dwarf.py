#!/usr/bin/env python3
"""loupe profile --unwind dwarf on a program built without frame pointers: the known-split program
of test_profile.py (3/4 of its CPU in burn_heavy, 1/4 in burn_light, both called by run_split from
main), built with gcc -O2 -fomit-frame-pointer. Three profiles of the same process run side by
side for the same seconds:
- loupe in DWARF mode: each function's share within 5 points of the truth, and the samples of both
  functions have the callers main -> run_split; the unwind quality it prints is good;
- loupe in frame-pointer mode, to prove the test discriminates: the unwind quality it prints says
  most user stacks have 2 frames or fewer, and the callers are mostly missing;
- `perf record --call-graph dwarf` (the independent oracle): its caller chains of burn_heavy and
  burn_light are the ones loupe found.
Then the agent's per-service opt-in: `loupe agent --comm split --profile-dwarf split` serves the
right callers, and its unwind-quality metrics (loupe_profile_user_stacks_total and
loupe_profile_shallow_stacks_total by unwind mode) show DWARF-mode stacks of full depth."""
import collections
import os
import re
import subprocess
import tempfile
import time
import urllib.request

from loupe_e2e import Agent, fail, metric, parse_metrics, require_root, require_tools

LOUPE = os.environ.get("LOUPE_BIN", "build/loupe")
HERE = os.path.dirname(os.path.abspath(__file__))
SECONDS = 8
FREQUENCY = "497"  # as test_profile.py: ~1000 samples even on a busy machine
HOT = ("burn_heavy", "burn_light")


def folded_stacks(path):
    stacks = collections.Counter()
    with open(path) as f:
        for line in f:
            stack, count = line.rstrip("\n").rsplit(" ", 1)
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def callers_of_hot(stacks):
    """(leaf, its two callers) -> samples, for the samples whose leaf is a hot function."""
    chains = collections.Counter()
    for frames, count in stacks.items():
        if frames[-1] in HOT:
            chains[(frames[-1],) + tuple(frames[-3:-1])] += count
    return chains


def unwind_quality(stderr):
    m = re.search(r"unwind quality \((\w[\w ]*)\): ([\d.]+)% of user stacks have 2 frames or fewer",
                  stderr)
    if not m:
        fail(f"loupe profile printed no unwind quality:\n{stderr}")
    return float(m.group(2))


def perf_chains(perf_data):
    """The same (leaf, two callers) chains from perf's own DWARF unwinding."""
    script = subprocess.run(["perf", "script", "-i", perf_data, "-F", "ip,sym"],
                            capture_output=True, text=True, timeout=120)
    if script.returncode != 0:
        fail(f"perf script failed: {script.stderr[-2000:]}")
    chains = collections.Counter()
    samples = 0
    for block in script.stdout.split("\n\n"):
        frames = [(m.group(1), m.group(2))
                  for m in re.finditer(r"^\s*([0-9a-f]+)\s+(\S+)", block, re.M)]
        if not frames:
            continue
        samples += 1
        # The user stack only (kernel frames come first when the sample hit an interrupt).
        frames = [sym.split("+")[0] for ip, sym in frames if not ip.startswith("ffff")]
        if not frames:
            continue
        if frames[0] in HOT:  # perf lists the leaf first
            chains[(frames[0], frames[2] if len(frames) > 2 else "", frames[1] if len(frames) > 1 else "")] += 1
    return samples, chains


def main():
    require_root()
    require_tools("gcc", "perf")
    work = tempfile.mkdtemp(prefix="loupe-profile-dwarf-")
    binary = os.path.join(work, "split")
    subprocess.run(["gcc", "-O2", "-fomit-frame-pointer", "-o", binary,
                    os.path.join(HERE, "profile", "split.c")], check=True)
    workload = subprocess.Popen([binary, str(SECONDS + 30)])
    outputs = {mode: os.path.join(work, f"{mode}.folded") for mode in ("dwarf", "fp")}
    perf_data = os.path.join(work, "perf.data")
    try:
        runs = {mode: subprocess.Popen(
            [LOUPE, "profile", "--pid", str(workload.pid), "--duration", f"{SECONDS}s",
             "--frequency", FREQUENCY, "--unwind", mode, "--output", path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for mode, path in outputs.items()}
        perf = subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", FREQUENCY, "--call-graph", "dwarf,16384",
             "-p", str(workload.pid), "-o", perf_data, "--", "sleep", str(SECONDS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        results = {mode: r.communicate(timeout=60) + (r.returncode,) for mode, r in runs.items()}
        perf_out, perf_err = perf.communicate(timeout=60)
        for mode, (out, err, code) in results.items():
            if code != 0:
                fail(f"loupe profile --unwind {mode} exited {code}: {err}")
        if perf.returncode != 0:
            fail(f"perf record exited {perf.returncode}: {perf_err[-2000:]}")
    finally:
        workload.kill()
        workload.wait()

    # DWARF mode: shares and callers.
    dwarf = folded_stacks(outputs["dwarf"])
    total = sum(dwarf.values())
    if total < 400:
        fail(f"only {total} DWARF-mode samples in {SECONDS} s at {FREQUENCY} Hz of a busy process")
    leaf_counts = collections.Counter()
    for frames, count in dwarf.items():
        leaf_counts[frames[-1]] += count
    heavy = 100.0 * leaf_counts["burn_heavy"] / total
    light = 100.0 * leaf_counts["burn_light"] / total
    chains = callers_of_hot(dwarf)
    hot_samples = sum(chains.values())
    right = sum(c for (leaf, *callers), c in chains.items() if callers == ["main", "run_split"])
    dwarf_shallow = unwind_quality(results["dwarf"][1])
    print("loupe profile --unwind dwarf said:", results["dwarf"][1].strip().replace("\n", " | "))
    print(f"dwarf: {total} samples, burn_heavy {heavy:.1f}%, burn_light {light:.1f}%, "
          f"right callers {right}/{hot_samples}, shallow {dwarf_shallow:.1f}%")
    if abs(heavy - 75) > 5 or abs(light - 25) > 5:
        fail(f"DWARF-mode shares {heavy:.1f}% / {light:.1f}%, expected 75% / 25% within 5 points: "
             f"{dwarf.most_common(8)}")
    if right < 0.95 * hot_samples:
        fail(f"only {right} of {hot_samples} burn_* samples have main -> run_split as callers: "
             f"{chains.most_common(8)}")
    for leaf in HOT:
        if chains[(leaf, "main", "run_split")] == 0:
            fail(f"no DWARF-mode sample of main -> run_split -> {leaf}: {chains.most_common(8)}")
    if dwarf_shallow > 10:
        fail(f"DWARF mode: {dwarf_shallow:.1f}% of user stacks have 2 frames or fewer")

    # Frame-pointer mode on the same binary: the quality figure shows the stacks are cut short.
    fp = folded_stacks(outputs["fp"])
    fp_chains = callers_of_hot(fp)
    fp_right = sum(c for (leaf, *callers), c in fp_chains.items() if callers == ["main", "run_split"])
    fp_hot = sum(fp_chains.values())
    fp_shallow = unwind_quality(results["fp"][1])
    print(f"fp: {sum(fp.values())} samples, right callers {fp_right}/{fp_hot}, "
          f"shallow {fp_shallow:.1f}%")
    if fp_shallow < 50:
        fail(f"frame-pointer mode on a binary without frame pointers: only {fp_shallow:.1f}% "
             f"shallow stacks; the test does not discriminate: {fp.most_common(5)}")
    if fp_hot and fp_right > 0.5 * fp_hot:
        fail(f"frame-pointer mode found the callers of {fp_right}/{fp_hot} samples without frame "
             "pointers: the test does not discriminate")

    # perf's DWARF unwinding of the same process: the same caller chains.
    perf_samples, perf_found = perf_chains(perf_data)
    perf_hot = sum(perf_found.values())
    print(f"perf: {perf_samples} samples, chains of burn_*: {perf_found.most_common(4)}")
    if perf_hot < 100:
        fail(f"perf record found only {perf_hot} burn_* samples of {perf_samples}")
    for leaf in HOT:
        perf_top = max(((c, chain) for chain, c in perf_found.items() if chain[0] == leaf),
                       default=(0, None))[1]
        loupe_top = max(((c, chain) for chain, c in chains.items() if chain[0] == leaf),
                        default=(0, None))[1]
        if perf_top != loupe_top:
            fail(f"{leaf}: perf's main caller chain is {perf_top}, loupe's {loupe_top}")
    perf_right = sum(c for (leaf, *callers), c in perf_found.items() if callers == ["main", "run_split"])
    if perf_right < 0.9 * perf_hot:
        fail(f"perf itself finds main -> run_split for only {perf_right}/{perf_hot} samples")

    check_agent(binary)
    print("PASS")


def agent_folded(agent):
    with urllib.request.urlopen(
            agent.url("/api/v1/services/split/profile?seconds=60&format=folded"), timeout=10) as r:
        stacks = collections.Counter()
        for line in r.read().decode().splitlines():
            stack, count = line.rsplit(" ", 1)
            stacks[tuple(stack.split(";"))] += int(count)
        return stacks


def check_agent(binary):
    os.environ["LOUPE_LOG_LEVEL"] = "debug"  # why DWARF unwinding stopped, should it
    agent = Agent("--comm", "split", "--profile-frequency", "199", "--profile-dwarf", "split")
    workload = subprocess.Popen([binary, "30"])
    try:
        # The agent opts a process in when it first names it, a second or two after it starts:
        # its first samples are frame-pointer ones. Only the samples added after that are judged.
        time.sleep(4)
        before = agent_folded(agent)
        time.sleep(5)
        after = agent_folded(agent)
        samples = parse_metrics(agent.metrics_text())
    finally:
        workload.kill()
        workload.wait()
        agent.stop()
    chains = callers_of_hot(after - before)
    hot = sum(chains.values())
    right = sum(c for (leaf, *callers), c in chains.items() if callers == ["main", "run_split"])
    dwarf_stacks = metric(samples, "loupe_profile_user_stacks_total", unwind="dwarf")
    dwarf_shallow = metric(samples, "loupe_profile_shallow_stacks_total", unwind="dwarf")
    fp_stacks = metric(samples, "loupe_profile_user_stacks_total", unwind="fp")
    print(f"agent: burn_* right callers {right}/{hot} in the last 5 s; user stacks dwarf "
          f"{dwarf_stacks} (shallow {dwarf_shallow}), fp {fp_stacks}")
    if hot < 150 or right < 0.95 * hot:
        stops = [line for line in agent.logs().splitlines() if "DWARF unwinding" in line]
        fail(f"agent with --profile-dwarf split: {right} of {hot} burn_* samples have the callers "
             f"main -> run_split: {chains.most_common(6)}\n" + "\n".join(stops[-5:]))
    if dwarf_stacks < 200 or dwarf_shallow > 0.1 * dwarf_stacks:
        fail(f"agent: {dwarf_shallow} of {dwarf_stacks} DWARF-mode user stacks are shallow")


if __name__ == "__main__":
    main()
