#!/usr/bin/env python3
"""Redis over TLS, read through the OpenSSL uprobes: redis-server, redis-benchmark and redis-cli
all link Debian's libssl, and loupe reads their plaintext from SSL_read/SSL_write.

A private redis-server serving TLS (self-signed certificate) beside its plaintext port, which only
the oracle's INFO questions use. Clients over TLS, started after the agent: redis-benchmark -P 1
and -P 16, and redis-cli with a WRONGTYPE error. Checked:
- per command, the server side's and the client side's db operations equal INFO commandstats'
  deltas exactly, as for plaintext (test_redis.py);
- every TLS connection counts as OpenSSL at both of its ends: 2 x the connections redis-server
  accepted over TLS;
- nothing is unparsed or desynchronised (no ciphertext parsed as RESP)."""
import subprocess

from loupe_e2e import Agent, fail, metric_or, parse_metrics, require_root, select, time_limit
from test_redis import RedisServer, compare, db_counts, delta

GARBAGE = ("unparsed_segments", "desyncs", "unmatched_responses")


def openssl_connections(samples):
    return sum(v for _, v in select(samples, "loupe_tls_connections_total", library="openssl"))


def main():
    require_root()
    time_limit(120)
    agent = Agent()
    server = RedisServer(tls=True)
    try:
        tls = ["--tls", "--cacert", server.certificate, "-p", str(server.tls_port)]
        before = server.commandstats()
        connections_before = int(server.info("stats")["total_connections_received"])
        metrics_before = agent.metrics()
        for pipeline in ("1", "16"):
            subprocess.run(["redis-benchmark", *tls, "-t", "get,set", "-n", "3000", "-P", pipeline,
                            "-r", "1000", "-c", "4", "-q"], check=True, capture_output=True,
                           timeout=60)
        subprocess.run(["redis-cli", *tls, "SET", "tls:str", "v"], check=True, capture_output=True,
                       timeout=30)
        subprocess.run(["redis-cli", *tls, "LPUSH", "tls:str", "x"], capture_output=True,
                       timeout=30)  # WRONGTYPE
        agent.settle(1.0)
        expected = delta(server.commandstats(), before)
        # This INFO's connection and commandstats' just before it were plaintext, not TLS.
        tls_connections = int(server.info("stats")["total_connections_received"]) - \
            connections_before - 2
        expected.pop("INFO", None)
        samples = agent.metrics()
        family = "loupe_db_server_operation_duration_seconds"
        compare("server side over TLS", expected,
                delta(db_counts(samples, family, service_name="redis-server"),
                      db_counts(metrics_before, family, service_name="redis-server")))
        client = delta(db_counts(samples, "db_client_operation_duration_seconds"),
                       db_counts(metrics_before, "db_client_operation_duration_seconds"))
        client.pop("INFO", None)
        compare("client side over TLS", expected, client)
        print(f"per-command counts over TLS exact on both sides: {dict(expected)}", flush=True)

        ends = openssl_connections(samples) - openssl_connections(metrics_before)
        if ends != 2 * tls_connections:
            fail(f"{ends:.0f} connection ends counted as OpenSSL, 2 x {tls_connections} made")
        garbage = {n: metric_or(samples, f"loupe_redis_{n}_total", 0) -
                   metric_or(metrics_before, f"loupe_redis_{n}_total", 0) for n in GARBAGE}
        if any(garbage.values()):
            fail(f"garbage counted: {garbage}")
        print(f"{tls_connections} TLS connections, {ends:.0f} OpenSSL ends; no garbage")
        if agent.proc.poll() is not None:
            fail("the agent died:\n" + agent.logs())
        print("PASS")
    finally:
        server.stop()
        agent.stop()


if __name__ == "__main__":
    main()
