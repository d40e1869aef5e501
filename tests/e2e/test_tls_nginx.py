#!/usr/bin/env python3
"""nginx (Debian) with `ssl` (a self-signed certificate made here), under wrk https:// (keep-alive)
and curl (one connection per request): loupe reads the plaintext through its OpenSSL uprobes, and
its per (method, route, status) counts with url_scheme="https" equal nginx's access log, exactly.
The ciphertext is never parsed: no request to the https port is counted as plain http."""
import collections
import subprocess

from loupe_e2e import (Agent, Nginx, diff_counts, fail, metric, normalize_route, parse_metrics,
                       promtool_check, require_root, require_tools, select, server_counts)

PATHS = ["/ok", "/redirect", "/missing", "/error", "/static/blob.bin", "/users/123", "/users/456?q=secret"]


def main():
    require_root()
    require_tools("wrk", "curl", "openssl")
    # nginx first: the agent finds its libssl when it starts (a process started later is found
    # by the agent's next /proc scan; curl and wrk map the same file, probed already).
    nginx = Nginx(tls=True)
    agent = Agent()
    port = nginx.port
    with open(f"{nginx.work}/paths.lua", "w") as f:
        f.write("local paths = {" + ",".join(f'"{p}"' for p in PATHS) + "}\n"
                "local i = 0\n"
                "request = function()\n"
                "  i = i + 1\n"
                "  return wrk.format('GET', paths[(i % #paths) + 1])\n"
                "end\n")
    try:
        _, agent_status = agent.api("/api/v1/agent")
        tls = agent_status.get("tls", {})
        probed = [lib for lib in tls.get("libraries", []) if "libssl.so" in lib["path"] and lib["uprobes"]]
        if not tls.get("enabled") or not probed:
            fail(f"/api/v1/agent shows no probed libssl: {tls}")
        if not any("SSL_read (return)" in lib["uprobes"] and "SSL_write" in lib["uprobes"] for lib in probed):
            fail(f"SSL_read/SSL_write not probed: {probed}")
        # curl: a new process and TLS connection (handshake included) per request.
        for path in PATHS:
            for _ in range(5):
                subprocess.run(["curl", "-sk", "-o", "/dev/null", nginx.url(path)], check=True)
        # wrk: keep-alive TLS connections, thousands of requests.
        wrk = subprocess.run(["wrk", "-t2", "-c8", "-d2s", "-s", f"{nginx.work}/paths.lua", nginx.url("")],
                             capture_output=True, text=True, check=True)
        print(wrk.stdout)
        agent.settle(1.0)
        text = agent.metrics_text()
        samples = parse_metrics(text)
        log = nginx.access_log()
    finally:
        nginx.stop()

    expected = collections.Counter()
    by_client = collections.Counter()
    for status, method, uri, user_agent in log:
        expected[(method, normalize_route(uri), "none" if status == "499" else status)] += 1
        by_client["curl" if "curl" in user_agent else "wrk"] += 1
    total = sum(expected.values())
    if total < 1000:
        fail(f"too little traffic to be meaningful: {total} requests")
    got = server_counts(samples, "nginx", url_scheme="https")
    if got != expected:
        fail("loupe's https counts differ from nginx's access log:\n" + diff_counts(expected, got))
    # (Server series carry no port: another nginx on the machine may have plain http ones. The
    # client series of this port say which scheme its requests were counted as.)
    plain = [(l, v) for l, v in select(samples, "http_client_request_duration_seconds_count",
                                        server_port=str(port), url_scheme="http") if v]
    if plain:
        fail(f"requests to the https port counted as plain http: {plain}")
    print(f"server side: {total} https requests, {len(expected)} (method, route, status) series, "
          "all equal to the access log")
    if "secret" in text or "/users/123" in text:
        fail("a raw URL or query string leaked into the metrics")

    def client_total(service):
        return sum(v for l, v in select(samples, "http_client_request_duration_seconds_count", service_name=service,
                                        server_address="127.0.0.1", server_port=str(port), url_scheme="https")
                   if l["http_response_status_code"] != "none")
    curl, wrk_count = client_total("curl"), client_total("wrk")
    if curl != by_client["curl"]:
        fail(f"curl https client exchanges: loupe {curl}, access log {by_client['curl']}")
    if not (0.99 * by_client["wrk"] <= wrk_count <= by_client["wrk"]):
        fail(f"wrk https client exchanges: loupe {wrk_count}, access log {by_client['wrk']}")
    print(f"client side: curl {int(curl)} exact, wrk {int(wrk_count)} of {by_client['wrk']}")

    # Both ends of every connection were tied to an SSL*: curl's 35 and wrk's 8, twice.
    connections = metric(samples, "loupe_tls_connections_total", library="openssl")
    if connections < 2 * (by_client["curl"] + 8):
        fail(f"loupe_tls_connections_total{{library=openssl}} = {connections}, "
             f"expected at least {2 * (by_client['curl'] + 8)}")
    dropped = [(l, v) for l, v in select(samples, "loupe_events_dropped_total") if v]
    if dropped:
        fail(f"events dropped: {dropped}")
    promtool_check(text)
    agent.stop()
    print("tls nginx: ok")


if __name__ == "__main__":
    main()
