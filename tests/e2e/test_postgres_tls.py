#!/usr/bin/env python3
"""PostgreSQL over TLS: once the server answers an SSLRequest with `S`, the kernel stops copying
the connection, so encrypted traffic costs no events and is never parsed as PostgreSQL.

A private PostgreSQL 15 with a self-signed certificate; only psql is traced (--comm psql, so the
counts are psql's alone). The same five statements (50,000 rows each) run once with
sslmode=require and once with sslmode=disable. Checked: the TLS session sends a handful of
kernel events (its SSLRequest, the `S`, open and close), the plaintext one tens of times more;
the TLS session reports no operation and no garbage (unparsed segments, desyncs), the plaintext
one its five SELECTs; the TLS session is counted in loupe_postgresql_tls_connections_total (psql's
end: the server is not traced), the plaintext one is not."""
from loupe_e2e import (Agent, fail, metric, metric_or, parse_metrics, require_root, select,
                       time_limit)
from postgres_server import PostgresServer
import subprocess

SQL = "; ".join(["SELECT g FROM generate_series(1, 50000) g"] * 5)
CLIENT = "db_client_operation_duration_seconds"


def snapshot(agent):
    samples = parse_metrics(agent.metrics_text())
    ops = sum(v for _, v in select(samples, CLIENT + "_count", db_system_name="postgresql"))
    garbage = sum(metric_or(samples, f"loupe_postgresql_{n}_total", 0)
                  for n in ("unparsed_segments", "desyncs", "unmatched_responses"))
    tls = metric_or(samples, "loupe_postgresql_tls_connections_total", 0)
    return metric(samples, "loupe_events_total"), ops, garbage, tls


def psql(dsn):
    out = subprocess.run(["psql", "-X", "-q", "-o", "/dev/null", "-d", dsn, "-c", SQL],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail(f"psql failed: {out.stderr[-500:]}")


def main():
    require_root()
    time_limit(90)
    server = PostgresServer(ssl=True)
    agent = Agent("--comm", "psql")
    try:
        e0, ops0, bad0, tls0 = snapshot(agent)
        psql(server.dsn(sslmode="require"))
        agent.settle(1.0)
        e1, ops1, bad1, tls1 = snapshot(agent)
        psql(server.dsn(sslmode="disable"))
        agent.settle(1.0)
        e2, ops2, bad2, tls2 = snapshot(agent)
        tls_events, plain_events = e1 - e0, e2 - e1
        print(f"TLS session: {tls_events:.0f} events, {ops1 - ops0:.0f} operations; plaintext: "
              f"{plain_events:.0f} events, {ops2 - ops1:.0f} operations", flush=True)
        if tls_events > 8:
            fail(f"the TLS session sent {tls_events:.0f} events: the copy did not stop at 'S'")
        if plain_events < 10 * max(tls_events, 1):
            fail(f"plaintext session: only {plain_events:.0f} events (the check proves nothing)")
        if ops1 != ops0:
            fail(f"the TLS session reported {ops1 - ops0:.0f} operations")
        if ops2 - ops1 != 5:
            fail(f"the plaintext session reported {ops2 - ops1:.0f} operations, 5 made")
        # psql's end only (the backend is not traced).
        if tls1 - tls0 != 1 or tls2 != tls1:
            fail(f"loupe_postgresql_tls_connections_total rose by {tls1 - tls0:.0f} for the TLS "
                 f"session (1 expected) and {tls2 - tls1:.0f} for the plaintext one")
        if bad2 != bad0:
            fail(f"unparsed/desynchronised/unmatched counters rose by {bad2 - bad0:.0f}")
        agent.stop()
        print("PASS")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
