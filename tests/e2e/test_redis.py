#!/usr/bin/env python3
"""Redis seen from the wire, both sides, against redis-server's own counters.

A private redis-server (Debian's) is driven by real clients started after the agent:
- redis-benchmark -P 1 (GET, SET), then -P 16 with random keys (-r): 16 commands per write;
- redis-cli: SELECT, CONFIG GET, a WRONGTYPE error;
- a Python client (Debian's python3-redis, run by /usr/bin/python3): a pipeline of 50 commands in
  one write and a MULTI/EXEC transaction, one of whose commands fails inside EXEC.

Checked:
- per command, the server side's db operations (loupe_db_server_operation_duration_seconds_count
  of redis-server) equal INFO commandstats' calls + rejected_calls deltas exactly, and so do the
  client side's (db_client_operation_duration_seconds_count summed over the clients);
- WRONGTYPE errors are counted with their prefix (error_type), as many as were made;
- for a GET-only phase, the server side's cache hits and misses equal INFO stats' keyspace_hits
  and keyspace_misses deltas;
- the exposition passes promtool, and nothing is dropped or desynchronised."""
import collections
import os
import shutil
import socket
import subprocess
import tempfile
import time

from loupe_e2e import (Agent, fail, free_port, metric_or, parse_metrics, promtool_check,
                       require_root, require_tools, select, self_signed_certificate, time_limit,
                       wait_port)

# Debian's interpreter: python3-redis is installed for it (the one running the tests may differ).
DEBIAN_PYTHON = "/usr/bin/python3"

PY_CLIENT = r"""
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), db=0)
p = r.pipeline(transaction=False)
for i in range(25):
    p.set(f"py:{i}", i)
    p.get(f"py:{i}")
p.execute()
t = r.pipeline(transaction=True)   # MULTI ... EXEC in one write
t.incr("py:counter")
t.lpush("py:0", "x")                # WRONGTYPE inside EXEC: py:0 holds a string
t.get("py:counter")
try:
    t.execute()
except redis.exceptions.ResponseError:
    pass
print("done", flush=True)
"""


class RedisServer:
    """A private redis-server on a free port. With tls=True it also serves TLS on `tls_port`
    (a self-signed certificate, `certificate`; no client certificate asked for)."""

    def __init__(self, tls=False):
        require_tools("redis-server", "redis-cli", "redis-benchmark")
        self.work = tempfile.mkdtemp(prefix="loupe-redis-")
        self.port = free_port()
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.work, "--daemonize", "no"]
        if tls:
            self.tls_port = free_port()
            self.certificate, key = self_signed_certificate(self.work)
            argv += ["--tls-port", str(self.tls_port), "--tls-cert-file", self.certificate,
                     "--tls-key-file", key, "--tls-ca-cert-file", self.certificate,
                     "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        if tls:
            wait_port(self.tls_port)

    def info(self, section):
        """INFO <section> over a raw socket (not redis-cli: no client process of our own to
        account for); {key: value}."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(f"INFO {section}\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                data += s.recv(65536)
            header, rest = data.split(b"\r\n", 1)
            size = int(header[1:])
            while len(rest) < size + 2:
                rest += s.recv(65536)
        out = {}
        for line in rest[:size].decode().splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def commandstats(self):
        """{command as loupe names it ("GET", "CONFIG GET"): calls + rejected_calls}."""
        out = collections.Counter()
        for key, value in self.info("commandstats").items():
            fields = dict(kv.split("=") for kv in value.split(","))
            name = key[len("cmdstat_"):].replace("|", " ").upper()
            out[name] = int(fields["calls"]) + int(fields.get("rejected_calls", 0))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.work, ignore_errors=True)


def db_counts(samples, family, **labels):
    """Counter{operation: count} of a db histogram's _count, summed over the other labels."""
    got = collections.Counter()
    for l, v in select(samples, family + "_count", db_system_name="redis", **labels):
        got[l["db_operation_name"]] += int(v)
    return got


def delta(after, before):
    out = collections.Counter(after)
    out.subtract(before)
    return +out  # drops zeros


def compare(what, expected, got):
    keys = sorted(set(expected) | set(got))
    bad = [f"  {k}: redis={expected.get(k, 0)} loupe={got.get(k, 0)}" for k in keys
           if expected.get(k, 0) != got.get(k, 0)]
    if bad:
        fail(f"{what}: per-command counts differ\n" + "\n".join(bad))


def run(*argv):
    subprocess.run(list(argv), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


def main():
    require_root()
    time_limit(150)
    if not os.path.exists(DEBIAN_PYTHON):
        fail(f"{DEBIAN_PYTHON} missing")
    agent = Agent()
    server = RedisServer()
    try:
        port = str(server.port)
        before = server.commandstats()
        before_metrics = agent.metrics()
        run("redis-benchmark", "-p", port, "-t", "get,set", "-n", "3000", "-P", "1", "-c", "4",
            "-q")
        run("redis-benchmark", "-p", port, "-t", "get,set", "-n", "8000", "-P", "16", "-r", "1000",
            "-c", "4", "-q")
        run("redis-cli", "-p", port, "SET", "cli:str", "v")
        wrongtype = 3
        for _ in range(wrongtype - 1):
            subprocess.run(["redis-cli", "-p", port, "LPUSH", "cli:str", "x"], check=True,
                           stdout=subprocess.DEVNULL)
        run("redis-cli", "-p", port, "CONFIG", "GET", "maxmemory")
        run("redis-cli", "-p", port, "-n", "2", "SET", "cli:db2", "v")
        out = subprocess.run([DEBIAN_PYTHON, "-c", PY_CLIENT, port], capture_output=True,
                             text=True, timeout=60)
        if out.stdout.strip() != "done":
            fail("python client failed: " + out.stderr[-500:])
        agent.settle(1.0)
        expected = delta(server.commandstats(), before)
        expected.pop("INFO", None)  # the oracle's own questions
        text = agent.metrics_text()
        samples = parse_metrics(text)
        server_side = delta(db_counts(samples, "loupe_db_server_operation_duration_seconds",
                                      service_name="redis-server"),
                            db_counts(before_metrics, "loupe_db_server_operation_duration_seconds",
                                      service_name="redis-server"))
        server_side.pop("INFO", None)
        compare("server side (redis-server)", expected, server_side)
        client_side = delta(db_counts(samples, "db_client_operation_duration_seconds"),
                            db_counts(before_metrics, "db_client_operation_duration_seconds"))
        client_side.pop("INFO", None)
        compare("client side (redis-benchmark, redis-cli, python3)", expected, client_side)
        print(f"per-command counts exact on both sides: {dict(expected)}", flush=True)

        errors = sum(v for l, v in select(samples, "loupe_db_server_operation_duration_seconds_count",
                                          service_name="redis-server", error_type="WRONGTYPE"))
        if errors != wrongtype:
            fail(f"{errors} WRONGTYPE errors counted on the server side, {wrongtype} made")
        statuses = {l.get("db_response_status_code") for l, _ in
                    select(samples, "loupe_db_server_operation_duration_seconds_count",
                           error_type="WRONGTYPE")}
        if statuses != {"WRONGTYPE"}:
            fail(f"db_response_status_code of WRONGTYPE errors: {statuses}")
        namespaces = {l.get("db_namespace") for l, _ in
                      select(samples, "loupe_db_server_operation_duration_seconds_count",
                             service_name="redis-server", db_operation_name="SET")}
        if "2" not in namespaces or "0" not in namespaces:
            fail(f"SET seen in databases {namespaces}, expected 0 and 2 (SELECT 2 by redis-cli -n)")

        # A GET-only phase: the server's cache hits and misses against keyspace_hits/misses.
        stats_before = server.info("stats")
        metrics_before = agent.metrics()
        run("redis-benchmark", "-p", port, "-t", "get", "-n", "4000", "-r", "2000", "-P", "8",
            "-c", "2", "-q")
        agent.settle(1.0)
        stats_after = server.info("stats")
        metrics_after = agent.metrics()
        for result, key in (("hit", "keyspace_hits"), ("miss", "keyspace_misses")):
            oracle = int(stats_after[key]) - int(stats_before[key])
            got = (metric_or(metrics_after, "loupe_db_server_cache_lookups_total", 0,
                             service_name="redis-server", result=result)
                   - metric_or(metrics_before, "loupe_db_server_cache_lookups_total", 0,
                               service_name="redis-server", result=result))
            if got != oracle:
                fail(f"cache {result}s: loupe {got:.0f}, redis {key} {oracle}")
        print("cache hits and misses equal keyspace_hits/keyspace_misses", flush=True)

        promtool_check(text)
        for name in ("loupe_redis_desyncs_total", "loupe_redis_unparsed_segments_total"):
            if metric_or(samples, name, 0) != 0:
                fail(f"{name} = {metric_or(samples, name, 0)}")
        agent.stop()
        print("PASS")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
