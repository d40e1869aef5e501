#!/usr/bin/env python3
"""PostgreSQL traffic that is broken, huge or cut short: nothing crashes, and the well-formed
traffic beside it is still counted exactly.

A session opened before the agent started, with a statement prepared on it, executes it 30 times
after: each is counted on both sides as `EXECUTE early_stmt` (pg_stat_statements: 30 calls).
Meanwhile pgbench -M extended runs on its own connections to database `bench`; the bad traffic
goes to the same server (other connections, database `big`):
- garbage on the port: an HTTP request and random bytes, and a StartupMessage header followed by
  random bytes (the server refuses both and closes);
- truncated packets: half a StartupMessage after an SSLRequest refusal, and a session that sends
  the first bytes of a Query and closes;
- a 16 MB row (psycopg2), read twice, then a small query: counted exactly on both sides (the
  client reads megabytes at once: the row's end is found from the read's last bytes);
- a psql client killed with SIGKILL in the middle of a 100-million-row result (11 GB: it cannot
  complete in the second before the kill, as 3 million rows once did; the SRF in the select
  list streams where one in FROM would first be materialised).
Checked: the agent is alive and its exposition passes promtool; pgbench's per-verb counts on both
sides equal pg_stat_statements' calls in `bench` exactly."""
import os
import signal
import socket
import struct
import subprocess
import time

from loupe_e2e import Agent, fail, promtool_check, require_root, select, time_limit
from postgres_server import BENCH_DB, PostgresServer
from test_postgres import CLIENT, DEBIAN_PYTHON, SERVER, compare, delta, verb_counts

BIG_DB = "big"
EARLY_DB = "early"
EARLY_EXECUTES = 30

BIG_ROW_CLIENT = r"""
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1])
conn.autocommit = True
cur = conn.cursor()
for _ in range(2):
    cur.execute("SELECT repeat('x', 16 * 1024 * 1024)")
    assert len(cur.fetchone()[0]) == 16 * 1024 * 1024
cur.execute("SELECT 1")
print("done", flush=True)
"""


def startup(user, database):
    body = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    return struct.pack(">II", len(body) + 8, 196608) + body


def drain(sock, until=None, timeout=5):
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if until and until in data:
                break
    except OSError:
        pass
    return data


def message(type_, body=b""):
    return type_ + struct.pack(">I", len(body) + 4) + body


class EarlySession:
    """A session opened, and a statement prepared on it, before the agent starts: protocol 3.0
    spoken by hand (Parse once, then Bind/Execute/Sync of the named statement)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(startup("postgres", EARLY_DB))
        self.read_until_ready()
        self.sock.sendall(message(b"P", b"early_stmt\0SELECT $1::int + 1\0\0\0") + message(b"S"))
        self.read_until_ready()

    def read_until_ready(self):
        data = b""
        while not data.endswith(b"Z\0\0\0\5I"):
            chunk = self.sock.recv(65536)
            if not chunk:
                fail("the early session was closed")
            data += chunk
        if data.startswith(b"E"):
            fail("the early session got an error")

    def execute(self):
        bind = b"\0early_stmt\0" + struct.pack(">hhIsh", 0, 1, 1, b"7", 0)
        self.sock.sendall(message(b"B", bind) + message(b"E", b"\0" + struct.pack(">I", 0)) +
                          message(b"S"))
        self.read_until_ready()


def main():
    require_root()
    time_limit(120)
    server = PostgresServer(BIG_DB, EARLY_DB)
    early = EarlySession(server.port)
    # 32 MB of rows in 8 KiB writes: a ring large enough that none of their events is dropped.
    agent = Agent("--ring-buffer-bytes", "134217728")
    try:
        run_dsn = server.dsn()
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-n", run_dsn], check=True,
                       capture_output=True, timeout=60)
        server.reset_statements()
        agent.settle(0.3)
        before = agent.metrics()
        bench = subprocess.Popen(["pgbench", "-n", "-M", "extended", "-c", "2", "-j", "1", "-t",
                                  "400", run_dsn], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)

        # The statement prepared before the agent started, executed now.
        for _ in range(EARLY_EXECUTES):
            early.execute()

        # Garbage on the port.
        with socket.create_connection(("127.0.0.1", server.port)) as junk:
            junk.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(2000))
            drain(junk)
        with socket.create_connection(("127.0.0.1", server.port)) as junk:
            junk.sendall(struct.pack(">II", 9000, 196608) + os.urandom(3000))
            drain(junk, timeout=1)
        # Truncated packets.
        with socket.create_connection(("127.0.0.1", server.port)) as cut:
            cut.sendall(struct.pack(">II", 8, 80877103))
            if cut.recv(1) != b"N":
                fail("the SSL-less server did not refuse SSL")
            cut.sendall(startup("postgres", BIG_DB)[:11])
        with socket.create_connection(("127.0.0.1", server.port)) as cut:
            cut.sendall(startup("postgres", BIG_DB))
            drain(cut, until=b"Z\0\0\0\5I")
            cut.sendall(b"Q" + struct.pack(">I", 100) + b"SELECT 1 FROM pg_cl")

        # A 16 MB row, twice.
        big_before = agent.metrics()
        out = subprocess.run([DEBIAN_PYTHON, "-c", BIG_ROW_CLIENT, server.dsn(BIG_DB)],
                             capture_output=True, text=True, timeout=60)
        if not out.stdout.startswith("done"):
            fail("16 MB row client failed: " + out.stderr[-500:])
        # A client killed in the middle of a long result.
        victim = subprocess.Popen(["psql", "-X", "-q", "-d", server.dsn(BIG_DB), "-c",
                                   "SELECT generate_series(1, 100000000), repeat('y', 100)"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        victim.send_signal(signal.SIGKILL)
        victim.wait()

        if bench.wait(timeout=60) != 0:
            fail("pgbench failed")
        agent.settle(1.0)
        if agent.proc.poll() is not None:
            fail("the agent died:\n" + agent.logs())
        samples = agent.metrics()
        expected = server.verb_calls()
        compare("pgbench beside bad input: server side", expected,
                delta(verb_counts(samples, SERVER), verb_counts(before, SERVER)))
        compare("pgbench beside bad input: client side", expected,
                delta(verb_counts(samples, CLIENT), verb_counts(before, CLIENT)))
        print(f"pgbench per-verb counts exact beside bad input: {dict(expected)}", flush=True)

        early_calls = server.verb_calls(EARLY_DB)
        if early_calls != {"SELECT": EARLY_EXECUTES}:
            fail(f"pg_stat_statements of the early session: {dict(early_calls)}")
        for family in (SERVER, CLIENT):
            got = sum(v for _, v in select(samples, family + "_count",
                                           db_query_summary="EXECUTE early_stmt"))
            if got != EARLY_EXECUTES:
                fail(f"{family}: {got} executions of the statement prepared before the agent "
                     f"started, pg_stat_statements says {EARLY_EXECUTES}")
        print(f"statement prepared before the agent started: {EARLY_EXECUTES} executions as "
              "'EXECUTE early_stmt' on both sides", flush=True)

        big = delta(verb_counts(samples, SERVER, db=BIG_DB), verb_counts(big_before, SERVER, db=BIG_DB))
        big_client = delta(verb_counts(samples, CLIENT, db=BIG_DB),
                           verb_counts(big_before, CLIENT, db=BIG_DB))
        for side, got in (("server", big), ("client", big_client)):
            if got.get("SELECT", 0) != 3:
                fail(f"16 MB rows: {side} side counted {dict(got)}, expected 3 SELECT")
        killed = sum(v for _, v in select(samples, SERVER + "_count", db_namespace=BIG_DB)
                     if _.get("error_type"))
        print(f"16 MB rows: server side {dict(big)}, client side {dict(big_client)}; "
              f"killed client's statement ended with an error on the server side: {killed}",
              flush=True)
        promtool_check(agent.metrics_text())
        agent.stop()
        print("PASS")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
