#!/usr/bin/env python3
"""Secrets and personal data in request paths (issue 20, item 8): nginx receives requests whose
paths carry an e-mail address, a JWT, a jsessionid matrix parameter, %00, invalid UTF-8 and a long
random token. None of these strings may appear in /metrics, the API or the agent's log; every
request is still counted, per (method, route, status) equal to nginx's access log. With a small
route budget (--max-routes-per-service 8), the second half of it goes only to routes seen twice:
one-off paths stay under /{overflow}, a repeated route gets its own series from its second request,
and the counts still add up to the access log, request by request."""
import collections
import http.client
import json

from loupe_e2e import (Agent, Nginx, diff_counts, fail, parse_metrics, promtool_check, require_root,
                       server_counts)

EMAIL = "john.doe@example.com"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
SESSION = "SECRETSESSION42x"
TOKEN = "k7Hq2mXw9LpR4tZbN3vC8sDf"

# Path as sent -> the route loupe must give it. nginx answers 400 to %00 and logs its URI as "-".
SECRET_PATHS = {
    "/ok": "/ok",
    f"/users/{EMAIL}/profile": "/users/{id}/profile",
    f"/users/{JWT}": "/users/{id}",
    f"/users/cart;jsessionid={SESSION}": "/users/cart",
    "/users/a%00b": "/users/{id}",
    "/users/%ff%fe": "/users/{id}",
    f"/users/{TOKEN}": "/users/{id}",
}
LOGGED_AS = {"/users/a%00b": "-"}
LEAKS = [EMAIL, "john.doe", "example.com", "eyJhbGci", JWT.split(".")[2], "jsessionid", SESSION, "%00",
         "a%00b", "%ff", TOKEN]
PROBES = [f"/probe-{word}" for word in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
                                        "india", "juliet", "kilo", "lima", "mike", "november", "oscar")]
MAX_ROUTES = 8


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    conn.getresponse().read()
    conn.close()


def expected_counts(log, route_of):
    """The access log, keyed as the documented route budget keys it: the first MAX_ROUTES - MAX_ROUTES // 2
    routes get a series at once; later ones at their second request (the first under /{overflow});
    past MAX_ROUTES, /{overflow}."""
    admitted, seen_once = set(), set()
    expected = collections.Counter()
    for status, method, uri, _ in log:
        route = route_of[uri]
        if route not in admitted:
            if len(admitted) >= MAX_ROUTES:
                route = "/{overflow}"
            elif len(admitted) < MAX_ROUTES - MAX_ROUTES // 2 or route in seen_once:
                admitted.add(route)
                seen_once.discard(route)
            else:
                seen_once.add(route)
                route = "/{overflow}"
        expected[(method, route, status)] += 1
    return expected


def main():
    require_root()
    agent = Agent("--max-routes-per-service", str(MAX_ROUTES))
    nginx = Nginx(workers=1)
    try:
        # One request at a time, so that nginx's log order is the order the agent saw them in.
        for _ in range(5):
            for path in SECRET_PATHS:
                get(nginx.port, path)
        for path in PROBES:  # one-off paths: a scanner
            get(nginx.port, path)
        for _ in range(10):  # a real route arriving late: promoted at its second request
            get(nginx.port, "/users/list")
        agent.settle(1.0)
        text = agent.metrics_text()
        samples = parse_metrics(text)
        _, services = agent.api("/api/v1/services")
        status, endpoints = agent.api("/api/v1/services/nginx/endpoints")
        log = nginx.access_log()
    finally:
        nginx.stop()

    route_of = {LOGGED_AS.get(path, path): route for path, route in SECRET_PATHS.items()}
    route_of.update({path: path for path in PROBES})
    route_of["/users/list"] = "/users/list"
    if len(log) != 5 * len(SECRET_PATHS) + len(PROBES) + 10:
        fail(f"nginx logged {len(log)} requests")
    expected = expected_counts(log, route_of)
    got = server_counts(samples, "nginx")
    if got != expected:
        fail("loupe's counts differ from nginx's access log:\n" + diff_counts(expected, got))
    for route in ("/users/{id}/profile", "/users/{id}", "/users/cart"):
        if not any(k[1] == route for k in got):
            fail(f"no series for {route}: {sorted(got)}")
    if got[("GET", "/users/list", "200")] != 9 or any(k[1].startswith("/probe-") for k in got):
        fail(f"route budget: /users/list should have 9 of its 10 requests, no probe a series: {sorted(got.items())}")
    print(f"{len(log)} requests, {len(expected)} (method, route, status) series, all equal to the access log "
          f"(routes: {sorted({k[1] for k in got})})")

    if status != 200:
        fail(f"/api/v1/services/nginx/endpoints answered {status}")
    api_text = json.dumps(services) + json.dumps(endpoints)
    logs = agent.logs()
    for leak in LEAKS:
        for where, body in (("/metrics", text), ("the API", api_text), ("the agent's log", logs)):
            if leak in body:
                fail(f"{leak!r} appears in {where}")
    routes = {e["route"] for e in endpoints["endpoints"]}
    if not {"/users/{id}/profile", "/users/{id}", "/users/cart"} <= routes:
        fail(f"/api/v1/services/nginx/endpoints routes: {sorted(routes)}")
    print(f"none of {len(LEAKS)} secrets appears in /metrics, the API or the log")
    promtool_check(text)
    agent.stop()
    print("route secrets: ok")


if __name__ == "__main__":
    main()
