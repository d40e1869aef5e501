"""Helpers for end-to-end tests: a real loupe agent, real servers, real load generators.

Every test starts its own agent on its own port, drives real traffic, scrapes /metrics and compares
the numbers with an independent oracle (the server's own log)."""
import atexit
import json
import os
import random
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


def bpftool_json(*args, attempts=5):
    """`bpftool -j ARGS` parsed. bpftool lists object ids, then opens each: one created or freed
    in between (the agent's start-up feature probes load and attach throwaway programs) makes it
    fail with "can't get link by id ... Resource temporarily unavailable". Such a run is retried."""
    for attempt in range(attempts):
        run = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True)
        if run.returncode == 0:
            return json.loads(run.stdout)
        time.sleep(0.1)
    fail(f"bpftool {' '.join(args)} failed {attempts} times: {(run.stdout + run.stderr)[-300:]}")


class NetnsPair:
    """Two network namespaces for one test, `a` and `b` ({prefix}-X-a, {prefix}-X-b), with
    addresses ip_a and ip_b in a 10.{subnet}.X.0/24 no interface here uses. The constructor only
    picks X; create() adds the namespaces; remove() (also run at exit, so that a failing test
    leaves none behind) deletes them."""

    def __init__(self, prefix, subnet):
        self.created = []
        atexit.register(self.remove)
        existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        addresses = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
        for _ in range(100):
            x = random.randint(1, 254)
            if f"{prefix}-{x}-" not in existing and f"10.{subnet}.{x}." not in addresses:
                break
        else:
            fail(f"no free 10.{subnet}.X.0/24 for the test's namespaces")
        self.x = x
        self.a, self.b = f"{prefix}-{x}-a", f"{prefix}-{x}-b"
        self.ip_a, self.ip_b = f"10.{subnet}.{x}.1", f"10.{subnet}.{x}.2"

    def create(self):
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            self.created.append(ns)

    def remove(self):
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], check=False)
        self.created = []


def net_counter(path, group, name, ns=None):
    """A counter of /proc/net/snmp or /proc/net/netstat (a header line and a value line per group,
    e.g. "Tcp:" "RetransSegs", "TcpExt:" "TCPAutoCorking") of network namespace `ns` (None: ours)."""
    if ns:
        text = subprocess.run(["ip", "netns", "exec", ns, "cat", path], check=True, capture_output=True,
                              text=True).stdout
    else:
        with open(path) as f:
            text = f.read()
    lines = [line.split() for line in text.splitlines() if line.startswith(group)]
    for header, values in zip(lines[::2], lines[1::2]):
        if name in header:
            return int(values[header.index(name)])
    fail(f"no {group} {name} in {path}")


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
    """A `loupe agent` subprocess on a free loopback port (or on `port`)."""

    def __init__(self, *args, port=None):
        self.port = port or free_port()
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

    def set_hooks_paused(self, paused, timeout=10.0):
        """SIGUSR1 (pause) or SIGUSR2 (resume), then waits until /api/v1/agent reports it; returns that body."""
        self.proc.send_signal(signal.SIGUSR1 if paused else signal.SIGUSR2)
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, body = self.api("/api/v1/agent")
            if body["hooks_paused"] == paused:
                return body
            time.sleep(0.02)
        fail(f"/api/v1/agent never showed hooks_paused={paused}")

    def settle(self, seconds=0.6):
        """Lets the agent drain its ring buffer (every 100 ms at most) and parse: waits `seconds`,
        then until loupe_events_total stops moving (at most 4 s more), so that a machine busy
        with other work (a loaded CI host) does not make a test read counts the agent has not
        reached yet. Traffic still flowing only costs the wait."""
        time.sleep(seconds)
        deadline = time.time() + 4
        last = None
        while time.time() < deadline:
            try:
                status, body = http_get(self.url("/metrics"))
            except OSError:
                return  # no endpoint (or not yet): the plain wait is all there is
            if status != 200:
                return
            m = re.search(r"^loupe_events_total (\S+)$", body, re.M)
            if not m or m.group(1) == last:
                return
            last = m.group(1)
            time.sleep(0.3)

    def stop(self, timeout=5):
        """SIGTERM must end the agent cleanly (exit 0) within `timeout` seconds (benchmarks that
        stop it under heavy load give it longer). Returns the seconds it took."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                fail(f"agent did not stop within {timeout} s of SIGTERM")
            if rc != 0:
                fail(f"agent exited {rc} on SIGTERM:\n" + self.logs())
        os.unlink(self.log.name)
        return time.monotonic() - started


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


def self_signed_certificate(directory, name="localhost"):
    """(certificate, key) paths of a fresh self-signed certificate for 127.0.0.1 (openssl CLI)."""
    require_tools("openssl")
    cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class Nginx:
    """A private nginx (Debian's binary) with locations answering 200, 301, 404 and 500, an access
    log in a fixed format (the oracle), and a 20 KB file served with sendfile. `locations`: more
    nginx configuration for its server block."""

    LOG_FORMAT = '$status $request_method $request_uri "$http_user_agent"'

    def __init__(self, workers=2, locations="", tls=False):
        require_tools("nginx")
        self.work = tempfile.mkdtemp(prefix="loupe-nginx-")
        self.port = free_port()
        self.scheme = "https" if tls else "http"
        listen = f"127.0.0.1:{self.port}"
        if tls:
            cert, key = self_signed_certificate(self.work)
            listen += f" ssl;\n        ssl_certificate {cert};\n        ssl_certificate_key {key}"
        os.makedirs(f"{self.work}/static")
        os.makedirs(f"{self.work}/root")
        # nginx's own default page (served with sendfile), as in BRIEF's overhead measurements.
        default_page = "/usr/share/nginx/html/index.html"
        if os.path.exists(default_page):
            shutil.copy(default_page, f"{self.work}/root/index.html")
        else:
            with open(f"{self.work}/root/index.html", "w") as f:
                f.write("<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>"
                        "<body><h1>Welcome to nginx!</h1></body></html>\n" + " " * 500)
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
        listen {listen};
        root {w}/root;
        location = /ok {{ return 200 "ok\\n"; }}
        location = /redirect {{ return 301 /ok; }}
        location = /error {{ return 500; }}
        location /users/ {{ return 200 "user\\n"; }}
        location /static/ {{ alias {w}/static/; }}
        {locations}
    }}
}}
"""
        with open(f"{w}/nginx.conf", "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["nginx", "-c", f"{w}/nginx.conf", "-p", w])
        atexit.register(self.stop)
        wait_port(self.port)

    def url(self, path):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

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


# --- Helpers for the resource-metric tests (test_resources_*.py) ---------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
_REAL_PYTHON = os.path.realpath(sys.executable)


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`. Fails, showing what is there,
    when no sample matches: a test must never pass on a metric that is absent."""
    found = select(samples, name, **labels)
    if not found:
        present = sorted(str(dict(sorted(l.items()))) for l, _ in select(samples, name))
        ours = [p for p in present if "loupe_" in p]
        shown = (ours or present)[:20]
        fail(f"no sample {name}{labels or ''}; {len(present)} series of it exist"
             + (f", e.g. {shown}" if shown else " (metric absent)"))
    return sum(v for _, v in found)


def metric_or(samples, name, default, **labels):
    """Like metric(), but `default` when no sample matches (for zero checks on optional series)."""
    found = select(samples, name, **labels)
    return sum(v for _, v in found) if found else default


def histogram(samples, name, **labels):
    """([(le, cumulative count)] sorted by le, count, sum) of histogram `name`, summed over the
    series whose labels include `labels`."""
    buckets = {}
    for l, v in select(samples, name + "_bucket", **labels):
        le = float(l["le"])
        buckets[le] = buckets.get(le, 0.0) + v
    if not buckets:
        metric(samples, name + "_bucket", **labels)  # fails with what is there
    return sorted(buckets.items()), metric(samples, name + "_count", **labels), metric(samples, name + "_sum", **labels)


def quantile_bucket(buckets, q):
    """(lower, upper] bounds of the bucket of a cumulative histogram that holds its q-quantile."""
    total = buckets[-1][1]
    if total <= 0:
        fail("quantile of an empty histogram")
    rank, lower = q * total, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            return lower, le
        lower = le
    return lower, float("inf")


def time_limit(seconds):
    """Fails the test (SystemExit, so `finally` blocks still clean up) after `seconds`."""
    def expired(signum, frame):
        fail(f"test exceeded its {seconds} s time limit")
    signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)


class Workload:
    """A Python script running under its own process name `comm`: it is exec'd through a symlink
    called `comm` to the real interpreter, so the kernel names the process `comm` from exec on
    (/proc/PID/comm is the basename of the executed path, at most 15 characters). Talks to the
    test line by line over stdin/stdout; killed (and its directory removed) at exit. With `nice`,
    it runs in its own session and scheduler autogroup, both niced: a way to get a full core on a
    machine that is busy with other sessions. `preexec` runs in the child before exec, while the
    child still carries the test's own name. `python` names another interpreter, e.g. node with
    code_flag "-e"."""

    def __init__(self, comm, code, *args, netns=None, nice=0, preexec=None, python=None, code_flag="-c"):
        if len(comm) > 15:
            fail(f"process name {comm!r} is longer than the kernel's 15 characters")
        self.comm = comm
        self.dir = tempfile.mkdtemp(prefix="loupe-workload-")
        path = os.path.join(self.dir, comm)
        os.symlink(os.path.realpath(python) if python else _REAL_PYTHON, path)
        argv = [path, code_flag, code, *map(str, args)]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]  # ip execs the command: same pid
        def before_exec():
            if nice:
                _renice_session(nice)
            if preexec:
                preexec()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     preexec_fn=before_exec if nice or preexec else None)
        self.pid = self.proc.pid
        self.rusage = None
        self._buffer = b""
        atexit.register(self.kill)
        deadline = time.time() + 10
        while self.comm_now() != comm:
            if self.proc.poll() is not None or time.time() > deadline:
                fail(f"workload {comm} did not start (exit code {self.proc.poll()}, comm {self.comm_now()!r})")
            time.sleep(0.01)

    def comm_now(self):
        try:
            with open(f"/proc/{self.pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return None

    def readline(self, timeout=30.0):
        """The next line the workload prints (without newline); fails after `timeout`."""
        import select as select_module
        deadline = time.time() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.time()
            if left <= 0:
                fail(f"workload {self.comm} printed nothing for {timeout} s")
            ready, _, _ = select_module.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    fail(f"workload {self.comm} exited (code {self.proc.wait()}) before printing a line")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def wait_stopped(self, timeout=30.0):
        """Waits until the workload stopped itself (SIGSTOP): its counters are frozen from then on."""
        deadline = time.time() + timeout
        while proc_state(self.pid) != "T":
            if self.proc.poll() is not None or time.time() > deadline:
                fail(f"workload {self.comm} did not stop (state {proc_state(self.pid)}, exit {self.proc.poll()})")
            time.sleep(0.01)

    def reap(self, timeout=30.0):
        """Waits for the exit; returns (exit status, CPU seconds of the process from wait4's rusage)."""
        deadline = time.time() + timeout
        while True:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.rusage = rusage
                return self.proc.returncode, rusage.ru_utime + rusage.ru_stime
            if time.time() > deadline:
                fail(f"workload {self.comm} did not exit within {timeout} s")
            time.sleep(0.01)

    def kill(self):
        if self.proc.returncode is None and self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _renice_session(nice):
    """In a child before exec: its own session, so its own scheduler autogroup (with autogroups on,
    nice only ranks tasks within a session), and that autogroup and the task niced by `nice`."""
    os.setsid()
    os.nice(nice)
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass  # no autogroups: the task's own nice is all there is


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def proc_cpu_seconds(pid):
    """utime + stime of a process from /proc/PID/stat, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_io(pid):
    """/proc/PID/io as {key: int}."""
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(":") for line in f if ":" in line)}


def proc_status_bytes(pid, key):
    """A `kB` field of /proc/PID/status (e.g. VmRSS), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    fail(f"/proc/{pid}/status has no {key}")


def meminfo_bytes():
    """/proc/meminfo as {key: bytes}."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            parts = value.split()
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out
