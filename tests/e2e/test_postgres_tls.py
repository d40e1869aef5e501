#!/usr/bin/env python3
"""PostgreSQL over TLS. Once the server answers an SSLRequest with `S`, the kernel stops copying
the connection's socket bytes (ciphertext, never parsed as PostgreSQL); the session's plaintext
comes through the OpenSSL uprobes, which libpq (psql) and the postgres backend both call.

A private PostgreSQL 15 with a self-signed certificate; psql and the postgres backends are traced
(--comm psql --comm postgres). The same five statements (50,000 rows each) run once with
sslmode=require and once with sslmode=disable:
- with the TLS hooks (the default): the TLS session reports its five SELECTs on the client side
  and on the server side, as the plaintext session does, and both of its ends count as OpenSSL
  connections and in loupe_postgresql_tls_connections_total (the parser saw the `S`); no garbage
  (unparsed segments, desyncs, unmatched replies).
- with --disable-hooks tls: the TLS session sends a handful of socket events (its SSLRequest, the
  `S`, open and close), the plaintext one tens of times more; the TLS session reports nothing and
  no garbage."""
import subprocess

from loupe_e2e import (Agent, fail, metric, metric_or, parse_metrics, require_root, select,
                       time_limit)
from postgres_server import PostgresServer

SQL = "; ".join(["SELECT g FROM generate_series(1, 50000) g"] * 5)
CLIENT = "db_client_operation_duration_seconds_count"
SERVER = "loupe_db_server_operation_duration_seconds_count"


def snapshot(agent):
    samples = parse_metrics(agent.metrics_text())

    def selects(family):
        return sum(v for _, v in select(samples, family, db_system_name="postgresql",
                                        db_operation_name="SELECT"))
    garbage = sum(metric_or(samples, f"loupe_postgresql_{n}_total", 0)
                  for n in ("unparsed_segments", "desyncs", "unmatched_responses"))
    openssl = sum(v for _, v in select(samples, "loupe_tls_connections_total", library="openssl"))
    return {"events": metric(samples, "loupe_events_total"), "client": selects(CLIENT),
            "server": selects(SERVER), "garbage": garbage, "openssl": openssl,
            "accepted": metric_or(samples, "loupe_postgresql_tls_connections_total", 0)}


def psql(dsn):
    out = subprocess.run(["psql", "-X", "-q", "-o", "/dev/null", "-d", dsn, "-c", SQL],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail(f"psql failed: {out.stderr[-500:]}")


def sessions(agent, server):
    """The counters' deltas of one TLS session, then of one plaintext session."""
    before = snapshot(agent)
    psql(server.dsn(sslmode="require"))
    agent.settle(1.0)
    after_tls = snapshot(agent)
    psql(server.dsn(sslmode="disable"))
    agent.settle(1.0)
    after_plain = snapshot(agent)
    tls = {k: after_tls[k] - before[k] for k in before}
    plain = {k: after_plain[k] - after_tls[k] for k in before}
    print(f"  TLS session: {tls}\n  plaintext session: {plain}", flush=True)
    if after_plain["garbage"] != before["garbage"]:
        fail(f"unparsed/desynchronised/unmatched counters rose by "
             f"{after_plain['garbage'] - before['garbage']:.0f}")
    return tls, plain


def main():
    require_root()
    time_limit(120)
    server = PostgresServer(ssl=True)
    try:
        print("with the TLS hooks:")
        agent = Agent("--comm", "psql", "--comm", "postgres")
        tls, plain = sessions(agent, server)
        agent.stop()
        for side in ("client", "server"):
            if tls[side] != 5 or plain[side] != 5:
                fail(f"{side} side: {tls[side]:.0f} SELECTs over TLS and {plain[side]:.0f} in "
                     "plaintext, 5 made in each")
        if tls["openssl"] != 2 or plain["openssl"] != 0:
            fail(f"OpenSSL connections: {tls['openssl']:.0f} for the TLS session (2 ends), "
                 f"{plain['openssl']:.0f} for the plaintext one")
        if tls["accepted"] != 2 or plain["accepted"] != 0:
            fail(f"loupe_postgresql_tls_connections_total: +{tls['accepted']:.0f} for the TLS "
                 f"session (2 ends), +{plain['accepted']:.0f} for the plaintext one")

        print("with --disable-hooks tls:")
        agent = Agent("--comm", "psql", "--disable-hooks", "tls")
        tls, plain = sessions(agent, server)
        agent.stop()
        if tls["events"] > 8:
            fail(f"the TLS session sent {tls['events']:.0f} events: the copy did not stop at 'S'")
        if plain["events"] < 10 * max(tls["events"], 1):
            fail(f"plaintext session: only {plain['events']:.0f} events (the check proves nothing)")
        if tls["accepted"] != 1:  # psql's end only
            fail(f"loupe_postgresql_tls_connections_total: +{tls['accepted']:.0f}, 1 expected")
        if tls["client"] != 0 or plain["client"] != 5:
            fail(f"{tls['client']:.0f} SELECTs over TLS (none readable), {plain['client']:.0f} in "
                 "plaintext (5 made)")
        print("PASS")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
