#!/usr/bin/env python3
"""The capture sees enough bytes to find every message, against nginx's access log, on nginx's
(server) side and on the clients' side:
- a slow client writing each request 3 bytes at a time, one connection per request;
- a connection that starts with 9 writes of an empty line, then 20 keep-alive requests;
- a request with a 500-byte Cookie pipelined ahead of a second one in one write, so that the
  second starts past byte 512 of the write;
- wrk pipelining 4 requests a write to routes whose bodies are 300 bytes or more, so that its reads
  hold several responses past byte 512;
- 1,000 and 10,000 requests pipelined in one write: counted exactly, or what was lost is counted
  (the client's write is beyond the per-syscall copy cap)."""
import collections
import socket
import subprocess
import time

from loupe_e2e import (Agent, Nginx, diff_counts, fail, metric_or, normalize_route, require_root, require_tools,
                       select, server_counts)

BODIES = {"/body/a": ("200", "a" * 320), "/body/b": ("200", "b" * 700), "/body/c": ("404", "c" * 450)}
LOCATIONS = "\n".join(f'location = {path} {{ return {status} "{body}"; }}' for path, (status, body) in BODIES.items())
# Routes of this test only: the agent traces every process, other tests' nginx included.
LOCATIONS += "\n" + "\n".join(f'location = {p} {{ return 200 "{p}\\n"; }}'
                              for p in ("/slow", "/blank", "/cookie", "/second", "/p1k", "/p10k", "/body/small"))

WRK_SCRIPT = """
init = function(args)
  local r = {}
  r[1] = wrk.format("GET", "/body/a")
  r[2] = wrk.format("GET", "/body/b")
  r[3] = wrk.format("GET", "/body/c")
  r[4] = wrk.format("GET", "/body/small")
  req = table.concat(r)
  responses = 0
end
request = function() return req end
-- Stops after whole pipelines only, so that no request is left in flight: every request wrk
-- wrote has its response, and the client side can equal the access log exactly.
response = function(status, headers, body)
  responses = responses + 1
  if responses >= 6000 then wrk.thread:stop() end
end
"""


def read_until_closed(s, timeout=10):
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each send its own segment
    return s


def read_responses(s, n):
    """Reads until `n` complete responses (small bodies of known routes) arrived."""
    data = b""
    s.settimeout(5)
    while data.count(b"HTTP/1.1 ") < n or not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def slow_client(port, requests=21, piece=3):
    """Each request on its own connection, 3 bytes a write, each write given time to be read."""
    for _ in range(requests):
        request = b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        with connect(port) as s:
            for at in range(0, len(request), piece):
                s.sendall(request[at:at + piece])
                time.sleep(0.002)
            if b"200 OK" not in read_until_closed(s):
                fail("nginx did not answer the slow request")


def blank_lines_first(port):
    with connect(port) as s:
        for _ in range(9):
            s.sendall(b"\r\n")
            time.sleep(0.002)
        for _ in range(20):
            s.sendall(b"GET /blank HTTP/1.1\r\nHost: a\r\n\r\n")
            if b"200 OK" not in read_responses(s, 1):
                fail("nginx did not answer a request after the empty lines")


def cookie_ahead(port, connections=10):
    cookie = b"session=" + b"x" * 492  # a 500-byte value
    for _ in range(connections):
        with connect(port) as s:
            s.sendall(b"GET /cookie HTTP/1.1\r\nHost: a\r\nCookie: " + cookie + b"\r\n\r\n"
                      b"GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            if read_until_closed(s).count(b"HTTP/1.1 200") != 2:
                fail("nginx did not answer both pipelined requests")


def pipelined_burst(port, path, n):
    one = f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    last = f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
    with connect(port) as s:
        s.sendall(one * (n - 1) + last)
        answered = read_until_closed(s, timeout=20).count(b"HTTP/1.1 200")
    if answered != n:
        fail(f"nginx answered {answered} of {n} pipelined requests")


# Counters that say messages were lost to the parsers: boundaries lost in bytes not captured
# (desync), requests beyond a connection's pending queue, data no message start was found in,
# responses whose request was not seen.
LOSS_COUNTERS = (("loupe_events_dropped_total", {"reason": "desync"}),
                 ("loupe_events_dropped_total", {"reason": "pending_request_limit"}),
                 ("loupe_http_unparsed_segments_total", {}),
                 ("loupe_http_unmatched_responses_total", {}))
# Losses in the kernel or on the way to user space: none is expected in this test.
KERNEL_DROPS = ("ringbuf_full", "unsupported_syscall", "conn_table_full", "nested", "copy_fault", "malformed",
                "recursion_miss")


def losses(samples):
    return {name + str(labels): metric_or(samples, name, 0, **labels) for name, labels in LOSS_COUNTERS}


def client_counts(samples, port):
    got = collections.Counter()
    for labels, value in select(samples, "http_client_request_duration_seconds_count", server_port=str(port)):
        if value:
            got[(labels["http_request_method"], labels["http_route"], labels["http_response_status_code"])] += int(value)
    return got


def only(counts, routes):
    return collections.Counter({k: v for k, v in counts.items() if k[1] in routes})


def main():
    require_root()
    require_tools("wrk")
    agent = Agent()
    nginx = Nginx(workers=1, locations=LOCATIONS)
    with open(f"{nginx.work}/pipeline.lua", "w") as f:
        f.write(WRK_SCRIPT)
    try:
        slow_client(nginx.port)
        blank_lines_first(nginx.port)
        cookie_ahead(nginx.port)
        wrk = subprocess.run(["wrk", "-t2", "-c2", "-d4s", "-s", f"{nginx.work}/pipeline.lua", nginx.url("")],
                             capture_output=True, text=True, check=True)
        print(wrk.stdout)
        agent.settle(1.0)
        before_bursts = agent.metrics()
        loss_deltas = {}
        previous = losses(before_bursts)
        for route, n in (("/p1k", 1000), ("/p10k", 10000)):
            pipelined_burst(nginx.port, route, n)
            agent.settle(1.0)
            now = losses(agent.metrics())
            loss_deltas[route] = {k: now[k] - previous[k] for k in now if now[k] != previous[k]}
            previous = now
        samples = agent.metrics()
        log = nginx.access_log()
    finally:
        nginx.stop()
    expected = collections.Counter((m, normalize_route(u), s) for s, m, u, _ in log)
    server = server_counts(samples, "nginx")
    client = client_counts(samples, nginx.port)
    cases = [("3 bytes a write", {"/slow"}, 21),
             ("9 empty lines first", {"/blank"}, 20),
             ("500-byte Cookie ahead", {"/cookie", "/second"}, 20),
             ("wrk, 4 requests a write", {"/body/a", "/body/b", "/body/c", "/body/small"}, 12000)]
    for name, routes, n in cases:
        want = only(expected, routes)
        if sum(want.values()) != n:
            fail(f"{name}: nginx logged {sum(want.values())} requests, expected {n}")
        if only(server, routes) != want:
            fail(f"{name}: server side differs from the access log:\n" + diff_counts(want, only(server, routes)))
        if only(client, routes) != want:
            fail(f"{name}: client side differs from the access log:\n" + diff_counts(want, only(client, routes)))
        print(f"{name}: {n} requests, both sides equal to the access log")

    # A pipeline longer than the copy cap (and than the parser's pending queue) cannot be counted
    # exactly: what it lost must show in the loss counters, and nothing may be over-counted.
    for route, n in (("/p1k", 1000), ("/p10k", 10000)):
        want = only(expected, {route})
        if sum(want.values()) != n:
            fail(f"{n} pipelined: nginx logged {sum(want.values())}")
        for side, got in (("server", only(server, {route})), ("client", only(client, {route}))):
            total = sum(got.values())
            if got == want:
                print(f"{n} pipelined in one write, {side} side: exact")
            elif total < n and set(got) <= set(want) and loss_deltas[route]:
                print(f"{n} pipelined in one write, {side} side: {total} counted, the loss counted: "
                      f"{loss_deltas[route]}")
            else:
                fail(f"{n} pipelined in one write, {side} side: {total} counted, losses counted "
                     f"{loss_deltas[route]}:\n" + diff_counts(want, got))
    dropped = [(l["reason"], v) for l, v in select(samples, "loupe_events_dropped_total")
               if v and l["reason"] in KERNEL_DROPS]
    if dropped:
        fail(f"events dropped: {dropped}")
    agent.stop()
    print("capture bytes: ok")


if __name__ == "__main__":
    main()
