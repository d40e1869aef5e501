#!/usr/bin/env python3
"""The agent's HTTP endpoint as an attacker on the node would try it (issue 20, items 5 and 6):

- a second agent on the port already in use exits non-zero with a clear message, and the first
  keeps every request;
- 64 slowloris connections (one header line every 2 s, re-opened when cut) do not delay
  /health/live or /metrics beyond 1 s, and are cut at the request deadline with a 408;
- 10,000 requests from 500 concurrent connections, and wrk with 1,000 connections: no error, no
  timeout;
- odd paths (%ff%fe, %00, 8 KB...) never answer 500, and every JSON answer is valid UTF-8, also
  for a process whose name is not (prctl(PR_SET_NAME, "\\xff\\xfe...")), addressable by its raw
  bytes."""
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from loupe_e2e import LOUPE, Agent, fail, free_port, http_get, require_root, require_tools, wait_port


def raw_get(port, target, timeout=5.0):
    """(status, body bytes) of one GET sent as is: no client-side normalisation of the path."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def endpoint_counters(agent):
    return agent.api("/api/v1/agent")[1]["http_endpoint"]


def second_agent_on_the_same_port(agent):
    second = subprocess.Popen([LOUPE, "agent", "--listen", f"127.0.0.1:{agent.port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = second.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        second.kill()
        second.wait()
        fail("a second agent on the port in use kept running (sharing the port)")
    if second.returncode == 0:
        fail("a second agent on a port in use exited 0")
    if f"cannot listen on 127.0.0.1:{agent.port}: Address already in use" not in stderr:
        fail("the second agent did not say why it stopped:\n" + stderr[-2000:])
    # The first agent answers every request: nothing went to a second listener.
    before = endpoint_counters(agent)["requests"]
    for _ in range(50):
        status, _ = http_get(agent.url("/health/live"))
        if status != 200:
            fail(f"/health/live answered {status} after the second agent's attempt")
    after = endpoint_counters(agent)["requests"]
    if after - before < 51:  # 50 probes and the counters request
        fail(f"the first agent saw {after - before} of the 51 requests")
    print(f"second agent: exit {second.returncode}, '{stderr.strip().splitlines()[-1]}'")


class Slowloris:
    """`count` connections each sending one header line every 2 s, opening a new connection for
    each one the agent cuts, for as long as it runs."""

    def __init__(self, port, count):
        self.port, self.count = port, count
        self.cut = 0
        self.timeouts_seen = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _open(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        return s

    def _run(self):
        connections = [self._open() for _ in range(self.count)]
        line = 0
        while not self.stopping.wait(2.0):
            line += 1
            for i, s in enumerate(connections):
                try:
                    s.setblocking(False)
                    try:
                        answer = s.recv(4096)
                        if answer.startswith(b"HTTP/1.1 408"):
                            self.timeouts_seen += 1
                        raise ConnectionResetError  # answered or closed: cut
                    except BlockingIOError:
                        pass
                    s.setblocking(True)
                    s.sendall(b"X-Slow-%d: %d\r\n" % (line, line))
                except OSError:
                    s.close()
                    self.cut += 1
                    connections[i] = self._open()
        for s in connections:
            s.close()

    def stop(self):
        self.stopping.set()
        self.thread.join()


def probes_stay_fast_under_slowloris(agent):
    attack = Slowloris(agent.port, 64)
    try:
        time.sleep(0.5)
        worst = {"/health/live": 0.0, "/metrics": 0.0}
        deadline = time.time() + 8  # beyond the 5 s request deadline: connections get cut, re-opened
        while time.time() < deadline:
            for path in worst:
                start = time.time()
                try:
                    status, _ = http_get(agent.url(path), timeout=1.0)
                except OSError as e:
                    fail(f"{path} failed under slowloris: {e}")
                worst[path] = max(worst[path], time.time() - start)
                if status != 200:
                    fail(f"{path} answered {status} under slowloris")
            time.sleep(0.2)
    finally:
        attack.stop()
    if max(worst.values()) >= 1.0:
        fail(f"probes slowed under slowloris: {worst}")
    counters = endpoint_counters(agent)
    if attack.cut < 64 or attack.timeouts_seen < 32 or counters["request_timeouts"] < 64:
        fail(f"slowloris connections were not cut at the request deadline: {attack.cut} cut, "
             f"{attack.timeouts_seen} 408s seen, counters {counters}")
    print(f"slowloris x64: worst /health/live {worst['/health/live'] * 1000:.0f} ms, /metrics "
          f"{worst['/metrics'] * 1000:.0f} ms; {attack.cut} slow connections cut "
          f"({counters['request_timeouts']} request timeouts)")


def many_concurrent_requests(agent):
    concurrency, per_connection = 500, 20
    errors, answered = [], [0]
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency)

    def client(_):
        connection = None
        barrier.wait()
        for _ in range(per_connection):
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
                connection.request("GET", "/health/live")
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                if response.getheader("Connection") == "close":
                    connection.close()
                    connection = None
                with lock:
                    answered[0] += 1
            except Exception as e:  # every kind counts: reset, timeout, refused
                with lock:
                    errors.append(repr(e))
                connection = None

    start = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    if errors or answered[0] != concurrency * per_connection:
        fail(f"{len(errors)} errors in {concurrency * per_connection} requests: {errors[:5]}")
    print(f"{answered[0]} requests from {concurrency} concurrent connections in "
          f"{time.time() - start:.1f} s, no error")

    run = subprocess.run(["wrk", "-t", "2", "-c", "1000", "-d", "3s", "--timeout", "2s",
                          agent.url("/health/live")], capture_output=True, text=True)
    if run.returncode != 0 or "Socket errors" in run.stdout or "Non-2xx" in run.stdout:
        fail("wrk -c 1000 saw errors:\n" + run.stdout + run.stderr)
    rate = [line for line in run.stdout.splitlines() if "Requests/sec" in line]
    print(f"wrk -c 1000 -d 3s: no socket error, no non-2xx; {rate[0].strip() if rate else ''}")


def odd_paths_never_answer_500(agent):
    status, body = raw_get(agent.port, b"/api/v1/services/%ff%fe/processes")
    if status != 404:
        fail(f"/api/v1/services/%ff%fe/processes answered {status}: {body[:200]!r}")
    json.loads(body.decode("utf-8"))  # strict: invalid UTF-8 raises
    odd = [b"/api/v1/services/%ff%fe/endpoints", b"/api/v1/services/%00/processes",
           b"/api/v1/services/%/endpoints", b"/api/v1/services/%zz%/processes",
           b"/api/v1/services/..%2f..%2fetc%2fpasswd/processes", b"/api/v1/services/%c0%af/endpoints",
           b"/api/v1/services/" + b"a" * 7000 + b"/processes", b"/api/v1/services//processes",
           b"/api/v1/services/x/endpoints/extra", b"/%ff", b"/metrics?x=%ff%00", b"/health/live?%zz",
           b"/api/v1/services?" + b"%ff" * 100, b"/api/v1/agent/../node", b"*", b"/" + b"\xff\xfe" * 10]
    for target in odd:
        status, body = raw_get(agent.port, target)
        if status >= 500:
            fail(f"GET {target[:80]!r} answered {status}")
        try:
            text = body.decode("utf-8")
            if status != 200 or target.startswith(b"/api"):
                json.loads(text)
        except ValueError as e:
            fail(f"GET {target[:80]!r} answered {status} with a body that is not UTF-8 JSON: {e}")
    print(f"{len(odd) + 1} odd paths: no 500, every body valid UTF-8")


def non_utf8_process_name(agent):
    port = free_port()
    name = b"\xff\xfeloupe-odd"
    server = subprocess.Popen([sys.executable, "-c", f"""
import ctypes, http.server
ctypes.CDLL(None).prctl(15, {name!r}, 0, 0, 0)  # PR_SET_NAME
http.server.HTTPServer(("127.0.0.1", {port}), http.server.SimpleHTTPRequestHandler).serve_forever()
"""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    try:
        wait_port(port)
        for _ in range(5):
            http_get(f"http://127.0.0.1:{port}/")
        deadline = time.time() + 10
        while True:
            status, body = raw_get(agent.port, b"/api/v1/services")
            if status != 200:
                fail(f"/api/v1/services answered {status} with a non-UTF-8 process name")
            names = [s["name"] for s in json.loads(body.decode("utf-8"))["services"]]
            # Listed from its requests or from its processes, whichever comes first: its
            # processes come with the next resource sample (1 s), its requests once the agent
            # drained their events, which on a loaded machine can be the later of the two.
            if "\ufffd\ufffdloupe-odd" in names and \
                    server.pid in [p["pid"] for p in doc_processes(agent)] and \
                    raw_get(agent.port, b"/api/v1/services/%FF%FEloupe-odd/endpoints")[0] == 200:
                break
            if time.time() > deadline:
                fail(f"the process named {name!r} never showed up: {names}")
            time.sleep(0.5)
        # Addressable by its raw bytes, percent-encoded.
        for what in (b"processes", b"endpoints"):
            status, body = raw_get(agent.port, b"/api/v1/services/%FF%FEloupe-odd/" + what)
            doc = json.loads(body.decode("utf-8"))
            if status != 200 or doc["service"] != "\ufffd\ufffdloupe-odd":
                fail(f"/api/v1/services/%FF%FEloupe-odd/{what.decode()} answered {status}: {doc}")
        top = subprocess.run([LOUPE, "top", "--json", "--agent", agent.url("")], capture_output=True,
                             timeout=30)
        if top.returncode != 0:
            fail("loupe top --json failed: " + top.stderr.decode(errors="replace"))
        json.loads(top.stdout.decode("utf-8"))
        print("a process named b'\\xff\\xfeloupe-odd': /api/v1/services 200, its processes and "
              "endpoints by raw name 200, loupe top --json valid")
    finally:
        server.kill()
        server.wait()


def doc_processes(agent):
    _, body = raw_get(agent.port, b"/api/v1/services/%FF%FEloupe-odd/processes")
    return json.loads(body.decode("utf-8"))["processes"]


def main():
    require_root()
    require_tools("wrk")
    agent = Agent()
    try:
        second_agent_on_the_same_port(agent)
        probes_stay_fast_under_slowloris(agent)
        many_concurrent_requests(agent)
        odd_paths_never_answer_500(agent)
        non_utf8_process_name(agent)
        if agent.proc.poll() is not None:
            fail("the agent died:\n" + agent.logs())
    finally:
        agent.stop()
    print("PASS")


if __name__ == "__main__":
    main()
