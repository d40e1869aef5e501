#!/usr/bin/env python3
"""OpenSSL linked statically into an executable: no libssl.so is mapped, so loupe finds SSL_read
and SSL_write in the executable's own symbol table and attaches its uprobes there.

A C client (tests/e2e/tls/static_client.c, built here against Debian's libssl.a and libcrypto.a)
makes 300 keep-alive GETs over one TLS connection to a Python https server, once the agent lists
the running executable among its TLS files (read at its scan of new processes, within a second).
Checked: the binary maps no libssl (ldd), and the client side counts exactly 300 requests, all
200 with url_scheme="https"."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from loupe_e2e import (Agent, fail, free_port, require_root, require_tools, select,
                       self_signed_certificate, time_limit, wait_port)

HERE = os.path.dirname(os.path.abspath(__file__))
REQUESTS = 300

SERVER = r'''
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "64")
        self.end_headers()
        self.wfile.write(b"x" * 64)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
'''


def main():
    require_root()
    require_tools("gcc")
    time_limit(90)
    work = tempfile.mkdtemp(prefix="loupe-tls-static-")
    binary = os.path.join(work, "static_client")
    build = subprocess.run(["gcc", "-O2", "-o", binary, os.path.join(HERE, "tls", "static_client.c"),
                            "-Wl,-Bstatic", "-lssl", "-lcrypto", "-Wl,-Bdynamic", "-ldl",
                            "-pthread"], capture_output=True, text=True)
    if build.returncode != 0:
        fail("cannot build the static OpenSSL client (libssl-dev's libssl.a):\n" + build.stderr)
    libraries = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    if "libssl" in libraries:
        fail("the client maps a shared libssl: the test would prove nothing\n" + libraries)
    cert, key = self_signed_certificate(work)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), cert, key])
    agent = Agent()
    try:
        wait_port(port)
        client = subprocess.Popen([binary, str(port), str(REQUESTS)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # A new executable is read at the agent's next scan of new processes (every second).
        deadline = time.time() + 10
        while True:
            files = [lib["path"] for lib in agent.api("/api/v1/agent")[1]["tls"]["libraries"]]
            if binary in files:
                break
            if time.time() > deadline:
                fail(f"the agent's TLS files do not list {binary} after 10 s: {files}")
            time.sleep(0.2)
        out, err = client.communicate("go\n", timeout=60)
        if client.returncode != 0 or out.strip() != str(REQUESTS):
            fail(f"the client failed: exit {client.returncode}, {out!r} {err[-300:]}")
        agent.settle(1.0)
        samples = agent.metrics()
        rows = select(samples, "http_client_request_duration_seconds_count",
                      service_name="static_client")
        got = {(l.get("url_scheme"), l.get("http_response_status_code")): v for l, v in rows if v}
        if got != {("https", "200"): REQUESTS}:
            fail(f"client side of the static binary: {got}, expected {REQUESTS} https 200")
        print(f"static OpenSSL client: {REQUESTS} requests over TLS counted exactly; the agent "
              f"attached to {binary}")
        if agent.proc.poll() is not None:
            fail("the agent died:\n" + agent.logs())
        print("PASS")
    finally:
        agent.stop()
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
