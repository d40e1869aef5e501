#!/usr/bin/env python3
"""OTLP export when the receiver is in trouble:
  - it answers 503 (Retry-After: 1) for 10 s, then 200: every span of nginx's access log arrives
    (held in the queue and retried), and the retries are counted;
  - it is down: the queue stays within --otlp-max-queued-spans, the rest is dropped and counted,
    and the agent's memory stays bounded."""
import subprocess
import time

from loupe_e2e import (Agent, Nginx, fail, free_port, metric, parse_metrics, proc_status_bytes, require_root,
                       require_tools)
from otlp_receiver import Receiver


def nginx_server_spans(receiver):
    return [s for s in receiver.spans()
            if s["kind"] == "SPAN_KIND_SERVER" and s["resource"].get("service.name") == "nginx"]


def unavailable_then_ok():
    receiver = Receiver(fail_until=time.time() + 10)
    agent = Agent("--otlp-endpoint", receiver.endpoint, "--comm", "nginx")
    nginx = Nginx()
    try:
        urls = [nginx.url(f"/users/{i}") for i in range(200)]
        subprocess.run(["curl", "-s", *urls], check=True, stdout=subprocess.DEVNULL)
        log = nginx.access_log()
        deadline = time.time() + 25
        while time.time() < deadline and len(nginx_server_spans(receiver)) < len(log):
            time.sleep(0.5)
        spans = nginx_server_spans(receiver)
        samples = parse_metrics(agent.metrics_text())
        refused = [r for r in receiver.requests if r[1] == 503]
    finally:
        nginx.stop()
        agent.stop()
        receiver.stop()
    if len(spans) != len(log) or len(log) != 200:
        fail(f"503 for 10 s then 200: {len(spans)} spans received for {len(log)} requests")
    if not refused:
        fail("the receiver never answered 503: the test did not test retries")
    if metric(samples, "loupe_otlp_retries_total") < 1:
        fail("loupe_otlp_retries_total did not count the retries")
    dropped = sum(v for (n, _), v in samples.items() if n == "loupe_otlp_spans_dropped_total")
    if dropped != 0:
        fail(f"{dropped} spans dropped while the queue had room")
    print(f"503 for 10 s: {len(refused)} exports refused, then all {len(spans)} spans delivered")


def receiver_down():
    port = free_port()  # nothing listens there
    agent = Agent("--otlp-endpoint", f"http://127.0.0.1:{port}", "--otlp-max-queued-spans", "500",
                  "--comm", "nginx,wrk")
    nginx = Nginx()
    try:
        rss_before = proc_status_bytes(agent.proc.pid, "VmRSS")
        subprocess.run(["wrk", "-t1", "-c4", "-d3s", nginx.url("/ok")], check=True, capture_output=True)
        agent.settle(3.5)  # past the 2 s joining delay
        samples = parse_metrics(agent.metrics_text())
        rss_after = proc_status_bytes(agent.proc.pid, "VmRSS")
        requests = len(nginx.access_log())
    finally:
        nginx.stop()
        agent.stop()
    spans = metric(samples, "loupe_otlp_spans_total")
    queued = metric(samples, "loupe_otlp_spans_queued")
    held = metric(samples, "loupe_otlp_spans_held")
    dropped = metric(samples, "loupe_otlp_spans_dropped_total", reason="queue_full")
    if spans < requests or requests < 5000:
        fail(f"{spans} spans for {requests} nginx requests")
    if queued > 500:
        fail(f"{queued} spans queued, over --otlp-max-queued-spans 500")
    # What is neither queued, held nor dropped is the one batch being retried (4096 at most).
    if not (spans - 4096 <= dropped + queued + held <= spans):
        fail(f"drops not counted: {spans} spans, {dropped} dropped, {queued} queued, {held} held")
    if rss_after - rss_before > 64 << 20:
        fail(f"the agent grew by {(rss_after - rss_before) >> 20} MiB with the receiver down")
    print(f"receiver down: {int(spans)} spans, {int(dropped)} dropped and counted, {int(queued)} queued, "
          f"RSS +{(rss_after - rss_before) >> 20} MiB")


def main():
    require_root()
    require_tools("curl", "wrk", "protoc", "nginx")
    unavailable_then_ok()
    receiver_down()
    print("PASS")


if __name__ == "__main__":
    main()
