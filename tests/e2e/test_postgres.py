#!/usr/bin/env python3
"""PostgreSQL seen from the wire, both sides, against pg_stat_statements.

A private PostgreSQL 15 (Debian's, tests/e2e/postgres_server.py) without SSL, so that every
libpq client's `sslmode=prefer` SSLRequest is refused (`N`) and the session goes on in plaintext.
Real clients, started after the agent, in phases (pg_stat_statements reset before each):
- pgbench -M simple, -M extended, -M prepared (the built-in TPC-B-like script);
- pgbench -M extended with a custom script pipelining three statements (\\startpipeline): several
  Executes before one Sync;
- psql: a script, a multi-statement query string (-c: one Query message), COPY in and out, a unique violation (23505) and a syntax
  error (42601); a python3-psycopg2 client: executemany, a server-side (named) cursor, and the
  same two errors.

Checked:
- per verb, the successful operations on the server side (loupe_db_server_operation_duration_
  seconds_count of the postgres backends) and on the client side (db_client_operation_duration_
  seconds_count of pgbench, psql, python3) equal pg_stat_statements' calls exactly (but for
  -M prepared's BEGIN/END, which pg_stat_statements counts once per connection: pgbench's own
  transaction count is their oracle);
- errors are counted with their SQLSTATE (db_response_status_code, error_type), as many as made;
- `SELECT pg_sleep(0.05)`: the windowed p50 on both sides is within 5 % of 50 ms;
- db_namespace is the database, db_system_name "postgresql"; the exposition passes promtool, and
  nothing is desynchronised;
- three psql connections whose SSLRequest is refused: loupe_postgresql_ssl_requests_total and
  loupe_postgresql_ssl_refused_total rise by exactly 6 (each end once), tls_connections by 0."""
import collections
import os
import re
import subprocess
import tempfile

from loupe_e2e import (Agent, fail, metric_or, parse_metrics, promtool_check, require_root,
                       select, time_limit)
from postgres_server import BENCH_DB, PostgresServer, canonical

DEBIAN_PYTHON = "/usr/bin/python3"
SLEEP_DB = "sleepy"

PIPELINE_SCRIPT = r"""\set aid random(1, 100000)
\startpipeline
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
SELECT count(*) FROM pgbench_branches;
\endpipeline
"""

PSQL_SCRIPT = r"""
BEGIN; UPDATE items SET name = 'x' WHERE id = 1; SELECT count(*) FROM items; COMMIT;
COPY items (id, name) FROM STDIN;
1000	a
1001	b
\.
COPY (SELECT id FROM items WHERE id < 10) TO STDOUT;
"""

PY_CLIENT = r"""
import sys, psycopg2, psycopg2.errors
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
cur.executemany("INSERT INTO items VALUES (%s, %s)", [(i, f"n{i}") for i in range(100, 160)])
conn.commit()
named = conn.cursor(name="scan")
named.itersize = 25
named.execute("SELECT id, name FROM items ORDER BY id")
rows = sum(1 for _ in named)
named.close()
conn.commit()
try:
    cur.execute("INSERT INTO items VALUES (100, 'dup')")
except psycopg2.errors.UniqueViolation:
    conn.rollback()
try:
    cur.execute("SELEC 1")
except psycopg2.errors.SyntaxError:
    conn.rollback()
sleepy = psycopg2.connect(sys.argv[2])
sleepy.autocommit = True
for _ in range(int(sys.argv[3])):
    sleepy.cursor().execute("SELECT pg_sleep(0.05)")
print("done", rows, flush=True)
"""

SERVER = "loupe_db_server_operation_duration_seconds"
CLIENT = "db_client_operation_duration_seconds"


def verb_counts(samples, family, db=BENCH_DB, errors=False):
    """Counter{verb: count} of successful operations (or {sqlstate: count} of errors) in `db`."""
    got = collections.Counter()
    for l, v in select(samples, family + "_count", db_system_name="postgresql", db_namespace=db):
        if errors and "error_type" in l:
            got[l["error_type"]] += int(v)
        elif not errors and "error_type" not in l:
            got[canonical(l["db_operation_name"])] += int(v)
    return got


def delta(after, before):
    out = collections.Counter(after)
    out.subtract(before)
    return +out


def compare(what, expected, got):
    keys = sorted(set(expected) | set(got))
    bad = [f"  {k}: pg_stat_statements={expected.get(k, 0)} loupe={got.get(k, 0)}" for k in keys
           if expected.get(k, 0) != got.get(k, 0)]
    if bad:
        fail(f"{what}: per-verb counts differ\n" + "\n".join(bad))


def run(*argv, stdin=None):
    out = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail(f"{argv[0]} failed ({out.returncode}): {out.stderr[-800:]}")
    return out.stdout


def transactions(pgbench_output):
    """pgbench's own count of the transactions it ran."""
    m = re.search(r"number of transactions actually processed: (\d+)", pgbench_output)
    if not m:
        fail("pgbench printed no transaction count")
    return int(m.group(1))


def phase(agent, server, name, action, fixup=None):
    """Runs `action` between a pg_stat_statements reset and a read; compares both sides."""
    server.reset_statements()
    agent.settle(0.3)
    before = agent.metrics()
    result = action()
    agent.settle(1.0)
    expected = server.verb_calls()
    if fixup:
        fixup(expected, result)
    samples = agent.metrics()
    compare(f"{name}: server side", expected,
            delta(verb_counts(samples, SERVER), verb_counts(before, SERVER)))
    compare(f"{name}: client side", expected,
            delta(verb_counts(samples, CLIENT), verb_counts(before, CLIENT)))
    print(f"{name}: per-verb counts exact on both sides: {dict(expected)}", flush=True)
    return before, samples


def main():
    require_root()
    time_limit(120)
    if not os.path.exists(DEBIAN_PYTHON):
        fail(f"{DEBIAN_PYTHON} missing")
    agent = Agent()
    server = PostgresServer(SLEEP_DB)
    try:
        server.psql("CREATE TABLE items (id int PRIMARY KEY, name text)")
        run("pgbench", "-i", "-q", "-s", "1", "-n", server.dsn())
        bench = ["pgbench", "-n", "-c", "2", "-j", "1", "-t", "150"]
        for mode in ("simple", "extended"):
            phase(agent, server, f"pgbench -M {mode}",
                  lambda: run(*bench, "-M", mode, server.dsn()))

        # pg_stat_statements counts a utility statement run from a prepared statement only on its
        # first execution per connection (re-executions from the plan cache carry queryId 0):
        # BEGIN and END are taken from pgbench's own count of transactions instead.
        def prepared_utilities(expected, output):
            for verb in ("BEGIN", "COMMIT"):
                expected[verb] = transactions(output)

        phase(agent, server, "pgbench -M prepared",
              lambda: run(*bench, "-M", "prepared", server.dsn()), prepared_utilities)
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write(PIPELINE_SCRIPT)
        try:
            phase(agent, server, "pgbench \\startpipeline",
                  lambda: run(*bench, "-M", "extended", "-f", f.name, server.dsn()))
        finally:
            os.unlink(f.name)

        sleeps = 20

        def clients():
            run("psql", "-X", "-q", "-d", server.dsn(), "-f", "-", stdin=PSQL_SCRIPT)
            # -c sends its string as one Query: four statements, four operations.
            run("psql", "-X", "-q", "-d", server.dsn(), "-c",
                "BEGIN; UPDATE items SET name = 'y' WHERE id = 2; SELECT count(*) FROM items; "
                "COMMIT")
            for sql in ("INSERT INTO items VALUES (1, 'dup')", "INSERT INTO items VALUES (2, 'd')",
                        "SELEC 1"):
                subprocess.run(["psql", "-X", "-q", "-d", server.dsn(), "-c", sql],
                               capture_output=True, timeout=30)
            out = run(DEBIAN_PYTHON, "-c", PY_CLIENT, server.dsn(), server.dsn(SLEEP_DB),
                      str(sleeps))
            if not out.startswith("done"):
                fail("python client failed")

        server.psql("INSERT INTO items SELECT g, 'i' FROM generate_series(1, 10) g")
        before, samples = phase(agent, server, "psql and psycopg2", clients)

        made = {"23505": 3, "42601": 2}  # psql: two duplicate keys and a typo; psycopg2: one each
        for family in (SERVER, CLIENT):
            errors = delta(verb_counts(samples, family, errors=True),
                           verb_counts(before, family, errors=True))
            if errors != made:
                fail(f"{family}: errors by SQLSTATE {dict(errors)}, made {made}")
            statuses = {l.get("db_response_status_code") for l, _ in
                        select(samples, family + "_count", error_type="23505")}
            if statuses != {"23505"}:
                fail(f"{family}: db_response_status_code of 23505 errors: {statuses}")
        print(f"errors counted by SQLSTATE on both sides: {made}", flush=True)

        for family, window in ((SERVER, "loupe_db_server_operation_duration_window_seconds"),
                               (CLIENT, "loupe_db_client_operation_duration_window_seconds")):
            count = sum(v for _, v in select(samples, family + "_count", db_namespace=SLEEP_DB,
                                             db_operation_name="SELECT"))
            if count != sleeps:
                fail(f"{family}: {count} pg_sleep statements counted, {sleeps} made")
            p50 = metric_or(samples, window, None, db_namespace=SLEEP_DB,
                            db_operation_name="SELECT", window="1m", quantile="0.5")
            if p50 is None or abs(p50 - 0.05) > 0.05 * 0.05:
                fail(f"{window}: p50 of SELECT pg_sleep(0.05) is {p50}, not 50 ms +- 5 %")
            print(f"{family}: pg_sleep(0.05) p50 = {p50 * 1000:.2f} ms", flush=True)

        # Each libpq connection's SSLRequest (sslmode=prefer) is refused by this server without
        # SSL: counted once at each end (psql's and its backend's), and no connection is TLS.
        counters = ("loupe_postgresql_ssl_requests_total", "loupe_postgresql_ssl_refused_total",
                    "loupe_postgresql_tls_connections_total")
        agent.settle(0.3)
        samples = agent.metrics()
        counted_before = [metric_or(samples, name, 0) for name in counters]
        refused = 3
        for _ in range(refused):
            run("psql", "-X", "-q", "-d", server.dsn(), "-c", "SELECT 1")
        agent.settle(1.0)
        samples = agent.metrics()
        counted = [metric_or(samples, name, 0) - before_value
                   for name, before_value in zip(counters, counted_before)]
        if counted != [2 * refused, 2 * refused, 0]:
            fail(f"{refused} SSL-refused connections (psql and its backend traced): "
                 f"{dict(zip(counters, counted))}, expected {2 * refused}, {2 * refused}, 0")
        print(f"SSL-refused connections counted: {dict(zip(counters, counted))}", flush=True)

        text = agent.metrics_text()
        promtool_check(text)
        systems = {l.get("db_system_name") for l, _ in select(parse_metrics(text), SERVER + "_count",
                                                                db_namespace=BENCH_DB)}
        if systems != {"postgresql"}:
            fail(f"db_system_name {systems}")
        desyncs = metric_or(parse_metrics(text), "loupe_postgresql_desyncs_total", 0)
        if desyncs != 0:
            fail(f"loupe_postgresql_desyncs_total = {desyncs}")
        agent.stop()
        print("PASS")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
