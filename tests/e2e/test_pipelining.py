#!/usr/bin/env python3
"""Pipelining: a raw socket writes 3 requests in one write(); nginx answers all three on the same
connection; loupe counts and matches all three (statuses from the access log)."""
import collections
import socket
import time

from loupe_e2e import Agent, Nginx, diff_counts, fail, normalize_route, require_root, server_counts


def main():
    require_root()
    agent = Agent()
    nginx = Nginx(workers=1)
    try:
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", nginx.port)) as s:
                s.sendall(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"GET /error HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                data = b""
                deadline = time.time() + 5
                while time.time() < deadline:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data.count(b"HTTP/1.1 ") != 3:
                    fail(f"nginx did not answer the 3 pipelined requests: {data[:200]!r}")
        agent.settle(1.0)
        samples = agent.metrics()
        log = nginx.access_log()
    finally:
        nginx.stop()
    expected = collections.Counter((m, normalize_route(u), s) for s, m, u, _ in log)
    if sum(expected.values()) != 30:
        fail(f"nginx logged {sum(expected.values())} requests, expected 30")
    got = server_counts(samples, "nginx")
    if got != expected:
        fail("pipelined requests miscounted:\n" + diff_counts(expected, got))
    # python3 wrote the pipelined requests: the client side must have matched all three per write.
    client = collections.Counter()
    for (name, labels), value in samples.items():
        d = dict(labels)
        if name == "http_client_request_duration_seconds_count" and d.get("server_port") == str(nginx.port):
            client[(d["http_request_method"], d["http_route"], d["http_response_status_code"])] += int(value)
    if client != expected:
        fail("client side of pipelining miscounted:\n" + diff_counts(expected, client))
    agent.stop()
    print("pipelining: 30 requests in 10 writes, all matched on both sides: ok")


if __name__ == "__main__":
    main()
