#!/usr/bin/env python3
"""The shipped Grafana dashboard and Prometheus config against a real agent and a real Prometheus.

1. deploy/grafana/loupe-dashboard.json is valid (tests/deploy/dashboard/validate_dashboard.mjs:
   Grafana's schema from @grafana/schema, PromQL syntax, filters), and it lists the metrics the
   dashboard queries.
2. A `loupe agent` on the port deploy/prometheus/prometheus.yml scrapes (127.0.0.1:9464) watches a
   uniquely named python HTTP server and client exchanging a known number of requests (plus
   connections reset by the client, and an agent alert rule that fires on the traffic). Every metric
   the dashboard queries exists in the agent's real /metrics, with the labels the dashboard filters
   by, and with samples of the test's own services. A redis-server and a Redis client (a uniquely
   named python3 speaking RESP) run beside them, so that the database panels have data.
3. `promtool check config` accepts the shipped prometheus.yml; a real Prometheus runs a copy of it
   (scrape_interval shortened to 1s, targets as shipped) with the shipped rules, scrapes the agent,
   and its per-series request counts for the server equal the server's own access log, exactly
   (traffic sent before Prometheus started, then more while it scrapes); up{job="loupe"} is 1.
4. Every query of the dashboard (panels and variables), expanded as Grafana sends it with the test's
   services selected and the namespace at All (".*", the label is absent outside Kubernetes), runs
   in that Prometheus without error and returns data (Prometheus's own ALERTS aside).
The database panels' metrics exist only in an agent built with the Redis protocol: against an agent
that exports no loupe_redis_* counters, their checks are reported as waived (their queries must
still run without error), and everything else is checked as before.
Needs root (BPF), node + npm, prometheus + promtool, redis-server; port 9464 must be free."""
import atexit
import collections
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse

from loupe_e2e import (LOUPE, Agent, Workload, diff_counts, fail, free_port, http_get, normalize_route, parse_metrics,
                       require_root, require_tools, select, time_limit, wait_port)

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "../.."))
PROMETHEUS_DIR = os.path.join(ROOT, "deploy/prometheus")
SHIPPED_CONFIG = os.path.join(PROMETHEUS_DIR, "prometheus.yml")
DASHBOARD = os.path.join(ROOT, "deploy/grafana/loupe-dashboard.json")
VALIDATOR_DIR = os.path.join(ROOT, "tests/deploy/dashboard")
README = os.path.join(ROOT, "README.md")

# Families that only have samples once an event happened that this test cannot cause on loopback:
# a TCP retransmission needs a lost segment. For them the family's HELP/TYPE lines must be exported
# and the README must document the metric.
NEEDS_UNPRODUCIBLE_EVENT = {"loupe_process_tcp_retransmits_total"}

# Families of the database panels and of the Redis parser: they exist only in an agent that has the
# Redis protocol (its loupe_redis_* counters are exported from the start).
DATABASE_FAMILY = re.compile(r"^(db_|loupe_db_|loupe_redis_)")

SERVER = r"""
import os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = open(sys.argv[2], "a")
lock = threading.Lock()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/fail":
            self.reply(500, b"boom\n")
        elif path == "/missing":
            self.reply(404, b"no\n")
        else:
            self.reply(200, b"ok " * 200)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(201, b"created\n")
    do_HEAD = do_GET
    def log_request(self, code="-", size="-"):
        # The oracle: one line per answered request, written (and synced: real storage writes for
        # process_disk_io_bytes_total) before the next request on this connection is read.
        with lock:
            log.write(f"{code} {self.command} {self.path}\n")
            log.flush()
            os.fsync(log.fileno())
    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass  # connections the client resets on purpose

print("ready", flush=True)
Server(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

# On each "go" line, sends the (method, path) pairs given as JSON on argv over keep-alive
# connections of 10 requests, then a few connections it resets (SO_LINGER 0) after a complete
# exchange; prints "done N" (N: requests of this round).
CLIENT = r"""
import http.client, json, socket, struct, sys
port, plan, resets = int(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
while sys.stdin.readline().strip() == "go":
    sent = 0
    for i in range(0, len(plan), 10):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for method, path in plan[i:i + 10]:
            body = b"x" * 100 if method == "POST" else None
            conn.request(method, path, body=body)
            conn.getresponse().read()
            sent += 1
        conn.close()
    for _ in range(resets):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/reset")
        conn.getresponse().read()
        sent += 1
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST: sent by this client, received by the server
    print(f"done {sent}", flush=True)
"""

# On each "go" line, a Redis client on argv[1]'s port: per key, SET, GET (a hit), GET of a missing key
# (a miss), MGET of both (a hit and a miss), LPUSH on the string (a WRONGTYPE error); prints
# "done N" (N: commands of this round, each answered).
REDIS_CLIENT = r"""
import socket, sys
port = int(sys.argv[1])
conn = socket.create_connection(("127.0.0.1", port), timeout=10)
reader = conn.makefile("rb")

def command(*words):
    conn.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words))
    line = reader.readline()
    if line[:1] == b"$" and int(line[1:]) >= 0:
        reader.read(int(line[1:]) + 2)
    elif line[:1] == b"*":
        for _ in range(int(line[1:])):
            item = reader.readline()
            if item[:1] == b"$" and int(item[1:]) >= 0:
                reader.read(int(item[1:]) + 2)
    return line[:1]

print("ready", flush=True)
while sys.stdin.readline().strip() == "go":
    sent = errors = 0
    for i in range(20):
        key, missing = b"k%d" % i, b"missing%d" % i
        for words in ((b"SET", key, b"v" * 10), (b"GET", key), (b"GET", missing), (b"MGET", key, missing),
                      (b"LPUSH", key, b"x")):
            errors += command(*words) == b"-"
            sent += 1
    print(f"done {sent} errors {errors}", flush=True)
"""


class RedisServer:
    """redis-server under its own process name `comm` (exec'd through a symlink of that name), on
    loopback, without persistence."""

    def __init__(self, comm, port, work):
        link = os.path.join(work, comm)
        os.symlink(shutil.which("redis-server"), link)
        self.proc = subprocess.Popen([link, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", work, "--daemonize", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(self.stop)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run(argv, cwd=None, what=None, timeout=300):
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        fail(f"{what or ' '.join(argv)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout


# --- the dashboard -------------------------------------------------------------------------------

def validate_dashboard():
    """Installs the validator's locked packages when missing, validates the dashboard, and returns
    (families, selectors, queries) it queries: sorted family names, [{name, family, scope}], and the
    panel and variable queries."""
    if not os.path.isdir(os.path.join(VALIDATOR_DIR, "node_modules")):
        print("npm ci in tests/deploy/dashboard")
        run(["npm", "ci", "--no-audit", "--no-fund"], cwd=VALIDATOR_DIR, what="npm ci")
    node = ["node", os.path.join(VALIDATOR_DIR, "validate_dashboard.mjs")]
    print(run(node + [DASHBOARD], what="dashboard validation").strip())
    families = run(node + ["--list-metrics", DASHBOARD], what="--list-metrics").split()
    selectors = json.loads(run(node + ["--list-selectors", DASHBOARD], what="--list-selectors"))
    queries = json.loads(run(node + ["--list-queries", DASHBOARD], what="--list-queries"))
    if len(families) < 20 or not selectors or len(queries) < 20:
        fail(f"the validator found too few metrics or queries in the dashboard: {families}")
    return families, selectors, queries


# --- the shipped Prometheus config ---------------------------------------------------------------

def shipped_target():
    """The one scrape target of job loupe in the shipped prometheus.yml, as (host, port)."""
    with open(SHIPPED_CONFIG) as f:
        text = f.read()
    if not re.search(r"^\s*-\s*job_name:\s*loupe\s*$", text, re.M):
        fail("deploy/prometheus/prometheus.yml has no job_name: loupe")
    targets = re.findall(r'targets:\s*\[([^\]]*)\]', text)
    hosts = [t.strip().strip("'\"") for group in targets for t in group.split(",") if t.strip()]
    scrape = [h for h in hosts if not h.endswith(":9093")]  # the Alertmanager's target
    if len(scrape) != 1:
        fail(f"expected one scrape target in prometheus.yml, found {scrape}")
    host, port = scrape[0].rsplit(":", 1)
    return host, int(port)


def port_must_be_free(port):
    """Fails when a socket listens on `port` (any address). /proc/net/tcp{,6} rather than a test bind:
    the agent's listener allows address and port reuse, so TIME_WAIT connections of an earlier run
    make a plain bind fail, while a reuse-port bind would succeed next to a live agent."""
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    listening.append(fields[1])
    if listening:
        who = subprocess.run(["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
        fail(f"port {port}, the target deploy/prometheus/prometheus.yml scrapes, is already taken; "
             f"stop what listens there and re-run:\n{who}")


class Prometheus:
    """A real Prometheus on a copy of the shipped config and rules, scraping every second."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="loupe-prometheus-")
        atexit.register(self.stop)
        with open(SHIPPED_CONFIG) as f:
            config = f.read()
        config, n = re.subn(r"^(\s*scrape_interval:\s*)15s\b", r"\g<1>1s", config, flags=re.M)
        if n != 1:
            fail("prometheus.yml: no global `scrape_interval: 15s` to shorten in the copy")
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write(config)
        for name in re.findall(r"^\s*-\s*(\S+\.ya?ml)\s*$", config, re.M):  # rule_files, relative
            shutil.copy(os.path.join(PROMETHEUS_DIR, name), self.dir)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.dir}/prometheus.yml", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                fail(f"prometheus exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if http_get(self.url("/-/ready"), timeout=0.5)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                fail("prometheus not ready within 30 s:\n" + self.logs())
            time.sleep(0.2)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self):
        with open(os.path.join(self.dir, "prometheus.log")) as f:
            return f.read()[-4000:]

    def api(self, path):
        status, body = http_get(self.url(path))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            fail(f"prometheus {path} answered {status}: {body[:500]}")
        return doc["data"]

    def query(self, promql):
        return self.api("/api/v1/query?query=" + urllib.parse.quote(promql))["result"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the checks ----------------------------------------------------------------------------------

def exposition_types(text):
    """{family: type} from the # TYPE lines of an exposition."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def check_dashboard_metrics(text, families, selectors, ours, unchecked=frozenset()):
    """Every metric the dashboard queries is in the agent's real exposition: the family's TYPE line,
    samples of every name as queried (suffixes only on histograms/summaries), service_name on every
    sample of per-service metrics and on none of the global ones, and samples of our services.
    Families in `unchecked` (the database ones, against an agent without Redis) are reported as
    waived instead."""
    samples = parse_metrics(text)
    types = exposition_types(text)
    names = collections.defaultdict(list)
    for (name, labels), _ in samples.items():
        names[name].append(dict(labels))
    problems, waived = [], []
    for family in sorted(unchecked):
        waived.append(f"{family}: not checked (this agent has no Redis protocol)")
    for family in families:
        if family in unchecked:
            continue
        if family not in types:
            problems.append(f"{family}: no `# TYPE {family}` line in /metrics (metric not exported)")
    for s in selectors:
        name, family, scope = s["name"], s["family"], s["scope"]
        if scope == "prometheus" or family in unchecked:
            continue  # ALERTS: Prometheus's own series
        kind = types.get(family)
        if kind is None:
            continue  # reported above
        if name != family:
            allowed = ("histogram",) if name.endswith("_bucket") else ("histogram", "summary")
            if kind not in allowed:
                problems.append(f"{name}: the dashboard queries it as a {'/'.join(allowed)} sample, "
                                f"but {family} is a {kind}")
                continue
        got = names.get(name, [])
        if not got:
            if family in NEEDS_UNPRODUCIBLE_EVENT:
                with open(README) as f:
                    documented = f"`{family}`" in f.read()
                if not documented:
                    problems.append(f"{name}: no sample, and README.md does not document it")
                else:
                    waived.append(f"{name}: no sample (needs a TCP retransmission, which loopback does not "
                                  f"produce); HELP/TYPE exported ({kind}) and documented in README.md")
                continue
            problems.append(f"{name}: no sample in /metrics")
            continue
        if scope == "service":
            missing = [l for l in got if "service_name" not in l]
            if missing:
                problems.append(f"{name}: samples without service_name (the dashboard filters by it): {missing[:3]}")
            if not any(l.get("service_name") in ours for l in got):
                problems.append(f"{name}: no sample of the test's services {sorted(ours)}; present: "
                                f"{sorted({l.get('service_name') for l in got})[:10]}")
        elif scope == "global":
            labelled = [l for l in got if "service_name" in l]
            if labelled:
                problems.append(f"{name}: the dashboard treats it as agent/node-wide, but it has service_name: {labelled[:3]}")
    for w in waived:
        print("note: " + w)
    if problems:
        fail("metrics the dashboard queries, against the agent's real /metrics:\n  " + "\n  ".join(problems))
    print(f"dashboard metrics: {len(families)} families, {len(selectors)} names as queried, all in the agent's "
          f"/metrics ({len(waived)} waived)")


def metric_sum(samples, name):
    return sum(v for _, v in select(samples, name))


def grafana_expand(expr, services):
    """The expression as Grafana sends it with these services selected (a multi-value variable
    becomes a regex alternation) and the namespace at All (its allValue, ".*")."""
    return (expr.replace("$service_name", "(" + "|".join(services) + ")")
            .replace("$k8s_namespace_name", ".*")
            .replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "15s"))


def run_dashboard_queries(prom, queries, services, unchecked=frozenset()):
    """Every panel query runs without error in Prometheus and, except those on Prometheus's own
    ALERTS (no shipped rule fires within the test: they all wait 5 minutes) and those on families in
    `unchecked`, returns series of the test's services, or of the agent or node for global metrics.
    The service variable, at namespace All, offers the test's services."""
    # Rates need two samples after the second round of traffic.
    wait_for(lambda: (bool(prom.query(f'sum(rate(http_server_request_duration_seconds_count{{service_name="{services[0]}"}}[1m])) > 0')), None),
             "prometheus has no request rate", 20)
    empty, errors, waived = [], [], []
    for q in queries:
        if "variable" in q:
            m = re.match(r"^label_values\((.*),\s*(\w+)\)$", q["query"].strip(), re.S)
            match = grafana_expand(m.group(1), services)
            values = prom.api(f"/api/v1/label/{m.group(2)}/values?match[]=" + urllib.parse.quote(match))
            if q["variable"] == "service_name" and not set(services) <= set(values):
                errors.append(f"variable service_name ({q['query']}) offers {values}, not {services}")
            continue
        expr = grafana_expand(q["expr"], services)
        status, body = http_get(prom.url("/api/v1/query?query=" + urllib.parse.quote(expr)))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            errors.append(f"{q['panel']} {q['refId']}: {doc.get('error', body[:300])}\n    {expr}")
        elif not doc["data"]["result"] and "ALERTS" not in expr:
            if any(re.search(rf"\b{f}", expr) for f in unchecked):
                waived.append(f"{q['panel']} {q['refId']}")
            else:
                empty.append(f"{q['panel']} {q['refId']}: {expr}")
    if errors or empty:
        fail("dashboard queries in Prometheus:\n  " + "\n  ".join(errors + [f"no data: {e}" for e in empty]))
    if waived:
        print(f"note: {len(waived)} database queries ran without error but have no data (this agent has no "
              f"Redis protocol): {waived}")
    print(f"prometheus: all {len(queries)} dashboard queries run, with data (ALERTS aside, {len(waived)} waived)")


def read_access_log(path):
    """Counter{(method, route, status)} of the server's own log."""
    got = collections.Counter()
    with open(path) as f:
        for line in f:
            status, method, uri = line.split()
            got[(method, normalize_route(uri), status)] += 1
    return got


def wait_for(predicate, what, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        ok, last = predicate()
        if ok:
            return last
        time.sleep(0.5)
    fail(f"{what} within {timeout} s (last: {last})")


def main():
    require_root()
    require_tools("node", "npm", "prometheus", "promtool", "ss", "redis-server")
    time_limit(170)

    # 1. The dashboard is valid; the metrics it queries.
    families, selectors, queries = validate_dashboard()

    # 2. The shipped config parses; its target is where the agent goes.
    print(run(["promtool", "check", "config", SHIPPED_CONFIG], what="promtool check config").strip())
    host, port = shipped_target()
    if (host, port) != ("127.0.0.1", 9464):
        fail(f"prometheus.yml scrapes {host}:{port}, the agent's default is 127.0.0.1:9464")
    port_must_be_free(port)

    tag = os.urandom(3).hex()
    server_name, client_name = f"lpsrv{tag}", f"lpcli{tag}"  # unique: other tests may run alongside
    db_server_name, db_client_name = f"lprds{tag}", f"lpdbc{tag}"
    ours = (server_name, client_name, db_server_name, db_client_name)
    work = tempfile.mkdtemp(prefix="loupe-scrape-", dir="/var/tmp")  # on disk, not tmpfs: real storage writes
    atexit.register(shutil.rmtree, work, True)
    access_log = os.path.join(work, "access.log")
    config = os.path.join(work, "loupe.yaml")
    with open(config, "w") as f:
        # An agent rule that fires on the test's traffic, so loupe_alerts_firing has a sample.
        f.write(f"""alerting:
  evaluation_interval: 1s
  rules:
    - name: ScrapeTestTraffic
      service: {server_name}
      signal: request_rate
      window: 1m
      above: 0
      for: 0s
      severity: info
      summary: "the scrape test's server has traffic"
""")
    agent = Agent("--config", config, *[arg for name in ours for arg in ("--comm", name)], port=port)
    # An agent built without the Redis protocol exports no loupe_redis_* counter: the database panels
    # cannot have data; their checks are waived (and said so).
    redis_known = "loupe_redis_exchanges_total" in exposition_types(agent.metrics_text())
    unchecked = frozenset() if redis_known else frozenset(f for f in families if DATABASE_FAMILY.match(f))
    if unchecked:
        print(f"note: this agent exports no loupe_redis_* counters (no Redis protocol): the {len(unchecked)} "
              f"database families of the dashboard are not checked: {sorted(unchecked)}")

    server_port = free_port()
    server = Workload(server_name, SERVER, server_port, access_log)
    if server.readline() != "ready":
        fail("server did not start")
    wait_port(server_port)

    plan = []
    for i in range(30):
        plan += [("GET", "/ok"), ("GET", f"/items/{i}"), ("GET", "/missing"), ("GET", "/fail"),
                 ("POST", "/orders"), ("HEAD", "/ok"), ("GET", "/ok?q=1")]
    resets = 5
    sent = len(plan) + resets
    client = Workload(client_name, CLIENT, server_port, json.dumps(plan), resets)
    if client.readline() != "ready":
        fail("client did not start")
    redis_port = free_port()
    redis = RedisServer(db_server_name, redis_port, work)
    wait_port(redis_port)
    db_client = Workload(db_client_name, REDIS_CLIENT, redis_port)
    if db_client.readline() != "ready":
        fail("Redis client did not start")
    # --comm narrows capture in the kernel to the pids of a /proc scan the agent makes every second:
    # a process that started after the agent is traced from the first scan that saw it. That scan
    # also adds it to loupe_processes, so once both services are there, every request is seen.
    wait_for(lambda: (all(select(agent.metrics(), "loupe_processes", service_name=n)
                          for n in ours), None),
             "the agent did not pick up the test's servers and clients", 10)

    def traffic_round(total_before):
        """One round of the client's plan; returns the access log, checked against what was sent."""
        client.send("go")
        db_client.send("go")
        done = client.readline(timeout=60)
        if done != f"done {sent}":
            fail(f"client: {done!r}, expected 'done {sent}'")
        done = db_client.readline(timeout=60)
        if done != "done 100 errors 20":  # every LPUSH on a string: WRONGTYPE
            fail(f"Redis client: {done!r}, expected 'done 100 errors 20'")
        agent.settle(1.5)
        log = read_access_log(access_log)
        if sum(log.values()) != total_before + sent:
            fail(f"the server logged {sum(log.values())} requests, the client sent {total_before + sent}")
        return log

    expected = traffic_round(0)

    # The agent's alert fires on the traffic (evaluated every second).
    wait_for(lambda: (bool(select(agent.metrics(), "loupe_alerts_firing", alertname="ScrapeTestTraffic",
                                  service_name=server_name)), None),
             "the agent's ScrapeTestTraffic alert did not fire", 20)
    # Resources are sampled once a second: let a sample cover the traffic.
    time.sleep(1.2)

    # 3. Every metric the dashboard queries is in the real /metrics.
    text = agent.metrics_text()
    check_dashboard_metrics(text, families, selectors, set(ours), unchecked)
    samples = parse_metrics(text)
    resets_received = sum(v for _, v in select(samples, "loupe_process_tcp_resets_total", service_name=server_name,
                                               direction="received"))
    if resets_received < resets:
        fail(f"{server_name} received {resets} resets, loupe counts {resets_received}")
    loupe_counts = collections.Counter()
    for l, v in select(samples, "http_server_request_duration_seconds_count", service_name=server_name):
        loupe_counts[(l["http_request_method"], l["http_route"], l["http_response_status_code"])] += int(v)
    if loupe_counts != expected:
        parser = {n: metric_sum(samples, n) for n in ("loupe_events_dropped_total", "loupe_http_unparsed_segments_total",
                                                      "loupe_http_unmatched_responses_total")}
        fail(f"the agent's counts differ from {server_name}'s access log ({parser}):\n" + diff_counts(expected, loupe_counts))
    print(f"agent: {sent} requests, {len(expected)} series, equal to the server's access log")

    # 4. A real Prometheus on (a copy of) the shipped config scrapes the agent.
    prom = Prometheus()

    def target_up():
        targets = prom.api("/api/v1/targets")["activeTargets"]
        ours = [t for t in targets if t["labels"].get("job") == "loupe"]
        return bool(ours) and all(t["health"] == "up" for t in ours), [
            (t["scrapeUrl"], t["health"], t.get("lastError")) for t in ours]
    targets = wait_for(target_up, "the loupe target is not up in Prometheus", 30)
    print(f"prometheus {prom.port}: targets {targets}")
    if targets[0][0] != f"http://{host}:{port}/metrics":
        fail(f"prometheus scrapes {targets[0][0]}, not the shipped target")

    query = f'http_server_request_duration_seconds_count{{service_name="{server_name}"}}'

    def prometheus_counts_equal(expected):
        """Waits until Prometheus's latest scrape has as many requests as the access log, then
        compares series by series: exact."""
        total = sum(expected.values())

        def counts_scraped():
            got = collections.Counter()
            for r in prom.query(query):
                m = r["metric"]
                got[(m["http_request_method"], m["http_route"], m["http_response_status_code"])] += int(float(r["value"][1]))
            return sum(got.values()) == total, got
        got = wait_for(counts_scraped, f"prometheus did not get {total} requests of {server_name}", 30)
        if got != expected:
            fail("prometheus's per-series counts differ from the access log:\n" + diff_counts(expected, got))
        print(f"prometheus: {query} sums to {total}, per series equal to the access log")

    # Traffic before Prometheus started, then traffic while it scrapes every second.
    prometheus_counts_equal(expected)
    up = prom.query('up{job="loupe"}')
    if len(up) != 1 or up[0]["value"][1] != "1":
        fail(f'up{{job="loupe"}} is not 1: {up}')
    print('prometheus: up{job="loupe"} = 1')
    expected = traffic_round(sum(expected.values()))
    prometheus_counts_equal(expected)

    # 5. The dashboard's own queries, run by the real Prometheus as Grafana sends them.
    run_dashboard_queries(prom, queries, ours, unchecked)

    prom.stop()
    db_client.kill()
    redis.stop()
    client.kill()
    server.kill()
    agent.stop()
    print("prometheus_scrape: ok")


if __name__ == "__main__":
    main()
