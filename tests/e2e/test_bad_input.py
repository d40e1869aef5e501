#!/usr/bin/env python3
"""Bad input on an HTTP port: garbage bytes, a truncated request line, a TLS ClientHello (binary
protocol), a 1 MB header. The agent survives, counts them as unparsed/unmatched, and the valid
requests sent around them are all counted exactly."""
import collections
import os
import socket
import time

from loupe_e2e import Agent, Nginx, diff_counts, fail, normalize_route, require_root, select, server_counts

TLS_CLIENT_HELLO = bytes.fromhex("16030100a5010000a10303") + os.urandom(32) + bytes.fromhex("000020c02bc02f")


def send(port, payload, read=True):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        if read:
            s.settimeout(3)
            try:
                while s.recv(65536):
                    pass
            except (socket.timeout, ConnectionResetError):
                pass


def valid(port, n=5):
    for _ in range(n):
        send(port, b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")


def main():
    require_root()
    agent = Agent()
    nginx = Nginx(workers=1)
    try:
        valid(nginx.port)
        send(nginx.port, os.urandom(3000))                                   # garbage
        valid(nginx.port)
        send(nginx.port, b"GET /ok HTT", read=False)                         # truncated request line
        valid(nginx.port)
        send(nginx.port, TLS_CLIENT_HELLO)                                   # binary protocol
        valid(nginx.port)
        send(nginx.port, b"GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")  # 1 MB header
        valid(nginx.port)
        send(nginx.port, b"\x00\x01\x02\x03" * 100)                          # more binary
        valid(nginx.port)
        agent.settle(1.0)
        if agent.proc.poll() is not None:
            fail("the agent died on bad input:\n" + agent.logs())
        samples = agent.metrics()
        log = nginx.access_log()
    finally:
        nginx.stop()
    expected = collections.Counter((m, normalize_route(u), s) for s, m, u, _ in log if u == "/ok")
    if expected != collections.Counter({("GET", "/ok", "200"): 30}):
        fail(f"nginx did not log the 30 valid requests: {expected}")
    got = collections.Counter({k: v for k, v in server_counts(samples, "nginx").items() if k[1] == "/ok"})
    if got != expected:
        fail("valid requests around bad input miscounted:\n" + diff_counts(expected, got))
    bad = sum(v for n in ("loupe_http_unparsed_segments_total", "loupe_http_unmatched_responses_total")
              for _, v in select(samples, n))
    if bad <= 0:
        fail("bad input was not counted as unparsed or unmatched")
    agent.stop()
    print(f"bad input: 30 valid requests exact, {int(bad)} unparsed/unmatched counted: ok")


if __name__ == "__main__":
    main()
