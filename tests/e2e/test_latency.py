#!/usr/bin/env python3
"""Latency against a known truth: a server that sleeps 50 ms per request. loupe's server-side p50
must be within 5 % of 50 ms, and its p99 must not exceed the p99 wrk measures from outside (by
more than the sketch's relative error).

Two routes: /slow answers as Python does (headers and body in two writes, the body held back by
Nagle until the headers are acknowledged: wrk's p99 shows it), /corked writes its response with
TCP_CORK set (as nginx's tcp_nopush does), so that the kernel holds the bytes back until the cork
is pulled. For such writes loupe reads the clock itself instead of taking the TCP stack's
(write_time in bpf/socket_capture.bpf.c). Both clocks are right here, as the kernel refreshes its
own in every push, held back or not: a write loupe would time wrongly with the TCP clock alone
(autocorking, bytes held in a qdisc) needs a queueing qdisc and is not built here."""
import re
import subprocess
import sys
import tempfile

from loupe_e2e import Agent, fail, free_port, require_root, require_tools, select, wait_port

SLOW_SERVER = r"""
import socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(0.050)
        body = b"slept\n"
        corked = self.path == "/corked"
        if corked:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if corked:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
"""


def wrk_p99_seconds(output):
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if not m:
        fail("no 99% line in wrk --latency output:\n" + output)
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def main():
    require_root()
    require_tools("wrk")
    agent = Agent("--comm", "python3")
    port = free_port()
    script = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    script.write(SLOW_SERVER)
    script.close()
    server = subprocess.Popen([sys.executable, script.name, str(port)])
    try:
        wait_port(port)
        wrk = {route: subprocess.run(["wrk", "-t2", "-c4", "-d3s", "--latency", f"http://127.0.0.1:{port}{route}"],
                                     capture_output=True, text=True, check=True).stdout
               for route in ("/slow", "/corked")}
        agent.settle(1.0)
        samples = agent.metrics()
    finally:
        server.terminate()
        server.wait(timeout=10)

    def quantile(route, q):
        rows = select(samples, "loupe_http_server_request_duration_window_seconds", http_route=route,
                      http_response_status_code="200", quantile=q, window="1m")
        if len(rows) != 1:
            fail(f"expected one {route} series for quantile {q}, got {rows}")
        return rows[0][1]

    for route in ("/slow", "/corked"):
        p50, p99 = quantile(route, "0.5"), quantile(route, "0.99")
        client_p99 = wrk_p99_seconds(wrk[route])
        print(f"{route}: server p50 {p50 * 1e3:.2f} ms, server p99 {p99 * 1e3:.2f} ms, "
              f"wrk p99 {client_p99 * 1e3:.2f} ms")
        if abs(p50 - 0.050) > 0.050 * 0.05:
            fail(f"{route}: p50 {p50 * 1e3:.2f} ms is not within 5 % of 50 ms")
        # The sketch reports a quantile within 0.54 % of the exact sample (scale 6, stats/
        # log_sketch.h), wrk to the microsecond: when the two p99s are as close as the corked
        # route makes them (51.47 ms against 51.44 in one CI run), that much apart is no error.
        if p99 > client_p99 * 1.0054 + 1e-6:
            fail(f"{route}: server-side p99 {p99 * 1e3:.2f} ms exceeds wrk's client-side p99 "
                 f"{client_p99 * 1e3:.2f} ms")
    agent.stop()
    print("latency: ok")


if __name__ == "__main__":
    main()
