#!/usr/bin/env python3
"""End-to-end overhead: nginx serving its default page to `wrk -t2 -c50`, alternating runs without
and with a loupe agent attached, N pairs; prints each run, the median throughput ratio
(with / without), and completeness (requests loupe counted vs nginx's access log, drops).

    sudo python3 tools/bench/overhead.py [--pairs 5] [--seconds 10] [--path /] [--all-processes]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import Agent, Nginx, select  # noqa: E402


def wrk(url, seconds):
    out = subprocess.run(["wrk", "-t2", "-c50", f"-d{seconds}s", url], capture_output=True, text=True,
                         check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), int(re.search(r"(\d+) requests in", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--path", default="/", help="/ (nginx's default page, sendfile: the default), /ok (a "
                    "'return 200' location: the most requests per second), /static/blob.bin (20 KB)")
    ap.add_argument("--workers", type=int, default=2, help="nginx worker processes (2 = one per core)")
    ap.add_argument("--all-processes", action="store_true",
                    help="trace every process (the agent's default) instead of --comm nginx; wrk is then "
                         "traced too and pays for its own syscalls")
    ap.add_argument("--agent-arg", action="append", default=[],
                    help="extra agent argument, repeatable (e.g. --agent-arg=--disable-hooks=sched_switch)")
    args = ap.parse_args()
    nginx = Nginx(workers=args.workers)
    url = nginx.url(args.path)
    ratios, bases, traceds, rows = [], [], [], []
    try:
        wrk(url, 2)  # warm-up
        for i in range(args.pairs):
            # ABBA order (without/with, then with/without): a drift of the host's speed during
            # the benchmark weighs on both sides alike.
            if i % 2 == 0:
                base, _ = wrk(url, args.seconds)
            agent = Agent(*args.agent_arg) if args.all_processes else Agent("--comm", "nginx", *args.agent_arg)
            # Steady state: the agent's one-off work after it reports ready (its kernel-feature
            # probe, ~0.1 s of CPU) is not what a running node pays.
            agent.settle(1.0)
            log_path = f"{nginx.work}/access.log"
            offset = os.path.getsize(log_path)
            traced, _ = wrk(url, args.seconds)
            agent.settle(1.0)
            samples = agent.metrics()
            with open(log_path, "rb") as f:  # only the new lines: the log grows by millions
                f.seek(offset)
                logged = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            counted = sum(v for _, v in select(samples, "http_server_request_duration_seconds_count",
                                               service_name="nginx"))
            drops = sum(v for _, v in select(samples, "loupe_events_dropped_total"))
            reasons = {l["reason"]: int(v) for l, v in select(samples, "loupe_events_dropped_total") if v}
            rss = select(samples, "loupe_resident_memory_bytes")[0][1]
            agent.stop()
            if i % 2 == 1:
                base, _ = wrk(url, args.seconds)
            ratios.append(traced / base)
            bases.append(base)
            traceds.append(traced)
            rows.append((i + 1, base, traced, traced / base, logged, int(counted), int(drops), rss / 2**20))
            print(f"pair {i + 1}: without {base:.0f} req/s, with {traced:.0f} req/s, ratio {traced / base:.3f}; "
                  f"access log {logged}, loupe {int(counted)}, drops {int(drops)}{' ' + str(reasons) if reasons else ''}, "
                  f"agent RSS {rss / 2**20:.1f} MiB",
                  flush=True)
    finally:
        nginx.stop()
    print(f"median ratio over {args.pairs} pairs: {statistics.median(ratios):.3f} "
          f"(median with / median without: {statistics.median(traceds) / statistics.median(bases):.3f})")
    complete = all(r[4] == r[5] and r[6] == 0 for r in rows)
    print("completeness: " + ("every traced run counted exactly the access log's requests, 0 drops" if complete
                              else "MISMATCH (see rows above)"))


if __name__ == "__main__":
    main()
