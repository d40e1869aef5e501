#!/usr/bin/env python3
"""OTLP export, checked by a receiver that decodes with the OTLP schema (protoc --decode):
  - nginx under curl: one SERVER span per request of nginx's access log, semconv attributes, error
    status for 5xx; OTLP histogram counts equal /metrics;
  - curl -> a Python frontend (calls nginx from the thread serving the request) -> nginx: four
    spans in one trace, parent/child by connection and by thread;
  - an incoming traceparent keeps its trace id and parent;
  - no header value, query string or body appears in anything exported."""
import collections
import subprocess
import sys
import time

from loupe_e2e import (Agent, Nginx, fail, free_port, metric, normalize_route, parse_metrics,
                       require_root, require_tools, select, wait_port)
from otlp_receiver import Receiver

SECRET_HEADER = "hdr-secret-4f1c2a"
SECRET_QUERY = "qs-secret-9b7e11"
SECRET_BODY = "body-secret-77aa03"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"

FRONTEND = r"""
import http.client, http.server, sys
NGINX, PORT = int(sys.argv[1]), int(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        # The call to nginx is made by the thread serving this request.
        conn = http.client.HTTPConnection("127.0.0.1", NGINX)
        conn.request("GET", "/ok")
        body = conn.getresponse().read()
        conn.close()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"""


def main():
    require_root()
    require_tools("curl", "protoc", "nginx")
    receiver = Receiver()
    agent = Agent("--otlp-endpoint", receiver.endpoint, "--otlp-metrics-interval-seconds", "1")
    nginx = Nginx()
    front_port = free_port()
    frontend = subprocess.Popen([sys.executable, "-c", FRONTEND, str(nginx.port), str(front_port)])
    try:
        wait_port(front_port)
        paths = ["/ok", "/missing", "/error", "/users/7", f"/users/8?token={SECRET_QUERY}"]
        for path in paths:
            for _ in range(4):
                subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {SECRET_HEADER}",
                                "-H", f"X-Api-Key: {SECRET_HEADER}", "--data-binary", SECRET_BODY,
                                "-X", "GET", nginx.url(path)], check=True)
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-H",
                        f"traceparent: 00-{TRACE_ID}-{PARENT_ID}-01", nginx.url("/users/42")], check=True)
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{front_port}/front"], check=True)
        # Spans are held 2 s for joining, then sent within 1 s; metrics every second.
        deadline = time.time() + 15
        log = []
        while time.time() < deadline:
            time.sleep(0.5)
            log = nginx.access_log()
            nginx_spans = [s for s in receiver.spans()
                           if s["kind"] == "SPAN_KIND_SERVER" and s["resource"].get("service.name") == "nginx"]
            if len(nginx_spans) >= len(log) and any(s["name"] == "GET /front" for s in receiver.spans()):
                break
        samples = parse_metrics(agent.metrics_text())
        time.sleep(1.5)  # one more metrics export after the scrape: same counts (no traffic since)
        metrics = receiver.last_metrics()
        spans = receiver.spans()
        raw = receiver.raw_text()
    finally:
        frontend.kill()
        nginx.stop()
        agent.stop()
        receiver.stop()

    # 1. One nginx SERVER span per access log line, by (method, route, status).
    expected = collections.Counter((m, normalize_route(u), int(s)) for s, m, u, _ in log)
    nginx_spans = [s for s in spans if s["kind"] == "SPAN_KIND_SERVER" and s["resource"].get("service.name") == "nginx"]
    got = collections.Counter((s["attributes"].get("http.request.method"), s["attributes"].get("http.route"),
                               s["attributes"].get("http.response.status_code")) for s in nginx_spans)
    if got != expected:
        fail(f"nginx spans differ from the access log:\nexpected {sorted(expected.items())}\ngot {sorted(got.items())}")
    print(f"nginx: {len(nginx_spans)} server spans = {len(log)} access log lines")
    for s in nginx_spans:
        code = s["attributes"]["http.response.status_code"]
        want = "STATUS_CODE_ERROR" if code >= 500 else "STATUS_CODE_UNSET"
        if s["status"] != want:
            fail(f"span status {s['status']} for HTTP {code}, expected {want}")
        if not (s["end"] >= s["start"] and abs(s["start"] / 1e9 - time.time()) < 120):
            fail(f"span times are not wall-clock: {s['start']} .. {s['end']}")
        if s["resource"].get("process.executable.name") != "nginx" or "process.pid" not in s["resource"] \
                or "host.name" not in s["resource"]:
            fail(f"resource attributes missing: {s['resource']}")

    # 2. Incoming traceparent.
    incoming = [s for s in nginx_spans if s["attributes"].get("http.route") == "/users/{id}" and s["trace_id"] == TRACE_ID]
    if len(incoming) != 1 or incoming[0]["parent_span_id"] != PARENT_ID:
        fail(f"the request with a traceparent: {incoming}")
    print("traceparent: trace id and parent kept")

    # 3. curl -> frontend -> nginx in one trace.
    front_server = [s for s in spans if s["name"] == "GET /front" and s["kind"] == "SPAN_KIND_SERVER"]
    if len(front_server) != 1:
        fail(f"frontend server spans: {front_server}")
    fs = front_server[0]
    by_id = {s["span_id"]: s for s in spans}
    curl_span = by_id.get(fs["parent_span_id"])
    if not curl_span or curl_span["kind"] != "SPAN_KIND_CLIENT" or curl_span["resource"].get("process.executable.name") != "curl":
        fail(f"the frontend's server span's parent is not curl's client span: {curl_span}")
    front_client = [s for s in spans if s["parent_span_id"] == fs["span_id"]]
    if len(front_client) != 1 or front_client[0]["kind"] != "SPAN_KIND_CLIENT":
        fail(f"the frontend's client span to nginx: {front_client}")
    nginx_child = [s for s in spans if s["parent_span_id"] == front_client[0]["span_id"]]
    if len(nginx_child) != 1 or nginx_child[0]["resource"].get("service.name") != "nginx":
        fail(f"nginx's server span under the frontend's client span: {nginx_child}")
    trace_ids = {curl_span["trace_id"], fs["trace_id"], front_client[0]["trace_id"], nginx_child[0]["trace_id"]}
    if len(trace_ids) != 1:
        fail(f"curl -> frontend -> nginx spans in {len(trace_ids)} traces")
    if front_client[0]["attributes"].get("server.port") != nginx.port:
        fail(f"client span attributes: {front_client[0]['attributes']}")
    print("curl -> frontend -> nginx: 4 spans, one trace, parents by connection and by thread")

    # 4. OTLP histograms (exponential by default) equal /metrics: the same count and sum, buckets
    # that add up to the count and agree with every le bucket, and an exemplar naming an exported
    # span of the series.
    prom = {}
    for labels, value in select(samples, "http_server_request_duration_seconds_count", service_name="nginx"):
        key = (labels["http_request_method"], labels["http_route"], labels["http_response_status_code"])
        prom[key] = {"count": value, "le": {}}
        prom[key]["sum"] = metric(samples, "http_server_request_duration_seconds_sum", **labels)
        for le_labels, le_value in select(samples, "http_server_request_duration_seconds_bucket", **labels):
            prom[key]["le"][float(le_labels["le"])] = le_value
    otlp = {}
    spans_by_id = {s["span_id"]: s for s in spans}
    exemplars = 0
    for resource, name, point in metrics:
        if name == "http.server.request.duration" and resource.get("service.name") == "nginx":
            a = point["attributes"]
            key = (a["http.request.method"], a["http.route"], str(a["http.response.status_code"]))
            if point["kind"] != "exponential_histogram":
                fail(f"latency is not an exponential histogram by default: {point['kind']}")
            if point["temporality"] != "AGGREGATION_TEMPORALITY_CUMULATIVE":
                fail(f"temporality {point['temporality']}")
            count, total = point["count"][0], point["sum"][0]
            scale = point["scale"][0]
            positive = point.get("positive", [{}])[0]
            offset = positive.get("offset", [0])[0]
            buckets = positive.get("bucket_counts", [])
            if sum(buckets) + point.get("zero_count", [0])[0] != count:
                fail(f"bucket counts do not add up to the count: {point}")
            otlp[key] = count
            if key in prom:
                if abs(total - prom[key]["sum"]) > 1e-9 * max(1.0, total):
                    fail(f"{key}: OTLP sum {total} != /metrics _sum {prom[key]['sum']}")
                # Bucket j is (base^j, base^(j+1)] s: those wholly at or under a bound hold at most
                # what /metrics counts under it; those wholly under the bound's edge at least.
                base = 2.0 ** (2.0 ** -scale)
                for bound, cumulative in prom[key]["le"].items():
                    if bound == float("inf"):
                        continue
                    surely_under = sum(n for i, n in enumerate(buckets) if base ** (offset + i + 1) <= bound)
                    maybe_under = sum(n for i, n in enumerate(buckets) if base ** (offset + i) < bound)
                    if not surely_under <= cumulative <= maybe_under:
                        fail(f"{key}: le={bound} counts {cumulative}, exponential buckets say "
                             f"{surely_under}..{maybe_under} (scale {scale}, offset {offset}, {buckets})")
            for e in point.get("exemplars", []):
                trace_id, span_id = e["trace_id"][0].hex(), e["span_id"][0].hex()
                span = spans_by_id.get(span_id)
                if not span or span["trace_id"] != trace_id:
                    fail(f"{key}: the exemplar's span {trace_id}/{span_id} is not an exported span")
                sa = span["attributes"]
                if (sa.get("http.request.method"), sa.get("http.route"), str(sa.get("http.response.status_code"))) != key:
                    fail(f"{key}: the exemplar's span belongs to another series: {sa}")
                if abs(e["as_double"][0] - (span["end"] - span["start"]) / 1e9) > 1e-6:
                    fail(f"{key}: exemplar value {e['as_double'][0]} is not its span's duration")
                exemplars += 1
    if not prom or {k: v["count"] for k, v in prom.items()} != otlp:
        fail(f"OTLP histogram counts differ from /metrics:\n/metrics {prom}\nOTLP {otlp}")
    if exemplars != len(otlp):
        fail(f"{exemplars} exemplars for {len(otlp)} nginx series (every series had sampled spans)")
    print(f"metrics: {len(otlp)} nginx exponential histograms, count, sum and le buckets equal to "
          f"/metrics; {exemplars} exemplars, each an exported span of its series")

    # 5. Secrets.
    for secret in (SECRET_HEADER, SECRET_QUERY, SECRET_BODY, "Bearer", "token="):
        if secret in raw:
            fail(f"'{secret}' appears in the exported data")
    print("no header value, query string or body in any export")
    print("PASS")


if __name__ == "__main__":
    main()
