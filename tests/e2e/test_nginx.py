#!/usr/bin/env python3
"""nginx (Debian) under wrk (keep-alive) and curl (one connection per request): loupe's per
(method, route, status) request counts must equal nginx's own access log, exactly."""
import collections
import subprocess

from loupe_e2e import (Agent, Nginx, diff_counts, fail, normalize_route, parse_metrics, promtool_check,
                       require_root, require_tools, select, server_counts)

PATHS = ["/ok", "/redirect", "/missing", "/error", "/static/blob.bin", "/users/123", "/users/456?q=secret"]


def main():
    require_root()
    require_tools("wrk", "curl")
    agent = Agent()
    nginx = Nginx()
    port = nginx.port
    with open(f"{nginx.work}/paths.lua", "w") as f:
        f.write("local paths = {" + ",".join(f'"{p}"' for p in PATHS) + "}\n"
                "local i = 0\n"
                "request = function()\n"
                "  i = i + 1\n"
                "  return wrk.format('GET', paths[(i % #paths) + 1])\n"
                "end\n")
    try:
        # curl: a new process and connection per request.
        for path in PATHS:
            for _ in range(5):
                subprocess.run(["curl", "-s", "-o", "/dev/null", nginx.url(path)], check=True)
        # wrk: keep-alive connections, thousands of requests.
        wrk = subprocess.run(["wrk", "-t2", "-c8", "-d2s", "-s", f"{nginx.work}/paths.lua", nginx.url("")],
                             capture_output=True, text=True, check=True)
        print(wrk.stdout)
        agent.settle(1.0)
        text = agent.metrics_text()
        samples = parse_metrics(text)
        services_status, services = agent.api("/api/v1/services")  # while nginx still runs
        log = nginx.access_log()
    finally:
        nginx.stop()

    # The oracle: nginx's access log. 499 = the client closed before the response: loupe's "none".
    expected = collections.Counter()
    by_client = collections.Counter()
    for status, method, uri, user_agent in log:
        expected[(method, normalize_route(uri), "none" if status == "499" else status)] += 1
        by_client["curl" if "curl" in user_agent else "wrk"] += 1
    total = sum(expected.values())
    if total < 1000:
        fail(f"too little traffic to be meaningful: {total} requests")
    statuses = {k[2] for k in expected}
    for needed in ("200", "301", "404", "500"):
        if needed not in statuses:
            fail(f"the test did not produce status {needed}: {sorted(statuses)}")
    got = server_counts(samples, "nginx")
    if got != expected:
        losses = "\n".join(line for line in text.splitlines()
                           if line.startswith(("loupe_events_dropped_total", "loupe_http_unparsed",
                                               "loupe_http_unmatched", "loupe_http_desyncs",
                                               "loupe_events_total")) and not line.endswith(" 0"))
        fail("loupe's counts differ from nginx's access log:\n" + diff_counts(expected, got) +
             "\nloss counters:\n" + losses)
    print(f"server side: {total} requests, {len(expected)} (method, route, status) series, all equal to the access log")

    # No query string, no raw id ever reaches a label.
    if "secret" in text or "/users/123" in text:
        fail("a raw URL or query string leaked into the metrics")

    # Client side: curl (one exchange per process) exactly; wrk within what was in flight at its end.
    def client_total(service):
        return sum(v for l, v in select(samples, "http_client_request_duration_seconds_count", service_name=service,
                                        server_address="127.0.0.1", server_port=str(port))
                   if l["http_response_status_code"] != "none")
    curl, wrk_count = client_total("curl"), client_total("wrk")
    if curl != by_client["curl"]:
        fail(f"curl client exchanges: loupe {curl}, access log {by_client['curl']}")
    if not (0.99 * by_client["wrk"] <= wrk_count <= by_client["wrk"]):
        fail(f"wrk client exchanges: loupe {wrk_count}, access log {by_client['wrk']}")
    print(f"client side: curl {int(curl)} exact, wrk {int(wrk_count)} of {by_client['wrk']}")

    # Windowed percentiles exist for a busy route.
    p95 = select(samples, "loupe_http_server_request_duration_window_seconds", service_name="nginx",
                 http_route="/ok", http_response_status_code="200", quantile="0.95", window="1m")
    if not p95 or not (0 < p95[0][1] < 1):
        fail(f"no sane 1m p95 for nginx /ok: {p95}")
    dropped = [(l, v) for l, v in select(samples, "loupe_events_dropped_total") if v]
    if dropped:
        fail(f"events dropped: {dropped}")

    rows = [s for s in services["services"] if s["name"] == "nginx"]
    if services_status != 200 or not rows or not rows[0]["server"] or rows[0]["server"]["requests_total"] != total:
        fail(f"/api/v1/services disagrees: {rows}")
    if not rows[0]["resources"] or rows[0]["resources"]["processes"] < 1:
        fail(f"/api/v1/services has no resources for nginx: {rows[0]}")
    status, endpoints = agent.api("/api/v1/services/nginx/endpoints")
    if status != 200 or not any(e["route"] == "/users/{id}" for e in endpoints["endpoints"]):
        fail(f"/api/v1/services/nginx/endpoints lacks /users/{{id}}: {endpoints}")

    promtool_check(text)
    agent.stop()
    print("nginx: ok")


if __name__ == "__main__":
    main()
