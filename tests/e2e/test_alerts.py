#!/usr/bin/env python3
"""Alerts end to end with a real Alertmanager (Debian's prometheus-alertmanager on loopback): a
slow service makes a p95 rule fire and Alertmanager lists it with the right labels; removing the
cause resolves it. Alertmanager down: retries counted, no crash. A bad rule is refused at start;
SIGHUP with an invalid file keeps the old rules."""
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from loupe_e2e import (LOUPE, Agent, Workload, fail, free_port, http_get, require_root, require_tools, select,
                       wait_port)

SLOW_SERVER = r"""
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

print("ready", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def drive(port, path, stop, pause=0.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    while not stop.is_set():
        conn.request("GET", path)
        conn.getresponse().read()
        if pause:
            time.sleep(pause)


def am_alerts(am_port, name):
    status, body = http_get(f"http://127.0.0.1:{am_port}/api/v2/alerts")
    if status != 200:
        fail(f"Alertmanager answered {status}")
    return [a for a in json.loads(body) if a["labels"].get("alertname") == name]


def wait(predicate, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    fail(f"{what} within {timeout} s")


class WebhookSink:
    """A JSON webhook receiver on loopback that keeps every document POSTed to it."""

    def __init__(self):
        self.documents = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.documents.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def write_config(path, am_url, extra_rule="", webhook_url=""):
    with open(path, "w") as f:
        f.write(f"""
alerting:
  alertmanager_url: {am_url}
  webhook_url: "{webhook_url}"
  evaluation_interval: 1s
  resend_interval: 2s
  default_rules: false
  rules:
    - name: SlowService
      service: loupe_slowsrv
      signal: latency_p95
      window: 30s
      above: 0.2
      for: 3s
      severity: warning
      labels: {{team: e2e}}
      summary: "p95 of {{{{ $labels.service_name }}}} is {{{{ $value }}}}s"
{extra_rule}""")


def main():
    require_root()
    require_tools("prometheus-alertmanager")
    work = tempfile.mkdtemp(prefix="loupe-alerts-")
    am_port = free_port()
    with open(f"{work}/am.yml", "w") as f:
        f.write("route: {receiver: sink, group_wait: 1s, group_interval: 1s}\nreceivers: [{name: sink}]\n")
    am = subprocess.Popen(["prometheus-alertmanager", f"--config.file={work}/am.yml", f"--storage.path={work}/data",
                           f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server_port = free_port()
    server = Workload("loupe_slowsrv", SLOW_SERVER, server_port)
    stop = threading.Event()
    try:
        wait_port(am_port)
        server.readline()
        wait_port(server_port)
        config = f"{work}/loupe.yaml"
        webhook = WebhookSink()
        write_config(config, f"http://127.0.0.1:{am_port}", webhook_url=webhook.url)
        agent = Agent("--config", config)

        # The cause: every request takes 300 ms.
        slow = [threading.Thread(target=drive, args=(server_port, "/slow", stop)) for _ in range(3)]
        for t in slow:
            t.start()
        started = time.time()
        alerts = wait(lambda: am_alerts(am_port, "SlowService"), "SlowService never reached Alertmanager", 40)
        labels = alerts[0]["labels"]
        expected = {"alertname": "SlowService", "service_name": "loupe_slowsrv", "severity": "warning", "team": "e2e"}
        if any(labels.get(k) != v for k, v in expected.items()):
            fail(f"Alertmanager has the alert with wrong labels: {labels}")
        if "p95 of loupe_slowsrv is 0.3" not in alerts[0]["annotations"].get("summary", ""):
            fail(f"summary not templated: {alerts[0]['annotations']}")
        print(f"fired and delivered after {time.time() - started:.1f} s: {labels}")
        hooked = [a for doc in webhook.documents for a in doc if a["labels"].get("alertname") == "SlowService"]
        if not hooked or hooked[0]["labels"].get("service_name") != "loupe_slowsrv":
            fail(f"the webhook did not receive the alert: {webhook.documents}")
        _, api = agent.api("/api/v1/alerts")
        if not any(a["name"] == "SlowService" and a["state"] == "firing" for a in api["alerts"]):
            fail(f"/api/v1/alerts does not list the firing alert: {api}")
        metrics = agent.metrics()
        if not select(metrics, "loupe_alerts_firing", alertname="SlowService", service_name="loupe_slowsrv"):
            fail("loupe_alerts_firing lacks the alert")

        # Remove the cause: fast requests only; the 30 s window's p95 falls, the alert resolves.
        stop.set()
        for t in slow:
            t.join()
        stop.clear()
        fast = threading.Thread(target=drive, args=(server_port, "/fast", stop))
        fast.start()
        wait(lambda: not am_alerts(am_port, "SlowService"), "the alert never resolved in Alertmanager", 60)
        stop.set()
        fast.join()
        logs = agent.logs()
        if '"msg":"alert SlowService for loupe_slowsrv: pending -> firing' not in logs or "firing -> resolved" not in logs:
            fail("no structured log line per transition:\n" + logs[-2000:])
        print("resolved in Alertmanager after the cause went away")

        # SIGHUP with an invalid file: the old rules stay.
        _, before = agent.api("/api/v1/alerts")
        with open(config, "a") as f:
            f.write("    - name: Broken\n      signal: latency_p95\n")
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        _, after = agent.api("/api/v1/alerts")
        if after["rules"] != before["rules"] or "config not reloaded" not in agent.logs():
            fail(f"SIGHUP with a bad file changed the rules: {before['rules']} -> {after['rules']}")
        agent.stop()

        # A bad rule at start: refused, with file and line.
        r = subprocess.run([LOUPE, "agent", "--config", config, "--listen", "127.0.0.1:0"], capture_output=True,
                           text=True, timeout=15)
        if r.returncode != 2 or f"{config}:" not in r.stderr or "exactly one of 'above' or 'below'" not in r.stderr:
            fail(f"a bad rule did not stop the agent clearly: rc={r.returncode} {r.stderr!r}")

        # Alertmanager down: retries counted, the agent keeps working.
        am.terminate()
        am.wait()
        write_config(config, f"http://127.0.0.1:{am_port}")
        agent = Agent("--config", config)
        stop.clear()
        slow = threading.Thread(target=drive, args=(server_port, "/slow", stop))
        slow.start()
        wait(lambda: select(agent.metrics(), "loupe_alert_notifications_total", receiver="alertmanager",
                            result="failed_attempt")[0][1] >= 2,
             "no failed delivery attempt counted while Alertmanager is down", 40)
        stop.set()
        slow.join()
        if agent.proc.poll() is not None:
            fail("the agent died while Alertmanager was down")
        agent.stop()
        print("Alertmanager down: retries counted, agent alive; bad config refused; SIGHUP kept old rules: ok")
    finally:
        stop.set()
        server.kill()
        if am.poll() is None:
            am.terminate()
            am.wait()
    print("alerts: ok")


if __name__ == "__main__":
    main()
