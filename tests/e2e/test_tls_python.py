#!/usr/bin/env python3
"""Python (Debian's /usr/bin/python3, whose _ssl links libssl.so.3): an http.server wrapped in ssl
and an http.client.HTTPSConnection client, both started after the agent (the server loads its
ssl module only once the agent runs, as a process that dlopens libssl late does). loupe counts both
sides over TLS, exactly, with url_scheme="https". Then, with the TLS uprobes off (--disable-hooks
tls), the same traffic is TLS that no hooked library reads: every connection is counted as
loupe_tls_connections_total{library="unknown"} and nothing of it is parsed."""
import collections
import json
import os
import subprocess
import time

from loupe_e2e import (Agent, Workload, diff_counts, fail, metric, parse_metrics, promtool_check, require_root,
                       select, self_signed_certificate, server_counts)

PYTHON = "/usr/bin/python3"

SERVER = r'''
import sys
print("started", flush=True)
sys.stdin.readline()                      # the agent runs: load ssl (dlopen of _ssl, libssl) now
import collections, http.server, json, ssl, threading
cert, key = sys.argv[1], sys.argv[2]
counts = collections.Counter()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"         # keep-alive
    disable_nagle_algorithm = True        # headers and body are two writes: no delayed-ACK wait
    def do_GET(self):
        status = 200 if self.path.startswith("/ok") or self.path.startswith("/items/") else 404
        body = b"x" * (100 if status == 200 else 10)
        counts[f"GET {self.path.split('?')[0]} {status}"] += 1  # before the client can see it
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        counts[f"POST {self.path} 201"] += 1
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.readline()                      # done: report what was served
print(json.dumps(counts), flush=True)
sys.stdin.readline()                      # serves on until told to end
'''

CLIENT = r'''
import sys, time
import collections, http.client, json, ssl
port = int(sys.argv[1])
sys.stdin.readline()
context = ssl._create_unverified_context()
counts = collections.Counter()
def exchange(conn, method, path, body=None):
    conn.request(method, path, body=body)
    r = conn.getresponse()
    r.read()
    counts[f"{method} {path.split('?')[0]} {r.status}"] += 1
# Keep-alive: many requests on a few connections.
for c in range(3):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
    for i in range(100):
        exchange(conn, "GET", "/ok?token=secret")
        exchange(conn, "GET", f"/items/{i}")
        if i % 10 == 0:
            exchange(conn, "GET", "/missing")
            exchange(conn, "POST", "/upload", body=b"y" * 5000)
    conn.close()
# A new connection (and handshake) per request.
for i in range(20):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
    exchange(conn, "GET", "/ok")
    conn.close()
print(json.dumps(counts), flush=True)
'''


def route_of(path):
    return "/items/{id}" if path.startswith("/items/") else path


def oracle(counts):
    out = collections.Counter()
    for key, n in counts.items():
        method, path, status = key.split(" ")
        out[(method, route_of(path), status)] += n
    return out


def wait_for_probed_library(agent, seconds=12):
    """Waits until the agent has uprobes on a TLS library some process maps."""
    deadline = time.time() + seconds
    while True:
        _, body = agent.api("/api/v1/agent")
        libs = [l for l in body.get("tls", {}).get("libraries", []) if l["uprobes"] and l["processes"]]
        if libs:
            break
        if time.time() > deadline:
            fail(f"no TLS library probed within {seconds} s: {body.get('tls')}\n" + agent.logs())
        time.sleep(0.2)
    print("probed:", [(l["path"], len(l["uprobes"])) for l in libs])


def https_client_counts(samples, service, port):
    """The client side's https requests to 127.0.0.1:port, by (method, route, status)."""
    got = collections.Counter()
    for l, v in select(samples, "http_client_request_duration_seconds_count", service_name=service,
                       url_scheme="https", server_address="127.0.0.1", server_port=str(port)):
        if v:
            got[(l["http_request_method"], l["http_route"], l["http_response_status_code"])] += int(v)
    return got


def exchanged(agent, server, client, timeout):
    """What the client received and the server served (they must agree), and the agent's
    exposition after both: (received, served, text, samples)."""
    received = oracle(json.loads(client.readline(timeout=timeout)))
    server.send("report")
    served = oracle(json.loads(server.readline()))
    if served != received:
        fail(f"server and client disagree: {served} vs {received}")
    agent.settle(1.0)
    text = agent.metrics_text()
    return received, served, text, parse_metrics(text)


def check_both_sides(samples, text, server, client, port, served, received):
    """Both ends' https requests equal what the server served and the client received, none is
    counted as plain http, no query string is exported, and promtool accepts the exposition."""
    got = server_counts(samples, server, url_scheme="https")
    if got != served:
        fail("server side differs from what the server served:\n" + diff_counts(served, got))
    print(f"server side: {sum(served.values())} https requests, {len(served)} series, exact")
    got = https_client_counts(samples, client, port)
    if got != received:
        fail("client side differs from what the client got:\n" + diff_counts(received, got))
    print(f"client side: {sum(got.values())} https requests, exact")
    plain = [l for l, v in select(samples, "http_server_request_duration_seconds_count", service_name=server,
                                  url_scheme="http") if v]
    if plain:
        fail(f"TLS requests counted as plain http: {plain}")
    if "secret" in text:
        fail("a query string leaked into the metrics")
    promtool_check(text)


def main():
    require_root()
    if not os.path.exists(PYTHON):
        fail(f"{PYTHON} (Debian's python3) is needed")
    ssl_module = subprocess.run([PYTHON, "-c", "import _ssl; print(_ssl.__file__)"],
                                capture_output=True, text=True, check=True).stdout.strip()
    if "libssl.so" not in subprocess.run(["ldd", ssl_module], capture_output=True, text=True).stdout:
        fail(f"{ssl_module} does not link libssl dynamically: the uprobes cannot see it")
    work = __import__("tempfile").mkdtemp(prefix="loupe-tls-python-")
    cert, key = self_signed_certificate(work)

    # Only these two: no process the agent selects maps libssl when it starts (the agent itself
    # does), so the server's libssl is found only by a later scan of its maps, after its dlopen.
    agent = Agent("--comm", "tlsserver,tlsclient")
    _, body = agent.api("/api/v1/agent")
    if body["tls"]["libraries"]:
        fail(f"libraries probed before any selected process mapped one: {body['tls']}")
    server = Workload("tlsserver", SERVER, cert, key, python=PYTHON)
    if server.readline() != "started":
        fail("server did not start")
    server.send("go")
    port = int(server.readline())
    # The server's libssl is probed at the agent's next scan of its maps (a new process's at once,
    # every process's every 5 s).
    wait_for_probed_library(agent)

    client = Workload("tlsclient", CLIENT, port, python=PYTHON)
    client.send("go")
    client_counts, served, text, samples = exchanged(agent, server, client, 30)

    check_both_sides(samples, text, "tlsserver", "tlsclient", port, served, client_counts)
    client.kill()
    agent.stop()

    # Unhooked: recognised as TLS from its records, counted at close, never parsed.
    agent = Agent("--disable-hooks", "tls")
    _, body = agent.api("/api/v1/agent")
    if body["tls"]["enabled"] or body["tls"]["uprobes_attached"]:
        fail(f"--disable-hooks tls left TLS capture on: {body['tls']}")
    client = Workload("tlsclient", CLIENT, port, python=PYTHON)
    client.send("go")
    json.loads(client.readline(timeout=30))
    client.kill()
    agent.settle(1.0)
    samples = parse_metrics(agent.metrics_text())
    connections = 3 + 20  # the client's, each seen at both ends
    unknown = metric(samples, "loupe_tls_connections_total", library="unknown")
    if unknown < 2 * connections:
        fail(f"unhooked TLS connections: {unknown} counted, expected at least {2 * connections}")
    parsed = [l for l, v in select(samples, "http_server_request_duration_seconds_count", service_name="tlsserver")
              + select(samples, "http_client_request_duration_seconds_count", service_name="tlsclient") if v]
    if parsed:
        fail(f"unhooked TLS traffic was parsed: {parsed}")
    print(f"unhooked: {int(unknown)} TLS connections counted as unknown, none parsed")
    server.kill()
    agent.stop()
    print("tls python: ok")


if __name__ == "__main__":
    main()
