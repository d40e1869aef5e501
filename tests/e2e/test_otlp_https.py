#!/usr/bin/env python3
"""OTLP over https, and resource metrics over OTLP:
  - the receiver serves a self-signed certificate made here; an agent given it through
    OTEL_EXPORTER_OTLP_CERTIFICATE delivers nginx's spans and metrics over TLS, one without it
    delivers nothing (the certificate is verified);
  - process.cpu.time, process.cpu.utilization, process.memory.usage, process.disk.io and
    process.network.io of nginx over OTLP equal /metrics' process_* samples at the same moment:
    each lies between two scrapes taken before and after the export (monotonic counters) or
    equals them (nginx idle);
  - --otlp-histograms explicit sends /metrics' le buckets and counts as explicit-bucket histograms."""
import os
import subprocess
import tempfile
import time

from loupe_e2e import (Agent, Nginx, Workload, fail, metric, parse_metrics, require_root, require_tools,
                       select)
from otlp_receiver import Receiver, make_self_signed


# Burns ~0.3 s of CPU (nginx's few requests cost less than a clock tick), then idles.
BURN = r"""
import sys, time
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("idle", flush=True)
time.sleep(120)
"""


def resource_values(points, service="nginx"):
    """{(metric name, direction or None): value} of a service's resource metrics in one export."""
    out = {}
    for resource, name, point in points:
        if resource.get("service.name") != service or not name.startswith("process."):
            continue
        direction = point["attributes"].get("disk.io.direction") or point["attributes"].get("network.io.direction")
        value = point.get("as_double", point.get("as_int", [None]))[0]
        out[(name, direction)] = value
    return out


PROM = {
    ("process.cpu.time", None): ("process_cpu_time_seconds_total", {}),
    ("process.cpu.utilization", None): ("process_cpu_utilization_ratio", {}),
    ("process.memory.usage", None): ("process_memory_usage_bytes", {}),
    ("process.disk.io", "read"): ("process_disk_io_bytes_total", {"disk_io_direction": "read"}),
    ("process.disk.io", "write"): ("process_disk_io_bytes_total", {"disk_io_direction": "write"}),
    ("process.network.io", "transmit"): ("process_network_io_bytes_total", {"network_io_direction": "transmit"}),
    ("process.network.io", "receive"): ("process_network_io_bytes_total", {"network_io_direction": "receive"}),
}


def main():
    require_root()
    require_tools("curl", "protoc", "nginx", "openssl")
    work = tempfile.mkdtemp(prefix="loupe-otlp-tls-")
    cert, key = make_self_signed(work)
    trusted = Receiver(tls=(cert, key))
    untrusted = Receiver(tls=(cert, key))
    os.environ["OTEL_EXPORTER_OTLP_CERTIFICATE"] = cert
    agent = Agent("--otlp-endpoint", trusted.endpoint, "--otlp-metrics-interval-seconds", "1",
                  "--otlp-histograms", "explicit")
    del os.environ["OTEL_EXPORTER_OTLP_CERTIFICATE"]
    # The same self-signed certificate, not trusted: the system's CAs do not know it.
    stranger = Agent("--otlp-endpoint", untrusted.endpoint, "--otlp-metrics-interval-seconds", "1")
    nginx = Nginx()
    burner = Workload("loupe_otlpcpu", BURN)
    try:
        burner.readline()
        for _ in range(10):
            subprocess.run(["curl", "-s", "-o", "/dev/null", nginx.url("/ok")], check=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            time.sleep(0.5)
            spans = [s for s in trusted.spans() if s["resource"].get("service.name") == "nginx"]
            last = trusted.last_metrics()
            if len(spans) >= 10 and resource_values(last) and \
                    resource_values(last, "loupe_otlpcpu").get(("process.cpu.time", None)):
                break
        # Nginx is idle now: a scrape, the next export, a scrape.
        time.sleep(1.5)
        before = parse_metrics(agent.metrics_text())
        with trusted.lock:
            exports = len(trusted.bodies["/v1/metrics"])
        deadline = time.time() + 5
        while time.time() < deadline:
            time.sleep(0.2)
            with trusted.lock:
                if len(trusted.bodies["/v1/metrics"]) > exports:
                    break
        after = parse_metrics(agent.metrics_text())
        last = trusted.last_metrics()
        exported = resource_values(last)
        burned = resource_values(last, "loupe_otlpcpu")
        stranger_samples = parse_metrics(stranger.metrics_text())
    finally:
        burner.kill()
        nginx.stop()
        agent.stop()
        stranger.stop()
        trusted.stop()
        untrusted.stop()

    if len(spans) != 10:
        fail(f"{len(spans)} nginx spans over https, expected 10")
    if any(path == "/v1/metrics" for path, _, _ in trusted.requests) is False:
        fail("no metrics export over https")
    print(f"https: 10 nginx spans and {len(trusted.bodies['/v1/metrics'])} metrics exports through TLS")

    # cpp-httplib completes the handshake, then checks the certificate and hangs up: no request.
    with untrusted.lock:
        delivered = len(untrusted.requests)
    sent = sum(v for (n, _), v in stranger_samples.items() if n == "loupe_otlp_spans_sent_total")
    failed = sum(v for (n, _), v in stranger_samples.items() if n == "loupe_otlp_metric_exports_failed_total")
    if delivered or sent or not failed:
        fail(f"an agent without the certificate delivered {delivered} requests ({sent} spans), "
             f"{failed} metrics exports failed")
    print(f"untrusted certificate: nothing delivered, {failed:g} metrics exports failed")

    if set(exported) != set(PROM):
        fail(f"nginx's resource metrics over OTLP: {sorted(exported)}, expected {sorted(PROM)}")
    for key, (name, labels) in PROM.items():
        a = metric(before, name, service_name="nginx", **labels)
        b = metric(after, name, service_name="nginx", **labels)
        value = exported[key]
        if not min(a, b) - 1e-9 <= value <= max(a, b) + 1e-9:
            fail(f"{key[0]} {key[1] or ''}: OTLP {value}, /metrics {a} before and {b} after the export")
    for key in (("process.cpu.time", None), ("process.memory.usage", None)):
        name, labels = PROM[key]
        a = metric(before, name, service_name="loupe_otlpcpu", **labels)
        b = metric(after, name, service_name="loupe_otlpcpu", **labels)
        if not (burned.get(key) or 0) > 0 or not min(a, b) - 1e-9 <= burned[key] <= max(a, b) + 1e-9:
            fail(f"loupe_otlpcpu {key[0]}: OTLP {burned.get(key)}, /metrics {a} before and {b} after")
    print(f"loupe_otlpcpu: process.cpu.time={burned[('process.cpu.time', None)]:g} s, "
          f"process.memory.usage={burned[('process.memory.usage', None)]:g} equal /metrics")
    print("resource metrics: " + ", ".join(f"{n}{'/' + d if d else ''}={v:g}" for (n, d), v in sorted(exported.items()))
          + " equal /metrics")
    # --otlp-histograms explicit: /metrics' le bounds and counts.
    histograms = [p for r, n, p in last if n == "http.server.request.duration" and r.get("service.name") == "nginx"]
    if not histograms or any(p["kind"] != "histogram" for p in histograms):
        fail(f"--otlp-histograms explicit: {[p['kind'] for p in histograms]}")
    for p in histograms:
        a = p["attributes"]
        labels = {"http_request_method": a["http.request.method"], "http_route": a["http.route"],
                  "http_response_status_code": str(a["http.response.status_code"])}
        le = {float(l["le"]): v for l, v in select(after, "http_server_request_duration_seconds_bucket",
                                                    service_name="nginx", **labels)}
        cumulative = 0
        for bound, count in zip(p["explicit_bounds"], p["bucket_counts"]):
            cumulative += count
            if le.get(bound) != cumulative:
                fail(f"explicit histogram {labels}: {cumulative} under {bound}, /metrics le={le.get(bound)}")
        prom_count = metric(after, "http_server_request_duration_seconds_count", service_name="nginx", **labels)
        if p["count"][0] != prom_count or sum(p["bucket_counts"]) != prom_count:
            fail(f"explicit histogram {labels}: count {p['count'][0]}, buckets {p['bucket_counts']}, "
                 f"/metrics _count {prom_count}")
    print(f"--otlp-histograms explicit: {len(histograms)} explicit-bucket histograms, counts equal /metrics")
    print("PASS")


if __name__ == "__main__":
    main()
