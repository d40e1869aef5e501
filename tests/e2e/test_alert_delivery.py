#!/usr/bin/env python3
"""Alert delivery with a stuck receiver (issue 20, item 7): a webhook that accepts the TCP connection
and never answers must not starve a real Alertmanager. A rule fires at once on a service with
traffic and is re-sent every second; Alertmanager must receive every notification (its own
alertmanager_alerts_received_total equals the agent's sent count, at the resend rate), while the
stuck webhook's failed attempts and drops are counted under its own receiver label. Then the
traffic stops: the alert is kept firing without data for no_data_resolve_after, then resolved with a
log line saying "no data", never a stale value."""
import http.client
import json
import re
import socket
import subprocess
import tempfile
import threading
import time

from loupe_e2e import (Agent, Workload, fail, free_port, http_get, require_root, require_tools, select,
                       time_limit, wait_port)

SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
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

RESEND_SECONDS = 1


class StuckWebhook:
    """Accepts every connection and never reads or answers: each delivery attempt can only time out."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)  # kept open, never read


def am_received(am_port):
    """Alerts Alertmanager says it received over its API (its own counter, by status)."""
    status, body = http_get(f"http://127.0.0.1:{am_port}/metrics")
    if status != 200:
        fail(f"Alertmanager /metrics answered {status}")
    total = 0.0
    for line in body.splitlines():
        m = re.match(r'^alertmanager_alerts_received_total\{([^}]*)\} (\S+)$', line)
        if m:
            total += float(m.group(2))
    return total


def am_alerts(am_port, name):
    status, body = http_get(f"http://127.0.0.1:{am_port}/api/v2/alerts")
    if status != 200:
        fail(f"Alertmanager answered {status}")
    return [a for a in json.loads(body) if a["labels"].get("alertname") == name]


def notifications(agent, receiver, result):
    found = select(agent.metrics(), "loupe_alert_notifications_total", receiver=receiver, result=result)
    if len(found) != 1:
        fail(f"no loupe_alert_notifications_total{{receiver={receiver},result={result}}}: {found}")
    return found[0][1]


def wait(predicate, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    fail(f"{what} within {timeout} s")


def drive(port, stop):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    while not stop.is_set():
        conn.request("GET", "/")
        conn.getresponse().read()
        time.sleep(0.01)


def main():
    require_root()
    require_tools("prometheus-alertmanager")
    time_limit(90)
    work = tempfile.mkdtemp(prefix="loupe-alert-delivery-")
    am_port = free_port()
    with open(f"{work}/am.yml", "w") as f:
        f.write("route: {receiver: sink, group_wait: 1s, group_interval: 1s}\nreceivers: [{name: sink}]\n")
    am = subprocess.Popen(["prometheus-alertmanager", f"--config.file={work}/am.yml", f"--storage.path={work}/data",
                           f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server_port = free_port()
    server = Workload("loupe_busysrv", SERVER, server_port)
    webhook = StuckWebhook()
    stop = threading.Event()
    driver = threading.Thread(target=drive, args=(server_port, stop))
    try:
        wait_port(am_port)
        server.readline()
        wait_port(server_port)
        config = f"{work}/loupe.yaml"
        # p50 > 1 µs holds for any request: the rule fires at the first evaluation with traffic. A
        # 5 s window is one 10 s slice: no data at most 10 s after the traffic stops.
        with open(config, "w") as f:
            f.write(f"""
alerting:
  alertmanager_url: http://127.0.0.1:{am_port}
  webhook_url: http://127.0.0.1:{webhook.port}/hook
  evaluation_interval: 1s
  resend_interval: {RESEND_SECONDS}s
  default_rules: false
  rules:
    - name: Serving
      service: loupe_busysrv
      signal: latency_p50
      window: 5s
      above: 0.000001
      for: 0s
      no_data: keep
      no_data_resolve_after: 3s
      summary: "p50 of {{{{ $labels.service_name }}}} is {{{{ $value }}}}s"
""")
        agent = Agent("--config", config)
        driver.start()
        wait(lambda: am_alerts(am_port, "Serving"), "the alert never reached Alertmanager", 20)
        start_count, start_time = am_received(am_port), time.time()
        print(f"fired and delivered to Alertmanager; the webhook holds {len(webhook.held)} connection(s)")

        # The stuck webhook exhausts its retries for its first document after ~17.5 s (5 attempts,
        # 2 s timeouts, 0.5+1+2+4 s back-off): wait for that drop, meanwhile Alertmanager gets
        # every re-send.
        wait(lambda: notifications(agent, "webhook", "dropped") >= 1, "the stuck webhook's drop was never counted",
             30)
        elapsed = time.time() - start_time
        delivered = am_received(am_port) - start_count
        expected = elapsed / RESEND_SECONDS
        print(f"in {elapsed:.1f} s Alertmanager received {delivered:.0f} notifications (one per "
              f"{RESEND_SECONDS} s: {expected:.0f}); webhook held {len(webhook.held)} connection(s), "
              f"failed attempts {notifications(agent, 'webhook', 'failed_attempt'):.0f}")
        if delivered < 0.8 * expected:
            fail(f"Alertmanager starved by the stuck webhook: {delivered:.0f} notifications in {elapsed:.1f} s, "
                 f"expected ~{expected:.0f}")
        if notifications(agent, "webhook", "failed_attempt") < 5 or not webhook.held:
            fail("the stuck webhook's failed attempts were not counted")
        if notifications(agent, "webhook", "sent") != 0:
            fail("a notification counts as sent to a webhook that never answered")

        # No data: the traffic stops; the alert stays firing for 3 s after the window empties,
        # then resolves, logged as "no data" (never the last value).
        stop.set()
        driver.join()
        stopped = time.time()
        wait(lambda: "firing -> resolved" in agent.logs(), "the alert never resolved without data", 25)
        wait(lambda: not am_alerts(am_port, "Serving"), "Alertmanager never saw the resolution", 10)
        lines = [json.loads(line)["msg"] for line in agent.logs().splitlines()
                 if '"alert Serving for' in line]
        resolved = [m for m in lines if "firing -> resolved" in m]
        if not (len(resolved) == 1 and re.fullmatch(
                r"alert Serving for loupe_busysrv: firing -> resolved \(no data for [3-5]s, threshold 1e-06\)",
                resolved[0])):
            fail(f"the resolution is not logged as no data: {lines}")
        print(f"resolved {time.time() - stopped:.1f} s after the traffic stopped: {resolved[0]}")

        # Every notification Alertmanager counted was one the agent counted as sent, and none was
        # dropped or failed on its side (counts are stable: nothing fires any more).
        time.sleep(1.5)
        sent = notifications(agent, "alertmanager", "sent")
        received = am_received(am_port)
        if sent != received or notifications(agent, "alertmanager", "dropped") or \
                notifications(agent, "alertmanager", "failed_attempt"):
            fail(f"Alertmanager received {received:.0f} alerts, the agent sent {sent:.0f} documents "
                 f"(dropped {notifications(agent, 'alertmanager', 'dropped')}, "
                 f"failed {notifications(agent, 'alertmanager', 'failed_attempt')})")
        print(f"Alertmanager received all {received:.0f} notifications the agent sent")
        agent.stop()  # exits within 5 s although a request to the webhook is in flight
    finally:
        stop.set()
        if driver.is_alive():
            driver.join()
        server.kill()
        if am.poll() is None:
            am.terminate()
            am.wait()
    print("alert delivery: ok")


if __name__ == "__main__":
    main()
