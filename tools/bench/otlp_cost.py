#!/usr/bin/env python3
"""Agent CPU per request with OTLP spans at 100 % sampling against no OTLP export: nginx under
wrk (keep-alive, 5 s), the agent traced to nginx only (--comm nginx), a local receiver that
decodes nothing (it answers 200). Alternates the two modes ROUNDS times; prints the medians.
Usage: LOUPE_BIN=build/loupe python3 tools/bench/otlp_cost.py [ROUNDS]"""
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from loupe_e2e import Agent, Nginx, proc_cpu_seconds  # noqa: E402
from otlp_receiver import Receiver  # noqa: E402


def run(otlp, receiver):
    args = ["--comm", "nginx"] + (["--otlp-endpoint", receiver.endpoint] if otlp else [])
    agent = Agent(*args)
    nginx = Nginx(workers=1)
    try:
        before = proc_cpu_seconds(agent.proc.pid)
        out = subprocess.run(["wrk", "-t1", "-c8", "-d5s", nginx.url("/ok")], capture_output=True, text=True,
                             check=True).stdout
        agent.settle(3.5)  # spans held 2 s, then sent
        cpu = proc_cpu_seconds(agent.proc.pid) - before
        requests = int(re.search(r"(\d+) requests in", out).group(1))
    finally:
        nginx.stop()
        agent.stop()
    return cpu / requests * 1e6, requests


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    receiver = Receiver()
    results = {False: [], True: []}
    for _ in range(rounds):
        for otlp in (False, True):
            us, n = run(otlp, receiver)
            results[otlp].append(us)
            print(f"{'otlp' if otlp else 'none'}: {us:.2f} us agent CPU per request ({n} requests)")
    receiver.stop()
    base, with_spans = statistics.median(results[False]), statistics.median(results[True])
    print(f"median: no OTLP {base:.2f} us, OTLP spans 100 % {with_spans:.2f} us, +{with_spans - base:.2f} us")


if __name__ == "__main__":
    main()
