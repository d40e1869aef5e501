#!/usr/bin/env python3
"""Agent memory under the storms of tests/e2e/test_memory_storms.py, measured without asserting,
so that any build (an older one too) can be compared:

    sudo python3 tools/bench/memory_storms.py [--bin build/loupe] [--names 6000] [--spread-seconds 12]

Prints, after each storm, the /metrics size and time of 8 scrapes and the agent's RSS after the
first and the eighth."""
import argparse
import asyncio
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
import loupe_e2e  # noqa: E402
from test_memory_storms import SPREAD_SERVER, name_storm, spread_load  # noqa: E402


def scrapes(agent, label):
    rss = []
    for i in range(8):
        started = time.monotonic()
        with urllib.request.urlopen(agent.url("/metrics"), timeout=120) as r:
            size = len(r.read())
        took = time.monotonic() - started
        rss.append(loupe_e2e.proc_status_bytes(agent.proc.pid, "VmRSS"))
        if i in (0, 7):
            print(f"{label}: scrape {i + 1}: {size / 1e6:.1f} MB in {took:.2f} s, "
                  f"agent RSS {rss[-1] / 2**20:.1f} MiB", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=loupe_e2e.LOUPE)
    parser.add_argument("--names", type=int, default=6000)
    parser.add_argument("--spread-seconds", type=int, default=12)
    args = parser.parse_args()
    loupe_e2e.LOUPE = args.bin
    agent = loupe_e2e.Agent()
    print(f"idle: agent RSS {loupe_e2e.proc_status_bytes(agent.proc.pid, 'VmRSS') / 2**20:.1f} MiB")
    name_storm(args.names)
    time.sleep(3.5)
    scrapes(agent, f"{args.names} names")
    server = loupe_e2e.Workload("loupe_spread", SPREAD_SERVER)
    sent = asyncio.run(spread_load(int(server.readline()), args.spread_seconds))
    time.sleep(1.0)
    scrapes(agent, f"latency spread ({sent} requests)")
    agent.stop()


if __name__ == "__main__":
    main()
