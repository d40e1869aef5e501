#!/usr/bin/env python3
"""python3 -m http.server (HTTP/1.0, a connection per request) and a Node `http` server sending
chunked responses over keep-alive connections: loupe's counts per (method, route, status) equal
each server's own request log, exactly."""
import collections
import http.client
import os
import re
import subprocess
import tempfile

from loupe_e2e import (Agent, diff_counts, fail, free_port, normalize_route, require_root, require_tools,
                       server_counts, wait_port)

NODE_SERVER = r"""
const http = require('http');
const server = http.createServer((req, res) => {
  const status = req.url.startsWith('/missing') ? 404 : req.url.startsWith('/fail') ? 503 : 200;
  res.on('finish', () => console.log(`${req.method} ${req.url} ${status}`));
  // No Content-Length: Node sends the body chunked, in several writes.
  res.writeHead(status, {'Content-Type': 'text/plain'});
  res.write('first part\n');
  setImmediate(() => { res.write('second part\n'); res.end('last part\n'); });
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2]), '127.0.0.1');
"""


def drive_keepalive(port, paths, rounds):
    """One keep-alive connection per round, every path requested on it (HTTP/1.1)."""
    for _ in range(rounds):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for path in paths:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            if r.getheader("Transfer-Encoding", "") != "chunked" and port_is_node.get(port):
                fail(f"node answered {path} without chunked encoding")
        conn.close()


port_is_node = {}


def expect_exact(samples, service, expected, total, what):
    """The server logged exactly `total` requests and loupe's per-series counts equal its log."""
    if sum(expected.values()) != total:
        fail(f"{what} logged {sum(expected.values())} requests, expected {total}")
    got = server_counts(samples, service)
    if got != expected:
        fail(f"{what} counts differ from its log:\n" + diff_counts(expected, got))
    print(f"{what}: {total} requests, {len(expected)} series, exact")


def test_python():
    root = tempfile.mkdtemp(prefix="loupe-pyhttp-")
    os.makedirs(f"{root}/dir")
    with open(f"{root}/index.html", "w") as f:
        f.write("<html>hello</html>\n")
    with open(f"{root}/dir/data.txt", "w") as f:
        f.write("x" * 5000)
    port = free_port()
    log_path = f"{root}.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(["python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", str(port),
                                   "--directory", root], stdout=log, stderr=log)
        try:
            wait_port(port)
            # --pid: only this server (filtered in the kernel), whatever else runs on the machine.
            agent = Agent("--pid", str(server.pid))
            for _ in range(20):
                for path, method in [("/", "GET"), ("/dir/data.txt", "GET"), ("/missing.txt", "GET"),
                                     ("/dir/", "GET"), ("/index.html", "HEAD"), ("/dir", "GET")]:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request(method, path)
                    conn.getresponse().read()
                    conn.close()
            agent.settle(1.0)
            samples = agent.metrics()
            agent.stop()
        finally:
            server.terminate()
            server.wait(timeout=10)
    # Oracle: http.server's log lines: 127.0.0.1 - - [date] "GET /path HTTP/1.1" 200 -
    expected = collections.Counter()
    line_re = re.compile(r'"(\S+) (\S+) HTTP/[\d.]+" (\d{3})')
    with open(log_path) as f:
        for line in f:
            m = line_re.search(line)
            if m:
                expected[(m.group(1), normalize_route(m.group(2)), m.group(3))] += 1
    expect_exact(samples, "python3", expected, 120, "python http.server")


def test_node():
    require_tools("node")
    port = free_port()
    port_is_node[port] = True
    script = tempfile.NamedTemporaryFile("w", suffix=".js", delete=False)
    script.write(NODE_SERVER)
    script.close()
    log_path = script.name + ".log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(["node", script.name, str(port)], stdout=log, stderr=log)
        try:
            wait_port(port)
            agent = Agent("--pid", str(server.pid))
            drive_keepalive(port, ["/", "/items/42", "/missing", "/fail", "/items/7?debug=1"], rounds=30)
            agent.settle(1.0)
            samples = agent.metrics()
            agent.stop()
        finally:
            server.terminate()
            server.wait(timeout=10)
    expected = collections.Counter()
    with open(log_path) as f:
        for line in f:
            method, url, status = line.split()
            expected[(method, normalize_route(url), status)] += 1
    expect_exact(samples, "node", expected, 150, "node chunked")


def main():
    require_root()
    require_tools("python3")
    test_python()
    test_node()
    print("python + node: ok")


if __name__ == "__main__":
    main()
