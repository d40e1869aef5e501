"""Helpers for end-to-end tests: a real loupe agent, real servers, real load generators.

Every test starts its own agent on its own port, drives real traffic, scrapes /metrics and compares
the numbers with an independent oracle (the server's own log)."""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

LOUPE = os.environ.get("LOUPE_BIN", os.path.join(os.path.dirname(__file__), "../../build/loupe"))


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def require_root():
    if os.geteuid() != 0:
        if os.environ.get("LOUPE_REQUIRE_BPF") == "1":
            fail("LOUPE_REQUIRE_BPF=1 but not running as root")
        print("SKIP: needs root")
        sys.exit(0)


def require_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        fail("missing tools: " + ", ".join(missing) + " (run tools/install-deps.sh)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    fail(f"nothing listens on port {port} after {timeout}s")


def http_get(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Agent:
    """A `loupe agent` subprocess on a free loopback port."""

    def __init__(self, *args):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="loupe-agent-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [LOUPE, "--log-format", "json", "agent", "--listen", f"127.0.0.1:{self.port}", *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        atexit.register(self._kill)  # a failing test must not leave an agent attached
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail("agent exited early:\n" + self.logs())
            try:
                status, _ = http_get(self.url("/health/ready"), timeout=0.5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        fail("agent not ready within 10 s:\n" + self.logs())

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self):
        with open(self.log.name) as f:
            return f.read()

    def metrics_text(self):
        status, body = http_get(self.url("/metrics"))
        if status != 200:
            fail(f"/metrics answered {status}")
        return body

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def api(self, path):
        status, body = http_get(self.url(path))
        return status, json.loads(body)

    def settle(self, seconds=0.6):
        """Lets the agent drain its ring buffer (10 ms timer) and parse."""
        time.sleep(seconds)

    def stop(self):
        """SIGTERM must end the agent cleanly (exit 0) within 5 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                fail("agent did not stop within 5 s of SIGTERM")
            if rc != 0:
                fail(f"agent exited {rc} on SIGTERM:\n" + self.logs())
        os.unlink(self.log.name)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} for every sample of a text exposition."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            fail("unparseable metrics line: " + line)
        labels = dict(_LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return samples


def select(samples, name, **labels):
    """[(labels dict, value)] of the samples of `name` whose labels include `labels`."""
    out = []
    for (n, lbls), value in samples.items():
        d = dict(lbls)
        if n == name and all(d.get(k) == v for k, v in labels.items()):
            out.append((d, value))
    return out


def normalize_route(path):
    """The agent's route normalisation for the simple paths tests use: numeric segments -> {id}."""
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    return "/".join("{id}" if seg.isdigit() else seg for seg in path.split("/")) or "/"


def promtool_check(text):
    """`promtool check metrics` must accept the exposition (lint problems are reported too)."""
    require_tools("promtool")
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    if r.returncode != 0:
        fail("promtool check metrics failed:\n" + r.stdout + r.stderr)


class Nginx:
    """A private nginx (Debian's binary) with locations answering 200, 301, 404 and 500, an access
    log in a fixed format (the oracle), and a 20 KB file served with sendfile."""

    LOG_FORMAT = '$status $request_method $request_uri "$http_user_agent"'

    def __init__(self, workers=2):
        require_tools("nginx")
        self.work = tempfile.mkdtemp(prefix="loupe-nginx-")
        self.port = free_port()
        os.makedirs(f"{self.work}/static")
        with open(f"{self.work}/static/blob.bin", "wb") as f:
            f.write(os.urandom(20000))
        w = self.work
        conf = f"""
user root;
worker_processes {workers};
daemon off;
pid {w}/nginx.pid;
error_log {w}/error.log;
events {{ worker_connections 4096; }}
http {{
    log_format oracle '{self.LOG_FORMAT}';
    access_log {w}/access.log oracle;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {w}; proxy_temp_path {w}; fastcgi_temp_path {w};
    uwsgi_temp_path {w}; scgi_temp_path {w};
    server {{
        listen 127.0.0.1:{self.port};
        root {w}/root;
        location = /ok {{ return 200 "ok\\n"; }}
        location = /redirect {{ return 301 /ok; }}
        location = /error {{ return 500; }}
        location /users/ {{ return 200 "user\\n"; }}
        location /static/ {{ alias {w}/static/; }}
    }}
}}
"""
        with open(f"{w}/nginx.conf", "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["nginx", "-c", f"{w}/nginx.conf", "-p", w])
        atexit.register(self.stop)
        wait_port(self.port)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def access_log(self):
        """[(status, method, uri, user_agent)] in log order."""
        out = []
        with open(f"{self.work}/access.log") as f:
            for line in f:
                status, method, uri, agent = line.rstrip("\n").split(" ", 3)
                out.append((status, method, uri, agent.strip('"')))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.work, ignore_errors=True)


def server_counts(samples, service, **labels):
    """Counter{(method, route, status): count} of a service's server-side histogram."""
    import collections
    got = collections.Counter()
    for l, v in select(samples, "http_server_request_duration_seconds_count", service_name=service, **labels):
        if v:
            got[(l["http_request_method"], l["http_route"], l["http_response_status_code"])] += int(v)
    return got


def diff_counts(expected, got):
    keys = sorted(set(expected) | set(got))
    return "\n".join(f"  {k}: oracle={expected.get(k, 0)} loupe={got.get(k, 0)}"
                     for k in keys if expected.get(k, 0) != got.get(k, 0))
