#!/usr/bin/env python3
"""MariaDB over TLS: after the client's SSL request (right after the server's greeting) the kernel
stops copying the connection's socket bytes (ciphertext, never parsed as MySQL); the session's
plaintext comes through the OpenSSL uprobes, which mariadbd and the mariadb client both call.

A private MariaDB 10.11 with a self-signed certificate (openssl req); the server (lp_mariadbd) and
the mariadb command-line client (lp_mariadb) are traced, both sides of each connection. Three TLS
sessions (--ssl; each checks its own Ssl_cipher) run the same 40 statements as three plaintext
sessions (--skip-ssl) run afterwards. Checked:
- the TLS sessions: per verb, both sides equal the Com_* deltas; each is counted in
  loupe_mysql_tls_connections_total and in loupe_tls_connections_total{library="openssl"} once
  per traced end (client and server: 2 x 3); no garbage (unparsed segments, desyncs, unmatched
  responses);
- the plaintext sessions alongside stay exact: per verb, both sides equal the Com_* deltas."""
import shutil
import subprocess
import tempfile
import time

from loupe_e2e import (Agent, fail, metric_or, parse_metrics, promtool_check, require_root,
                       select, self_signed_certificate, time_limit)
from test_mariadb import (CLI_NAME, CLIENT_FAMILY, MARIADB_CLI, SERVER_FAMILY, SERVER_NAME,
                          MariaDB, compare, db_counts, delta, expected_operations)

SESSIONS = 3
STATEMENTS = ["SELECT COUNT(*) FROM sbtest.extra"] * 20 + \
             ["INSERT INTO sbtest.extra (id, v) VALUES (%d, 'x')" % i for i in range(10)] + \
             ["UPDATE sbtest.extra SET v = 'y' WHERE id < 5", "DELETE FROM sbtest.extra"] * 5
GARBAGE = ("loupe_mysql_unparsed_segments_total", "loupe_mysql_desyncs_total",
           "loupe_mysql_unmatched_responses_total")


def snapshot(agent):
    text = agent.metrics_text()
    samples = parse_metrics(text)
    ops = {side: db_counts(samples, family) for side, family in
           (("server", SERVER_FAMILY), ("client", CLIENT_FAMILY))}
    return {
        "text": text,
        "events": metric_or(samples, "loupe_events_total", 0),
        "ops": ops,
        "garbage": {name: metric_or(samples, name, 0) for name in GARBAGE},
        "tls_mysql": metric_or(samples, "loupe_mysql_tls_connections_total", 0),
        "tls_uprobes": sum(v for _, v in select(samples, "loupe_tls_connections_total")),
        "lost": metric_or(samples, "loupe_events_dropped_total", 0, reason="ringbuf_full"),
        "untied": agent.api("/api/v1/agent")[1].get("tls", {}).get("untied_calls", 0),
    }


def session(port, tls):
    """One mariadb client session running STATEMENTS; with TLS, checks that it was encrypted."""
    sql = "; ".join(STATEMENTS) + "; SHOW SESSION STATUS LIKE 'Ssl_cipher'"
    out = subprocess.run([MARIADB_CLI, "--no-defaults", "-h", "127.0.0.1", "-P", str(port),
                          "--protocol=tcp", "-uloupe", "-ppw", "-N", "-B",
                          "--ssl" if tls else "--skip-ssl", "-e", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail(f"mariadb client failed: {out.stderr[-500:]}")
    cipher = out.stdout.strip().splitlines()[-1].split("\t")[-1]
    if tls and not cipher.strip():
        fail(f"the --ssl session was not encrypted (Ssl_cipher empty): {out.stdout[-200:]}")
    if not tls and cipher.strip() not in ("", "Ssl_cipher"):
        fail(f"the --skip-ssl session was encrypted ({cipher})")


def ops_delta(after, before):
    return {side: delta(after["ops"][side], before["ops"][side]) for side in ("server", "client")}


def main():
    require_root()
    time_limit(120)
    server = None
    cert_dir = tempfile.mkdtemp(prefix="loupe-mariadb-tls-")
    try:
        cert, key = self_signed_certificate(cert_dir)
        server = MariaDB(extra=(f"--ssl-cert={cert}", f"--ssl-key={key}"))
        agent = Agent("--comm", ",".join((SERVER_NAME, CLI_NAME)))
        started = time.time()

        s0 = snapshot(agent)
        com0 = server.com()
        for _ in range(SESSIONS):
            session(server.port, tls=True)
        agent.settle(1.0)
        s1 = snapshot(agent)
        com1 = server.com()
        for _ in range(SESSIONS):
            session(server.port, tls=False)
        agent.settle(1.0)
        s2 = snapshot(agent)
        com2 = server.com()

        tls_events, plain_events = s1["events"] - s0["events"], s2["events"] - s1["events"]
        tls_ops, plain_ops = ops_delta(s1, s0), ops_delta(s2, s1)
        print(f"TLS sessions: {tls_events:.0f} events; plaintext: {plain_events:.0f} events",
              flush=True)
        if s2["lost"] != s0["lost"]:
            fail(f"{s2['lost'] - s0['lost']:.0f} events lost to a full ring buffer")

        # The TLS sessions: read through the OpenSSL uprobes (mariadbd and the client both link
        # libssl.so.3), exact on both sides; their ciphertext never parsed (no garbage).
        com_tls = delta(com1, com0)
        if com_tls["Com_select"] < SESSIONS * 20:
            fail(f"the TLS sessions made {com_tls['Com_select']} SELECTs (the check proves "
                 "nothing)")
        expected_tls = expected_operations(com_tls)
        compare("server side over TLS (mariadbd)", expected_tls, dict(tls_ops["server"]))
        compare("client side over TLS (mariadb)", expected_tls, dict(tls_ops["client"]))
        for name in GARBAGE:
            if s2["garbage"][name] != s0["garbage"][name]:
                fail(f"{name} rose by {s2['garbage'][name] - s0['garbage'][name]:.0f}")
        tls_counted = s1["tls_mysql"] - s0["tls_mysql"]
        if tls_counted != 2 * SESSIONS:
            fail(f"loupe_mysql_tls_connections_total rose by {tls_counted:.0f}, expected "
                 f"{2 * SESSIONS} (each TLS session's client and server end)")
        tied = s1["tls_uprobes"] - s0["tls_uprobes"]
        if tied != 2 * SESSIONS:
            fail(f"loupe_tls_connections_total rose by {tied:.0f}, expected {2 * SESSIONS}")
        print(f"TLS: per-verb counts exact on both sides {dict(sorted(expected_tls.items()))}; "
              f"{tls_counted:.0f} ends counted, {tied:.0f} tied to OpenSSL", flush=True)

        # The plaintext sessions: exact on both sides.
        expected = expected_operations(delta(com2, com1))
        if not expected:
            fail("the plaintext sessions made no counted statement")
        compare("server side (mariadbd)", expected,
                {op: n for op, n in plain_ops["server"].items()})
        compare("client side (mariadb)", expected, {op: n for op, n in plain_ops["client"].items()})
        if s2["tls_mysql"] != s1["tls_mysql"]:
            fail("a plaintext session was counted as TLS")
        print(f"plaintext per-verb counts exact on both sides: {dict(sorted(expected.items()))}")
        promtool_check(s2["text"])
        agent.stop()
        print(f"PASS ({time.time() - started:.1f} s with the agent)")
    finally:
        if server:
            server.stop()
        shutil.rmtree(cert_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
