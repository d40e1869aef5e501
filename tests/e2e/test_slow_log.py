#!/usr/bin/env python3
"""The slow-operation log (issue 23), HTTP and Redis, both sides, against what was sent.

A python3 http.server (comm slowhttp) sleeps 0.5 s on /slow/<id> and answers /fast at once; a
private redis-server (enable-debug-command yes) runs DEBUG SLEEP 0.1 and an EVAL whose Lua script
busy-waits 80 ms and carries a secret in its argument. One client process (comm slowcli) sends
them all: the slow HTTP requests carry a secret token in the query string and a secret header
value; fast requests and fast GETs go between them.

Thresholds: --slow-threshold http=300ms,redis=50ms; the file with --slow-log-file, and stdout.
Checked:
- every slow operation appears exactly once per side in the file, on stdout and in /api/v1/slow (server side
  under its server's service, client side under slowcli with the server's address as peer), with
  the route and the command only; fast ones do not appear;
- /api/v1/slow?service= filters, and the entries are the file's lines;
- loupe_slow_operations_total{protocol} counts them, nothing dropped;
- `loupe top`'s drill-down of slowhttp shows them under the s key (in tmux);
- the secrets (query token, header value, EVAL argument, the path's id) appear nowhere: not in
  the file, /api/v1/slow, /metrics, the agent's own log or top's screen."""
import collections
import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from loupe_e2e import (LOUPE, Agent, Workload, fail, free_port, metric, parse_metrics, promtool_check,
                       require_root, require_tools, time_limit, wait_port)

QUERY_SECRET = "QsecretTok3n"
HEADER_SECRET = "HsecretHdrV4l"
EVAL_SECRET = "EsecretArgZ9"
PATH_ID = "98765"
SECRETS = [QUERY_SECRET, HEADER_SECRET, EVAL_SECRET, PATH_ID]

SERVER = r"""
import sys, time, http.server
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(0.5)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
"""

# Lua: busy-waits 80 ms (redis-server is single-threaded: the reply comes after), returns ARGV[1].
SCRIPT = ("local s = redis.call('TIME') "
          "while true do local n = redis.call('TIME') "
          "if (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 80000 then break end end "
          "return ARGV[1]")

CLIENT = r"""
import http.client, socket, sys
http_port, redis_port = int(sys.argv[1]), int(sys.argv[2])
query_secret, header_secret, eval_secret, path_id, script = sys.argv[3:8]

def get(path, headers={}):
    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    c.request("GET", path, headers=headers)
    c.getresponse().read()
    c.close()

def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

r = socket.create_connection(("127.0.0.1", redis_port), timeout=10)
def command(*args):
    r.sendall(resp(*args))
    data = b""
    while not data.endswith(b"\r\n") or data.startswith(b"$") and data.count(b"\r\n") < 2:
        data += r.recv(65536)
    return data

for line in sys.stdin:
    step = line.strip()
    if step == "http":
        for i in range(2):
            get(f"/fast?token={query_secret}", {"X-Api-Key": header_secret})
            get(f"/slow/{path_id}?token={query_secret}", {"X-Api-Key": header_secret})
        get("/fast")
    elif step == "redis":
        command("SET", "k", eval_secret)
        command("GET", "k")
        command("DEBUG", "SLEEP", "0.1")
        command("GET", "k")
        reply = command("EVAL", script, "0", eval_secret)
        assert eval_secret.encode() in reply, reply
        command("GET", "k")
    print("done", flush=True)
"""


def top_screen(agent):
    """`loupe top` drilled into slowhttp with the slow-operations panel (s): the screen's text."""
    session = f"loupe-slow-test-{os.getpid()}"
    def tmux(*args):
        return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40",
         f"LC_ALL=C.UTF-8 {LOUPE} top --agent {agent.url('')} --interval 0.5")
    try:
        def keys(*k):
            tmux("send-keys", "-t", session, *k)
            time.sleep(0.6)
        time.sleep(1.0)
        keys("/", "s", "l", "o", "w", "h", "t", "t", "p", "Enter")
        keys("Enter")
        keys("s")
        deadline = time.time() + 10
        text = ""
        while time.time() < deadline:
            text = tmux("capture-pane", "-p", "-t", session)
            rows = re.findall(r"^\d\d:\d\d:\d\d\.\d{3} +server +http +\d+\.\dms +GET +200 +/slow/\{id\}$",
                              text, re.M)
            if "TIME (UTC)" in text and len(rows) == 2:
                return text
            time.sleep(0.3)
        fail("top's drill-down never showed slowhttp's two slow operations:\n" + text)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def slow_lines(path):
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def key(entry):
    return (entry["service"], entry["side"], entry["protocol"], entry["operation"],
            entry.get("target"))


def main():
    require_root()
    require_tools("redis-server", "tmux")
    time_limit(60)
    work = tempfile.mkdtemp(prefix="loupe-slow-")
    log_path = os.path.join(work, "slow.log")
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", work, "--enable-debug-command", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(redis_port)
        http_port = free_port()
        server = Workload("slowhttp", SERVER, http_port)
        if server.readline() != "ready":
            fail("the HTTP server did not start")
        agent = Agent("--comm", "slowhttp,slowcli,redis-server",
                      "--slow-threshold", "http=300ms,redis=50ms",
                      "--slow-log-file", log_path, "--slow-log-stdout")
        client = Workload("slowcli", CLIENT, http_port, redis_port, QUERY_SECRET, HEADER_SECRET,
                          EVAL_SECRET, PATH_ID, SCRIPT)
        started = datetime.datetime.now(datetime.timezone.utc)
        for step in ("http", "redis"):
            client.send(step)
            if client.readline() != "done":
                fail(f"the client did not finish its {step} step")
        agent.settle(1.0)

        lines = slow_lines(log_path) if os.path.exists(log_path) else []
        entries = [json.loads(line) for line in lines]
        redis_service = "redis-server"
        expected = collections.Counter({
            ("slowhttp", "server", "http", "GET", "/slow/{id}"): 2,
            ("slowcli", "client", "http", "GET", "/slow/{id}"): 2,
            (redis_service, "server", "redis", "DEBUG", None): 1,
            ("slowcli", "client", "redis", "DEBUG", None): 1,
            (redis_service, "server", "redis", "EVAL", None): 1,
            ("slowcli", "client", "redis", "EVAL", None): 1,
        })
        got = collections.Counter(key(e) for e in entries)
        if got != expected:
            fail(f"slow log file: expected {dict(expected)}, got {dict(got)}:\n" + "\n".join(lines))

        thresholds = {"http": 0.3, "redis": 0.05}
        for e in entries:
            if e["duration_seconds"] < thresholds[e["protocol"]] or e["duration_seconds"] > 5:
                fail(f"duration out of range: {e}")
            at = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc)
            if not started - datetime.timedelta(seconds=2) <= at <= datetime.datetime.now(
                    datetime.timezone.utc) + datetime.timedelta(seconds=1):
                fail(f"time {e['time']} is not when the test ran ({started.isoformat()})")
            if e["side"] == "client":
                port = http_port if e["protocol"] == "http" else redis_port
                if e.get("peer") != f"127.0.0.1:{port}":
                    fail(f"client entry without the server as peer: {e}")
            if e["protocol"] == "http" and e.get("status") != "200":
                fail(f"HTTP entry without its status: {e}")

        # --slow-log-stdout: the same lines on the agent's stdout (the Agent helper keeps stdout
        # and stderr in one file; the agent's own log lines have no duration_seconds).
        stdout_lines = [l for l in agent.logs().splitlines() if '"duration_seconds"' in l]
        if sorted(stdout_lines) != sorted(lines):
            fail("stdout's slow lines differ from the file's:\n" + "\n".join(stdout_lines))

        status, body = agent.api("/api/v1/slow")
        if status != 200:
            fail(f"/api/v1/slow answered {status}")
        api_lines = sorted(json.dumps(e, sort_keys=True) for e in body["slow_operations"])
        file_lines = sorted(json.dumps(e, sort_keys=True) for e in entries)
        if api_lines != file_lines:
            fail("/api/v1/slow differs from the file:\n" + "\n".join(api_lines) + "\n--\n" +
                 "\n".join(file_lines))
        if body["thresholds_seconds"].get("http") != 0.3 or body["thresholds_seconds"].get("redis") != 0.05:
            fail(f"thresholds not as configured: {body['thresholds_seconds']}")
        _, only = agent.api("/api/v1/slow?service=slowhttp&limit=10")
        if len(only["slow_operations"]) != 2 or any(e["service"] != "slowhttp" for e in only["slow_operations"]):
            fail(f"?service=slowhttp: {only}")
        status, _ = agent.api("/api/v1/slow?limit=x")
        if status != 400:
            fail(f"?limit=x answered {status}, expected 400")

        text = agent.metrics_text()
        promtool_check(text)
        samples = parse_metrics(text)
        for protocol, count in (("http", 4), ("redis", 4)):
            got_count = metric(samples, "loupe_slow_operations_total", protocol=protocol)
            if got_count != count:
                fail(f"loupe_slow_operations_total{{protocol={protocol}}} = {got_count}, expected {count}")
        for reason in ("rate_limit", "write_error"):
            if metric(samples, "loupe_slow_operations_dropped_total", reason=reason) != 0:
                fail(f"slow operations dropped ({reason})")

        screen = top_screen(agent)
        _, raw_api = agent.api("/api/v1/slow")
        outputs = {"loupe top's screen": screen,"the slow log file": "\n".join(lines), "/api/v1/slow": json.dumps(raw_api),
                   "/metrics": text, "the agent's log": agent.logs()}
        for where, content in outputs.items():
            for secret in SECRETS:
                if secret in content:
                    fail(f"secret {secret!r} found in {where}")
        client.kill()
        server.kill()
        agent.stop()
        print(f"slow log: {len(entries)} entries, exactly the slow operations, no secret anywhere")
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
