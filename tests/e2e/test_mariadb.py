#!/usr/bin/env python3
"""MariaDB seen from the wire, both sides, against the server's own Com_* counters.

A private MariaDB 10.11 (Debian's mariadbd, its own datadir, port and socket) is driven by real
clients started after the agent:
- python3-pymysql (Debian's /usr/bin/python3): SELECT SLEEP(0.05) thirty times, then a mix of
  statements, COM_PING, COM_INIT_DB (select_db) and COMMIT;
- sysbench oltp_read_write with --db-ps-mode=disable (text queries) and =auto (prepared
  statements: COM_STMT_PREPARE / EXECUTE / CLOSE);
- the mariadb command-line client: an INSERT that violates the primary key (error 1062) and a
  statement with a syntax error (1064).
The oracle is SHOW GLOBAL STATUS over the server's Unix socket (not traced: no TCP). The server and
the clients run as lp_mariadbd, lp_pymysql, lp_sysbench and lp_mariadb (symbolic links), and only
they are traced (--comm).

Checked:
- SELECT SLEEP(0.05): the server's and the client's p50 within 2.5 ms (5 %) of the client's own
  timing of the same queries, and within 5 % of 50 ms unless that timing itself was not (a
  machine too loaded for MariaDB's sleeps to be on time: then said, not failed);
- per verb, the server side's operations (mariadbd) and the client side's (summed over the
  clients) equal the Com_* deltas exactly. A prepared statement's execution counts under its
  statement's verb, as MariaDB counts it in Com_<verb> (and in Com_stmt_execute);
  COM_STMT_PREPARE and COM_STMT_CLOSE count as STMT_PREPARE and STMT_CLOSE;
- errors 1062 and 1064 are counted with their number, as many as were made;
- db_system_name="mariadb" on every series, db_namespace the database in use;
- the exposition passes promtool, and nothing is desynchronised."""
import atexit
import collections
import os
import shutil
import subprocess
import tempfile
import time

from loupe_e2e import (Agent, fail, free_port, metric_or, parse_metrics, promtool_check,
                       require_root, require_tools, select, time_limit, wait_port)

# The server and the clients run under names of their own (symbolic links: a process's name is
# the one it was executed by), and only they are traced: the machine may be busy with other
# traffic, another test's MariaDB or Python, that would compete for the ring buffer (events lost
# there are checked, and would fail the test).
_BIN = tempfile.mkdtemp(prefix="loupe-mysql-bin-")
atexit.register(shutil.rmtree, _BIN, True)


def _named(name, target):
    path = os.path.join(_BIN, name)
    os.symlink(target, path)
    return path


SERVER_NAME, PYTHON_NAME, SYSBENCH_NAME, CLI_NAME = ("lp_mariadbd", "lp_pymysql", "lp_sysbench",
                                                     "lp_mariadb")
MARIADBD = _named(SERVER_NAME, shutil.which("mariadbd") or "/usr/sbin/mariadbd")
# Debian's interpreter: python3-pymysql is installed for it.
DEBIAN_PYTHON = _named(PYTHON_NAME, "/usr/bin/python3")
SYSBENCH = _named(SYSBENCH_NAME, shutil.which("sysbench") or "/usr/bin/sysbench")
MARIADB_CLI = _named(CLI_NAME, shutil.which("mariadb") or "/usr/bin/mariadb")
TRACED = ("--comm", ",".join((SERVER_NAME, PYTHON_NAME, SYSBENCH_NAME, CLI_NAME)))
SERVER_FAMILY = "loupe_db_server_operation_duration_seconds"
CLIENT_FAMILY = "db_client_operation_duration_seconds"

# Com_* counter -> the operation loupe reports.
COM_TO_OPERATION = {
    "Com_select": "SELECT", "Com_insert": "INSERT", "Com_update": "UPDATE",
    "Com_delete": "DELETE", "Com_replace": "REPLACE", "Com_begin": "BEGIN",
    "Com_commit": "COMMIT", "Com_rollback": "ROLLBACK", "Com_set_option": "SET",
    "Com_stmt_prepare": "STMT_PREPARE", "Com_stmt_close": "STMT_CLOSE",
    "Com_stmt_reset": "STMT_RESET", "Com_change_db": "INIT_DB",
}

PY_SLEEP = r"""
import sys, time, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="loupe", password="pw",
                    database="sbtest")
cur = c.cursor()
took = []
for _ in range(30):
    t = time.perf_counter()
    cur.execute("SELECT SLEEP(0.05)")
    cur.fetchall()
    took.append(time.perf_counter() - t)
c.close()
took.sort()
print(f"done {took[len(took) // 2]}", flush=True)
"""

PY_MIX = r"""
import sys, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="loupe", password="pw",
                    database="sbtest")
cur = c.cursor()
for i in range(30):
    cur.execute("SELECT c FROM sbtest1 WHERE id = %s", (i + 1,))
    cur.fetchall()
cur.executemany("INSERT INTO extra (id, v) VALUES (%s, %s)", [(i, "x") for i in range(10)])
cur.execute("UPDATE extra SET v = 'y' WHERE id < 5")
cur.execute("DELETE FROM extra WHERE id >= 8")
c.commit()
c.ping()
c.select_db("other")
cur.execute("SELECT 1")
cur.fetchall()
c.close()
print("done", flush=True)
"""


class MariaDB:
    """A private mariadbd: its own datadir, TCP port and Unix socket; run as root. `binary`: the
    server's name (benchmarks run the real `mariadbd`, as deployed)."""

    def __init__(self, extra=(), binary=MARIADBD):
        require_tools("mariadbd", "mariadb-install-db", "mariadb")
        self.work = tempfile.mkdtemp(prefix="loupe-mariadb-")
        self.socket = os.path.join(self.work, "sock")
        self.port = free_port()
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.work}/data",
                        "--user=root", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        self.proc = subprocess.Popen(
            [binary, "--no-defaults", f"--datadir={self.work}/data", "--user=root",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
             f"--pid-file={self.work}/pid", f"--log-error={self.work}/error.log",
             "--skip-log-bin", "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
             "--max-connections=50", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, timeout=30)
        self.sql("CREATE DATABASE sbtest; CREATE DATABASE other;"
                 "CREATE USER 'loupe'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON *.* TO 'loupe'@'%';"
                 "CREATE TABLE sbtest.extra (id INT PRIMARY KEY, v VARCHAR(10));"
                 "CREATE TABLE sbtest.dup (id INT PRIMARY KEY)")

    def sql(self, text):
        """Runs statements over the Unix socket (not traced); their output rows."""
        out = subprocess.run(["mariadb", "--no-defaults", "-S", self.socket, "-uroot", "-N", "-B",
                              "-e", text], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            fail(f"mariadb -e {text[:80]!r}: {out.stderr.strip()[-500:]}")
        return [line.split("\t") for line in out.stdout.splitlines()]

    def com(self):
        return collections.Counter({k: int(v) for k, v in
                                    self.sql("SHOW GLOBAL STATUS LIKE 'Com\\_%'")})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def sysbench(port, *args):
    return [SYSBENCH, "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1",
            f"--mysql-port={port}", "--mysql-user=loupe", "--mysql-password=pw",
            "--mysql-db=sbtest", "--tables=1", "--table-size=1000", *args]


def db_counts(samples, family, **labels):
    """Counter{operation: count} of a db histogram's _count, summed over the other labels."""
    got = collections.Counter()
    for l, v in select(samples, family + "_count", **labels):
        if l.get("db_system_name") in ("mariadb", "mysql"):
            got[l["db_operation_name"]] += int(v)
    return got


def delta(after, before):
    out = collections.Counter(after)
    out.subtract(before)
    return +out


def expected_operations(com_delta):
    out = collections.Counter()
    for com, op in COM_TO_OPERATION.items():
        if com_delta.get(com, 0):
            out[op] += com_delta[com]
    return out


def compare(what, expected, got):
    bad = [f"  {op}: mariadb={expected.get(op, 0)} loupe={got.get(op, 0)}"
           for op in sorted(set(COM_TO_OPERATION.values()))
           if expected.get(op, 0) != got.get(op, 0)]
    if bad:
        fail(f"{what}: per-verb counts differ\n" + "\n".join(bad))


def run_python(code, port):
    """Runs a pymysql client; what it printed after "done"."""
    out = subprocess.run([DEBIAN_PYTHON, "-c", code, str(port)], capture_output=True, text=True,
                         timeout=60)
    if not out.stdout.startswith("done"):
        fail("python client failed: " + out.stderr[-800:])
    return out.stdout[len("done"):].strip()


def main():
    require_root()
    time_limit(120)
    require_tools("sysbench")
    server = MariaDB()
    try:
        port = server.port
        subprocess.run(sysbench(port, "prepare"), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        agent = Agent(*TRACED)
        started = time.time()

        # Latency first, alone in the windows: SELECT SLEEP(0.05).
        client_p50 = float(run_python(PY_SLEEP, port))
        print(f"SELECT SLEEP(0.05) p50 measured by the client itself: {client_p50 * 1e3:.2f} ms")
        agent.settle(1.0)
        samples = agent.metrics()
        for family, service in (("loupe_db_server_operation_duration_window_seconds", SERVER_NAME),
                                ("loupe_db_client_operation_duration_window_seconds", PYTHON_NAME)):
            rows = select(samples, family, service_name=service, db_operation_name="SELECT",
                          quantile="0.5", window="1m")
            if len(rows) != 1:
                fail(f"{family}: expected one SELECT series of {service}, got {rows}")
            p50 = rows[0][1]
            print(f"SELECT SLEEP(0.05) p50 ({service}): {p50 * 1e3:.2f} ms", flush=True)
            # Against the client's own clock: loupe adds or loses no more than 2.5 ms.
            if abs(p50 - client_p50) > 0.050 * 0.05:
                fail(f"{service}: p50 {p50 * 1e3:.2f} ms, the client measured "
                     f"{client_p50 * 1e3:.2f} ms")
            # Against 50 ms, unless the machine was so loaded that MariaDB's own sleeps (as the
            # client timed them) overshot by more than that.
            if abs(p50 - 0.050) > 0.050 * 0.05:
                if abs(client_p50 - 0.050) <= 0.050 * 0.05:
                    fail(f"{service}: p50 {p50 * 1e3:.2f} ms is not within 5 % of 50 ms")
                print(f"  (not checked against 50 ms: the machine is loaded, the client's own "
                      f"p50 is {client_p50 * 1e3:.2f} ms)")

        before = server.com()
        before_metrics = agent.metrics()
        for mode in ("disable", "auto"):
            # 400 transactions at 150/s (~2.7 s, 18 statements each): a rate the agent keeps up
            # with on a loaded 2-core CI machine (lost ring-buffer events are checked below).
            subprocess.run(sysbench(port, "--threads=2", "--events=400", "--time=0",
                                    "--rate=150", f"--db-ps-mode={mode}", "run"),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60)
        run_python(PY_MIX, port)
        cli = [MARIADB_CLI, "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "--protocol=tcp",
               "-uloupe", "-ppw", "sbtest", "-e"]
        subprocess.run(cli + ["INSERT INTO dup VALUES (1)"], check=True, timeout=30,
                       stdout=subprocess.DEVNULL)
        made = {"1062": 2, "1064": 3}
        for _ in range(made["1062"]):
            subprocess.run(cli + ["INSERT INTO dup VALUES (1)"], timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(made["1064"]):
            subprocess.run(cli + ["SELEC oops FROM"], timeout=30, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        agent.settle(1.0)
        com_delta = delta(server.com(), before)
        expected = expected_operations(com_delta)
        text = agent.metrics_text()
        samples = parse_metrics(text)
        lost = (metric_or(samples, "loupe_events_dropped_total", 0, reason="ringbuf_full")
                - metric_or(before_metrics, "loupe_events_dropped_total", 0, reason="ringbuf_full"))
        if lost:
            fail(f"{lost:.0f} events lost to a full ring buffer (the agent starved of CPU): "
                 "counts cannot be exact")
        server_side = delta(db_counts(samples, SERVER_FAMILY, service_name=SERVER_NAME),
                            db_counts(before_metrics, SERVER_FAMILY, service_name=SERVER_NAME))
        compare("server side (mariadbd)", expected, server_side)
        client_side = delta(db_counts(samples, CLIENT_FAMILY),
                            db_counts(before_metrics, CLIENT_FAMILY))
        compare("client side (sysbench, python3, mariadb)", expected, client_side)
        print(f"per-verb counts exact on both sides: {dict(sorted(expected.items()))}", flush=True)
        if com_delta["Com_stmt_execute"] == 0:
            fail("sysbench --db-ps-mode=auto made no COM_STMT_EXECUTE")
        print(f"(Com_stmt_execute {com_delta['Com_stmt_execute']}: counted under their verbs)")

        for code, count in made.items():
            for family in (SERVER_FAMILY, CLIENT_FAMILY):
                got = sum(v for _, v in select(samples, family + "_count", error_type=code,
                                               db_response_status_code=code))
                if got != count:
                    fail(f"{family}: {got:.0f} errors {code} counted, {count} made")
        print(f"errors counted: {made}", flush=True)

        systems = {l.get("db_system_name") for family in (SERVER_FAMILY, CLIENT_FAMILY)
                   for l, _ in select(samples, family + "_count")
                   if l.get("db_operation_name") in ("SELECT", "STMT_PREPARE")}
        if systems != {"mariadb"}:
            fail(f"db_system_name of the SQL series: {systems}, expected mariadb")
        namespaces = {l.get("db_namespace") for l, _ in
                      select(samples, SERVER_FAMILY + "_count", service_name=SERVER_NAME,
                             db_operation_name="SELECT")}
        if not {"sbtest", "other"} <= namespaces:
            fail(f"SELECT seen in databases {namespaces}, expected sbtest and other")

        promtool_check(text)
        for name in ("loupe_mysql_desyncs_total", "loupe_mysql_unparsed_segments_total"):
            if metric_or(samples, name, 0) != 0:
                fail(f"{name} = {metric_or(samples, name, 0)}")
        agent.stop()
        print(f"PASS ({time.time() - started:.1f} s with the agent)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
