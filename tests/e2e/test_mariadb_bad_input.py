#!/usr/bin/env python3
"""MySQL traffic that is broken, huge or cut short: nothing crashes, and the well-formed traffic
beside it is still counted exactly (per verb against MariaDB's Com_* deltas, both sides).

- garbage on the server's port: bytes that are no HandshakeResponse (after the greeting), and
  bytes sent before reading anything (mariadbd answers an error and closes);
- truncated packets: a HandshakeResponse cut short, and a COM_QUERY whose header promises more
  than is ever sent, on an authenticated connection, then closed;
- a 16 MB row: an INSERT of a 17 MB value (a command of two packets) and its SELECT (a row of
  two packets), python3-pymysql;
- a client killed (SIGKILL) in the middle of a 100,000-row result;
- a connection opened (and used) before the agent started: picked up at its next COM_QUERY, its
  50 SELECTs and 10 UPDATEs after the start counted on both sides (no greeting seen:
  db_system_name falls back to "mysql");
- meanwhile python3-pymysql on its own connection: 300 SELECTs and 100 UPDATEs."""
import os
import socket
import subprocess
import time

from loupe_e2e import (Agent, fail, metric_or, parse_metrics, promtool_check, require_root, select,
                       time_limit)
from test_mariadb import (CLIENT_FAMILY, DEBIAN_PYTHON, SERVER_FAMILY, SERVER_NAME, TRACED, MariaDB, compare,
                          db_counts, delta, expected_operations, run_python)

CONNECT = """
import os, signal, sys, pymysql, pymysql.cursors
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="loupe", password="pw",
                    database="sbtest", max_allowed_packet=64 << 20)
"""

PY_STEADY = CONNECT + r"""
cur = c.cursor()
for i in range(100):
    for _ in range(3):
        cur.execute("SELECT v FROM extra WHERE id = %s", (i,))
        cur.fetchall()
    cur.execute("UPDATE extra SET v = %s WHERE id = %s", ("s", i))
c.commit()
c.close()
print("done", flush=True)
"""

PY_BIG_ROW = CONNECT + r"""
cur = c.cursor()
cur.execute("INSERT INTO blobs VALUES (1, %s)", ("y" * (17 << 20),))
c.commit()
cur.execute("SELECT b FROM blobs WHERE id = 1")
(row,) = cur.fetchall()
assert len(row[0]) == 17 << 20
c.close()
print("done", flush=True)
"""

PY_EARLY = CONNECT + r"""
cur = c.cursor()
for i in range(5):
    cur.execute("SELECT v FROM extra WHERE id = %s", (i,))
    cur.fetchall()
print("ready", flush=True)
sys.stdin.readline()
for i in range(50):
    cur.execute("SELECT v FROM extra WHERE id = %s", (i,))
    cur.fetchall()
for i in range(10):
    cur.execute("UPDATE extra SET v = 'e' WHERE id = %s", (i,))
c.commit()
c.close()
print("done", flush=True)
"""

PY_TRUNCATED = CONNECT + r"""
c._sock.sendall(b"\x64\x00\x00\x00\x03SELECT 1")  # 100 bytes promised, 9 sent
c._sock.close()
print("done", flush=True)
"""

PY_KILLED = CONNECT + r"""
cur = c.cursor(pymysql.cursors.SSCursor)
cur.execute("SELECT seq, REPEAT('x', 200) FROM seq_1_to_100000")
for _ in range(10):
    cur.fetchone()
print("reading", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def garbage(port):
    # After the greeting: 2 KB that are no HandshakeResponse.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.recv(4096)
        s.sendall(bytes((i * 37 + 11) % 256 for i in range(2048)))
        try:
            s.recv(4096)
        except OSError:
            pass
    # Before reading anything: HTTP, then SQL words in no MySQL packet.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nSELECT * FROM users; INSERT INTO t VALUES (1)")
        try:
            s.recv(4096)
        except OSError:
            pass
    # A HandshakeResponse cut short, then closed.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.recv(4096)
        s.sendall(b"\x80\x00\x00\x01\x08\xa2\x2a\x01")


def main():
    require_root()
    time_limit(120)
    server = MariaDB(extra=("--max-allowed-packet=64M",))
    try:
        port = server.port
        server.sql("USE sbtest; CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB);"
                   "INSERT INTO extra SELECT seq, 'v' FROM seq_0_to_99")
        early = subprocess.Popen([DEBIAN_PYTHON, "-c", PY_EARLY, str(port)], text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        if early.stdout.readline().strip() != "ready":
            fail("early client failed: " + early.stderr.read()[-500:])
        agent = Agent(*TRACED)
        started = time.time()
        before = server.com()
        before_metrics = agent.metrics()
        early.stdin.write("go\n")
        early.stdin.flush()

        steady = subprocess.Popen([DEBIAN_PYTHON, "-c", PY_STEADY, str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        garbage(port)
        run_python(PY_TRUNCATED, port)
        run_python(PY_BIG_ROW, port)
        killed = subprocess.run([DEBIAN_PYTHON, "-c", PY_KILLED, str(port)], capture_output=True,
                                text=True, timeout=60)
        if killed.returncode != -9 or "reading" not in killed.stdout:
            fail(f"the killed client did not die mid-result: {killed.returncode} "
                 f"{killed.stderr[-500:]}")
        out, err = early.communicate(timeout=60)
        if out.strip() != "done":
            fail("early client failed: " + err[-500:])
        out, err = steady.communicate(timeout=60)
        if out.strip() != "done":
            fail("steady client failed: " + err[-500:])
        time.sleep(1.0)  # the server notices the killed client and ends its result
        agent.settle(1.0)
        if agent.proc.poll() is not None:
            fail("the agent died:\n" + agent.logs())
        com_delta = delta(server.com(), before)
        expected = expected_operations(com_delta)
        text = agent.metrics_text()
        samples = parse_metrics(text)
        lost = (metric_or(samples, "loupe_events_dropped_total", 0, reason="ringbuf_full")
                - metric_or(before_metrics, "loupe_events_dropped_total", 0, reason="ringbuf_full"))
        if lost:
            fail(f"{lost:.0f} events lost to a full ring buffer: counts cannot be exact")
        server_side = delta(db_counts(samples, SERVER_FAMILY, service_name=SERVER_NAME),
                            db_counts(before_metrics, SERVER_FAMILY, service_name=SERVER_NAME))
        compare("server side (mariadbd)", expected, server_side)
        client_side = delta(db_counts(samples, CLIENT_FAMILY),
                            db_counts(before_metrics, CLIENT_FAMILY))
        compare("client side (python3)", expected, client_side)
        print(f"per-verb counts exact on both sides: {dict(sorted(expected.items()))}", flush=True)
        for family, labels in ((SERVER_FAMILY, {"service_name": SERVER_NAME}), (CLIENT_FAMILY, {})):
            early_selects = sum(v for _, v in select(samples, family + "_count",
                                                     db_system_name="mysql",
                                                     db_operation_name="SELECT", **labels))
            if early_selects != 50:
                fail(f"{family}: {early_selects:.0f} SELECTs of the connection older than the "
                     "agent (db_system_name=\"mysql\": no greeting seen), 50 made")
        print("the connection older than the agent: picked up at its next COM_QUERY", flush=True)
        # The killed client's SELECT: ended by the close on both sides, or seen to its end.
        closed = sum(v for _, v in select(samples, SERVER_FAMILY + "_count", error_type="closed"))
        print(f"operations ended by a close (server side): {closed:.0f}")
        for l, v in select(samples, SERVER_FAMILY + "_count", error_type="closed"):
            print("   ", l, v)
        promtool_check(text)
        agent.stop()
        print(f"PASS ({time.time() - started:.1f} s with the agent)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
