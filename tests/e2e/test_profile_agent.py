#!/usr/bin/env python3
"""The agent's continuous CPU profiling: `loupe agent --comm split --profile-frequency 199` with the
3:1 split workload running. After a few seconds:
- /api/v1/services/split/profile?format=folded has burn_heavy and burn_light under
  main;run_split, at their 3:1 shares (within 8 points: fewer samples than the CLI test);
- format=top (loupe top's drill-down) lists both functions at their shares;
- format=pprof is read by `go tool pprof -top`; format=svg parses as XML and names both;
- loupe_profile_samples_total counts the samples, loupe_profile_lost_samples_total is exported
  (promtool accepts the exposition);
- bad input: format=xml and seconds=0 give 400 with a JSON error, an unknown service 404;
- SIGUSR1 (hooks paused) stops the sampling, SIGUSR2 starts it again."""
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

from loupe_e2e import Agent, fail, metric, parse_metrics, promtool_check, require_root, require_tools

HERE = os.path.dirname(os.path.abspath(__file__))


def get(agent, path):
    try:
        with urllib.request.urlopen(agent.url(path), timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def main():
    require_root()
    require_tools("clang", "go")
    work = tempfile.mkdtemp(prefix="loupe-profile-agent-")
    binary = os.path.join(work, "split")
    subprocess.run(["clang", "-O2", "-fno-omit-frame-pointer", "-o", binary,
                    os.path.join(HERE, "profile", "split.c")], check=True)
    agent = Agent("--comm", "split", "--profile-frequency", "199")
    workload = subprocess.Popen([binary, "30"])
    try:
        time.sleep(6)
        status, kind, body = get(agent, "/api/v1/services/split/profile?seconds=60&format=folded")
        if status != 200:
            fail(f"folded profile: {status} {body[:300]!r}\n" + agent.logs()[-3000:])
        total = heavy = light = chained = 0
        for line in body.decode().splitlines():
            stack, count = line.rsplit(" ", 1)
            frames, count = stack.split(";"), int(count)
            total += count
            heavy += count if frames[-1] == "burn_heavy" else 0
            light += count if frames[-1] == "burn_light" else 0
            if frames[-1].startswith("burn_") and frames[-3:-1] == ["main", "run_split"]:
                chained += count
        print(f"agent folded: {total} samples, burn_heavy {heavy}, burn_light {light}, chained {chained}")
        if total < 200:
            fail(f"only {total} samples in 6 s at 199 Hz")
        if abs(100 * heavy / total - 75) > 8 or abs(100 * light / total - 25) > 8:
            fail(f"split {heavy}/{light} of {total}, expected 3:1")
        if chained < 0.97 * (heavy + light):
            fail("burn_* samples without main;run_split")

        status, kind, body = get(agent, "/api/v1/services/split/profile?seconds=30&format=pprof")
        if status != 200:
            fail(f"pprof profile: {status}")
        path = os.path.join(work, "agent.pb.gz")
        with open(path, "wb") as f:
            f.write(body)
        top = subprocess.run(["go", "tool", "pprof", "-top", path], capture_output=True, text=True, timeout=60)
        if top.returncode != 0 or "burn_heavy" not in top.stdout:
            fail(f"go tool pprof -top on the agent's profile: {top.stderr}{top.stdout}")

        status, kind, body = get(agent, "/api/v1/services/split/profile?format=svg")
        if status != 200 or not kind.startswith("image/svg+xml"):
            fail(f"svg profile: {status} {kind}")
        root = ET.fromstring(body)
        titles = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title"))
        if "burn_heavy" not in titles or "burn_light" not in titles:
            fail("the agent's flame graph does not name the functions")

        # loupe profile --service: the agent resolves the service to its processes.
        out = os.path.join(work, "service.folded")
        r = subprocess.run([os.environ.get("LOUPE_BIN", "build/loupe"), "profile", "--service", "split",
                            "--agent", agent.url(""), "--duration", "2s", "--frequency", "199",
                            "--output", out], capture_output=True, text=True, timeout=30)
        if r.returncode != 0 or "burn_heavy" not in open(out).read():
            fail(f"loupe profile --service split: {r.returncode} {r.stderr}")
        r = subprocess.run([os.environ.get("LOUPE_BIN", "build/loupe"), "profile", "--service", "nope",
                            "--agent", agent.url(""), "--duration", "2s"], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 2 or "knows no live process" not in r.stderr:
            fail(f"loupe profile --service nope: {r.returncode} {r.stderr}")
        print("--service:", r.stderr.strip())

        # format=top: what loupe top's drill-down shows.
        status, kind, body = get(agent, "/api/v1/services/split/profile?format=top")
        top = json.loads(body) if status == 200 else {}
        shares = {f["function"]: f["self_share"] for f in top.get("functions", [])}
        print("format=top:", {k: round(v, 3) for k, v in list(shares.items())[:4]})
        if abs(shares.get("burn_heavy", 0) - 0.75) > 0.08 or abs(shares.get("burn_light", 0) - 0.25) > 0.08:
            fail(f"format=top: {status} {body[:500]!r}")

        for query, expected in (("format=xml", 400), ("seconds=0", 400), ("seconds=abc", 400)):
            status, kind, body = get(agent, f"/api/v1/services/split/profile?{query}")
            if status != expected or "error" not in json.loads(body):
                fail(f"?{query}: {status} {body[:200]!r}, expected {expected} and a JSON error")
        status, _, body = get(agent, "/api/v1/services/no-such-service/profile")
        if status != 404:
            fail(f"unknown service: {status}")

        text = agent.metrics_text()
        promtool_check(text)
        samples = parse_metrics(text)
        kept = metric(samples, "loupe_profile_samples_total")
        lost = metric(samples, "loupe_profile_lost_samples_total", reason="kernel_map_full")
        print(f"loupe_profile_samples_total {kept}, lost (kernel_map_full) {lost}")
        if kept < total:
            fail(f"loupe_profile_samples_total {kept} < the {total} samples served")

        # SIGUSR1 stops the sampling (the perf events), SIGUSR2 starts it again.
        status = agent.set_hooks_paused(True)
        if status.get("cpu_profiling", {}).get("frequency_hz") != 199:
            fail(f"/api/v1/agent cpu_profiling: {status.get('cpu_profiling')}")
        time.sleep(1.5)  # the last drain of what was sampled before the pause
        paused_at = metric(parse_metrics(agent.metrics_text()), "loupe_profile_samples_total")
        time.sleep(2.5)
        still = metric(parse_metrics(agent.metrics_text()), "loupe_profile_samples_total")
        if still != paused_at:
            fail(f"paused, yet samples went from {paused_at} to {still}")
        agent.set_hooks_paused(False)
        time.sleep(2.5)
        resumed = metric(parse_metrics(agent.metrics_text()), "loupe_profile_samples_total")
        print(f"pause: {paused_at} -> {still} paused, {resumed} 2.5 s after resuming")
        if resumed <= still:
            fail("resumed, yet no new samples")
    finally:
        workload.kill()
        workload.wait()
        agent.stop()
    print("PASS")


if __name__ == "__main__":
    main()
