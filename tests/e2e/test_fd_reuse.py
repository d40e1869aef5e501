#!/usr/bin/env python3
"""fd reuse (coroot-node-agent#372): clients open and close connections as fast as they can, half of
them closing before the answer, so the server's fds are reused constantly. No latency loupe reports
may exceed the test's own wall time, and every answered request is counted."""
import collections
import socket
import threading
import time

from loupe_e2e import Agent, Nginx, diff_counts, fail, normalize_route, require_root, select, server_counts


def hammer(port, stop_at, counts):
    n = 0
    while time.time() < stop_at:
        s = socket.create_connection(("127.0.0.1", port))
        if n % 2:
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
        else:
            # Request then an immediate close: nginx may or may not answer (499 in its log).
            s.sendall(b"GET /users/1 HTTP/1.1\r\nHost: a\r\n\r\n")
        s.close()
        n += 1
    counts.append(n)


def main():
    require_root()
    agent = Agent()
    nginx = Nginx(workers=1)
    started = time.time()
    try:
        counts = []
        threads = [threading.Thread(target=hammer, args=(nginx.port, time.time() + 3, counts)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        agent.settle(1.5)
        samples = agent.metrics()
        log = nginx.access_log()
    finally:
        nginx.stop()
    wall = time.time() - started
    connections = sum(counts)
    # Every exchange of nginx fits in the test's wall time: nothing pairs a request with a much
    # later stranger's response. The histogram's `le` buckets prove it for all samples.
    for labels, count in select(samples, "http_server_request_duration_seconds_count", service_name="nginx"):
        key = {k: v for k, v in labels.items()}
        within = [v for l, v in select(samples, "http_server_request_duration_seconds_bucket", **key)
                  if l.get("le") not in ("+Inf",) and float(l["le"]) >= wall]
        if not within or min(within) != count:
            fail(f"{key}: {count} samples but only {min(within) if within else 0} within {wall:.1f} s")
    for labels, value in select(samples, "loupe_http_server_request_duration_window_seconds", service_name="nginx"):
        if value > wall:
            fail(f"a percentile {value:.3f} s exceeds the test's wall time {wall:.1f} s: {labels}")
    expected = collections.Counter((m, normalize_route(u), "none" if s == "499" else s) for s, m, u, _ in log)
    got = server_counts(samples, "nginx")
    # Requests closed before nginx read them never reach its log; loupe may see them as "none" too.
    answered_expected = {k: v for k, v in expected.items() if k[2] != "none"}
    answered_got = {k: v for k, v in got.items() if k[2] != "none"}
    if answered_got != answered_expected:
        fail("answered requests miscounted under fd reuse:\n" + diff_counts(answered_expected, answered_got))
    agent.stop()
    print(f"fd reuse: {connections} connections in {wall:.1f} s, {sum(answered_expected.values())} answered, "
          f"all counted, no latency beyond wall time: ok")


if __name__ == "__main__":
    main()
