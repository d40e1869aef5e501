#!/usr/bin/env python3
"""The capture's event budget, so that a regression in the kernel's per-request cost fails CI and
not only a benchmark: on nginx's keep-alive connections (its default page: the request read, the
headers' writev and the body's sendfile), the kernel sends at most 2 events per exchange (the
read, and the write joined with the sendfile), and per Redis command at -P 1 at most 2 (the
command read, the reply written). Counted by loupe_events_total against the servers' own counts
(nginx's access log, redis-server's total_commands_processed); the connections' open and close
events, and 1 % for nginx's sendfiles that follow their writev just after the batch holding it
left for user space (a sendfile joins the event before it only while it is in the CPU's batch)."""
import subprocess
import sys

from loupe_e2e import Agent, Nginx, fail, metric, parse_metrics, require_root, require_tools

sys.path.insert(0, __import__("os").path.dirname(__file__))
from test_redis import RedisServer  # noqa: E402

CONNECTIONS = 8


def events(agent):
    agent.settle(1.0)
    return metric(parse_metrics(agent.metrics_text()), "loupe_events_total")


def check(name, got_events, exchanges, per_exchange):
    budget = int(per_exchange * exchanges * 1.01) + 2 * CONNECTIONS + 4
    print(f"{name}: {got_events:.0f} events for {exchanges} exchanges "
          f"({got_events / exchanges:.3f} an exchange; budget {per_exchange} + open/close)")
    if exchanges < 2000:
        fail(f"{name}: too little traffic to be meaningful: {exchanges}")
    if got_events > budget:
        fail(f"{name}: {got_events:.0f} events for {exchanges} exchanges exceeds the budget of "
             f"{budget} ({per_exchange} an exchange)")


def main():
    require_root()
    require_tools("wrk", "redis-server", "redis-benchmark")
    nginx = Nginx(workers=1)
    redis = RedisServer()
    # Only the servers are traced: the clients' events are theirs, not the budget's.
    agent = Agent("--comm", "nginx", "--comm", "redis-server")
    try:
        before = events(agent)
        subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", "-d2s", nginx.url("/")],
                       capture_output=True, check=True)
        after_nginx = events(agent)
        requests = len(nginx.access_log())
        check("nginx", after_nginx - before, requests, 2)

        c0 = int(redis.info("stats")["total_commands_processed"])
        subprocess.run(["redis-benchmark", "-p", str(redis.port), "-t", "get,set", "-n", "6000",
                        "-P", "1", "-c", str(CONNECTIONS), "-q"], capture_output=True, check=True)
        commands = int(redis.info("stats")["total_commands_processed"]) - c0 - 1  # INFO itself
        after_redis = events(agent)
        check("redis-server", after_redis - after_nginx, commands, 2)
    finally:
        agent.stop()
        nginx.stop()
        redis.stop()
    print("event budget: OK")


if __name__ == "__main__":
    main()
