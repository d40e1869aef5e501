#!/usr/bin/env python3
"""Agent memory under two loads against nginx, read from the agent's own /metrics
(loupe_resident_memory_bytes, loupe_series):
  1. 1,000 live series: 1,000 distinct routes, kept alive;
  2. ~1 M distinct URLs from wrk (random paths): the route cap must keep memory bounded.

    sudo python3 tools/bench/memory.py [--urls-seconds 30]
"""
import argparse
import http.client
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import Agent, Nginx, select  # noqa: E402


def figures(agent):
    s = agent.metrics()
    rss = select(s, "loupe_resident_memory_bytes")[0][1] / 2**20
    series = select(s, "loupe_series")[0][1]
    requests = sum(v for _, v in select(s, "http_server_request_duration_seconds_count", service_name="nginx"))
    overflow = select(s, "loupe_http_route_overflow_total")[0][1]
    return rss, int(series), int(requests), int(overflow)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--urls-seconds", type=int, default=30)
    args = ap.parse_args()
    nginx = Nginx(workers=1)
    try:
        agent = Agent("--comm", "nginx", "--max-routes-per-service", "2000")
        print("idle agent: RSS %.1f MiB, %d series" % figures(agent)[:2])
        conn = http.client.HTTPConnection("127.0.0.1", nginx.port)
        for round_ in range(3):
            for i in range(1000):
                conn.request("GET", f"/page/p{i:04d}")
                conn.getresponse().read()
        agent.settle(1.0)
        rss, series, requests, _ = figures(agent)
        print(f"1,000 routes x 3 rounds: {series} series, {requests} requests, RSS {rss:.1f} MiB")
        agent.stop()

        agent = Agent("--comm", "nginx")
        lua = os.path.join(nginx.work, "random.lua")
        with open(lua, "w") as f:
            f.write('request = function() return wrk.format("GET", "/u/" .. math.random(1, 1000000000) .. "x") end\n')
        out = subprocess.run(["wrk", "-t2", "-c20", f"-d{args.urls_seconds}s", "-s", lua, nginx.url("")],
                             capture_output=True, text=True, check=True).stdout
        agent.settle(1.0)
        rss, series, requests, overflow = figures(agent)
        print(f"random URLs for {args.urls_seconds} s: {requests} requests (~distinct URLs), {series} series, "
              f"{overflow} sent to the overflow route, RSS {rss:.1f} MiB")
        agent.stop()
    finally:
        nginx.stop()


if __name__ == "__main__":
    main()
