#!/usr/bin/env python3
"""loupe profile on a known split: a C program (clang -O2 -fno-omit-frame-pointer) spends 3/4 of
its CPU time in burn_heavy and 1/4 in burn_light, both called by run_split from main. Three
profiles of it run side by side (pprof, folded, SVG) and a fourth prints the top functions:
- folded: each function's share of samples within 5 points of the truth; every sample of a burn
  function has the chain main -> run_split -> burn_*;
- pprof: `go tool pprof -top` (an independent reader of the format) reads it and finds the same
  split;
- SVG: parses as XML and names both functions;
- top: lists both functions with their self share."""
import gzip
import os
import re
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from loupe_e2e import fail, require_root, require_tools

LOUPE = os.environ.get("LOUPE_BIN", "build/loupe")
HERE = os.path.dirname(os.path.abspath(__file__))
DURATION = "8s"
# Above the CLI's 99 Hz default: enough samples for a 5-point tolerance even when the machine is
# busy and the workload gets a fraction of a CPU (1000 samples: one standard deviation is 1.4 points).
FREQUENCY = "497"


def shares_from_folded(text):
    total = 0
    self_counts = {}
    chains_ok = 0
    chains_bad = []
    for line in text.splitlines():
        stack, count = line.rsplit(" ", 1)
        count = int(count)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        self_counts[leaf] = self_counts.get(leaf, 0) + count
        if leaf in ("burn_heavy", "burn_light"):
            if frames[-3:-1] == ["main", "run_split"]:
                chains_ok += count
            else:
                chains_bad.append((stack, count))
    return total, self_counts, chains_ok, chains_bad


def main():
    require_root()
    require_tools("clang", "go")
    work = tempfile.mkdtemp(prefix="loupe-profile-")
    binary = os.path.join(work, "split")
    subprocess.run(["clang", "-O2", "-fno-omit-frame-pointer", "-o", binary,
                    os.path.join(HERE, "profile", "split.c")], check=True)
    workload = subprocess.Popen([binary, "30"])
    try:
        outputs = {ext: os.path.join(work, "profile" + ext) for ext in (".folded", ".pb.gz", ".svg")}
        runs = [subprocess.Popen([LOUPE, "profile", "--pid", str(workload.pid), "--duration", DURATION, "--frequency", FREQUENCY,
                                  "--output", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for path in outputs.values()]
        runs.append(subprocess.Popen([LOUPE, "profile", "--pid", str(workload.pid), "--duration", DURATION,
                                      "--frequency", FREQUENCY],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = [r.communicate(timeout=40) + (r.returncode,) for r in runs]
        for out, err, code in results:
            if code != 0:
                fail(f"loupe profile exited {code}: {err}")
    finally:
        workload.kill()
        workload.wait()

    # Folded: shares and callers.
    with open(outputs[".folded"]) as f:
        folded = f.read()
    total, self_counts, chains_ok, chains_bad = shares_from_folded(folded)
    if total < 400:
        fail(f"only {total} samples in {DURATION} at {FREQUENCY} Hz of a busy process:\n{folded[:2000]}")
    heavy = 100.0 * self_counts.get("burn_heavy", 0) / total
    light = 100.0 * self_counts.get("burn_light", 0) / total
    print(f"folded: {total} samples, burn_heavy {heavy:.1f}%, burn_light {light:.1f}%, "
          f"right chain {chains_ok}, other {sum(c for _, c in chains_bad)}")
    if abs(heavy - 75) > 5 or abs(light - 25) > 5:
        fail(f"shares {heavy:.1f}% / {light:.1f}%, expected 75% / 25% within 5 points:\n{folded[:3000]}")
    bad = sum(c for _, c in chains_bad)
    if bad > 0.02 * total:
        fail(f"{bad} samples of burn_* without main;run_split as callers: {chains_bad[:5]}")

    # pprof, read by go tool pprof.
    with gzip.open(outputs[".pb.gz"]) as f:
        if len(f.read()) == 0:
            fail("empty pprof file")
    top = subprocess.run(["go", "tool", "pprof", "-top", "-sample_index=samples", outputs[".pb.gz"]],
                         capture_output=True, text=True, timeout=60)
    if top.returncode != 0:
        fail(f"go tool pprof -top failed: {top.stderr}")
    flat = {}
    for line in top.stdout.splitlines():
        m = re.match(r"\s*(\d+)\s+([\d.]+)%\s+[\d.]+%\s+\d+\s+[\d.]+%\s+(\S+)", line)
        if m:
            flat[m.group(3)] = float(m.group(2))
    print("go tool pprof -top:", flat)
    if abs(flat.get("burn_heavy", 0) - 75) > 5 or abs(flat.get("burn_light", 0) - 25) > 5:
        fail(f"go tool pprof sees another split:\n{top.stdout}")
    tree = subprocess.run(["go", "tool", "pprof", "-traces", outputs[".pb.gz"]],
                          capture_output=True, text=True, timeout=60)
    if not re.search(r"burn_heavy\s*\n\s*run_split\s*\n\s*main", tree.stdout):
        fail(f"go tool pprof -traces shows no main -> run_split -> burn_heavy trace:\n{tree.stdout[:2000]}")

    # SVG: well-formed XML naming both functions.
    try:
        svg = ET.parse(outputs[".svg"]).getroot()
    except ET.ParseError as e:
        fail(f"the flame graph is not XML: {e}")
    titles = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title"))
    for name in ("burn_heavy", "burn_light", "run_split", "main"):
        if name not in titles:
            fail(f"the flame graph does not name {name}")
    if svg.find("{http://www.w3.org/2000/svg}script") is None:
        fail("the flame graph has no script (zoom, search)")

    # Top functions.
    out = results[3][0]
    rows = {m.group(3): float(m.group(1)) for m in
            re.finditer(r"^\s*([\d.]+)%\s+([\d.]+)%\s+(\S+)", out, re.M)}
    print("top:", rows)
    if abs(rows.get("burn_heavy", 0) - 75) > 5 or abs(rows.get("burn_light", 0) - 25) > 5:
        fail(f"top functions show another split:\n{out}")
    print("PASS")


if __name__ == "__main__":
    main()
