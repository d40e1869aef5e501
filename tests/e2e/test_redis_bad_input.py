#!/usr/bin/env python3
"""Redis traffic that is broken, huge, cut short or older than the agent: nothing crashes, memory
stays bounded, and the well-formed traffic beside it is still counted exactly.

- a connection opened (and used) before the agent started: its 50 PINGs after the start counted;
- RESP garbage on its own connection (redis-server answers an error and closes): counted as
  nothing, not as operations;
- a 100 MB bulk string SET, then GETs: the SET counted once, the GETs exactly, agent RSS bounded;
- a client killed in the middle of a 1,000-command pipeline;
- meanwhile redis-benchmark on its own connections: per command equal to INFO commandstats."""
import os
import signal
import socket
import subprocess
import sys
import time

from loupe_e2e import (Agent, fail, proc_status_bytes, parse_metrics, promtool_check, require_root,
                       select, time_limit)
from test_redis import RedisServer, compare, db_counts, delta

SERVER_FAMILY = "loupe_db_server_operation_duration_seconds"


def resp(*words):
    out = b"*%d\r\n" % len(words)
    for w in words:
        w = w if isinstance(w, bytes) else str(w).encode()
        out += b"$%d\r\n%s\r\n" % (len(w), w)
    return out


def read_reply_line(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def main():
    require_root()
    time_limit(150)
    server = RedisServer()
    try:
        port = server.port
        # A connection the agent has never seen open: used before the agent starts.
        early = socket.create_connection(("127.0.0.1", port))
        for _ in range(5):
            early.sendall(resp("PING"))
            read_reply_line(early)
        agent = Agent()
        before = server.commandstats()
        before_metrics = agent.metrics()

        bench = subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "get,set", "-n", "20000",
                                  "-P", "4", "-c", "2", "-q"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            early.sendall(resp("PING"))
            if read_reply_line(early) != b"+PONG\r\n":
                fail("PING on the early connection got no PONG")

        # Garbage: redis-server answers a protocol error and closes the connection.
        with socket.create_connection(("127.0.0.1", port)) as junk:
            junk.sendall(b"*3\r\n$3\r\nSET\r\n$-7\r\n\x00\xff\xfe garbage \r\n" + os.urandom(2000))
            junk.settimeout(5)
            try:
                while junk.recv(65536):
                    pass
            except OSError:
                pass

        # 100 MB in one bulk string, then three GETs of it.
        big = 100 * 1024 * 1024
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nbig!\r\n$%d\r\n" % big)
            chunk = b"x" * (1 << 20)
            for _ in range(big // len(chunk)):
                s.sendall(chunk)
            s.sendall(b"\r\n")
            if read_reply_line(s) != b"+OK\r\n":
                fail("the 100 MB SET was not answered +OK")
            for _ in range(3):
                s.sendall(resp("GET", "big!"))
                want = big + len(b"$%d\r\n\r\n" % big)
                got = 0
                while got < want:
                    got += len(s.recv(1 << 20))

        # A client killed mid-pipeline: 1,000 INCRs written, killed before it reads the replies.
        killed = subprocess.Popen([sys.executable, "-c", f"""
import socket, time
s = socket.create_connection(("127.0.0.1", {port}))
s.sendall(b"".join(b"*2\\r\\n$4\\r\\nINCR\\r\\n$4\\r\\nkill\\r\\n" for _ in range(1000)))
print("sent", flush=True)
time.sleep(30)
"""], stdout=subprocess.PIPE)
        killed.stdout.readline()
        time.sleep(0.2)
        killed.send_signal(signal.SIGKILL)
        killed.wait()

        if bench.wait(timeout=60) != 0:
            fail("redis-benchmark failed")
        agent.settle(1.5)
        expected = delta(server.commandstats(), before)
        expected.pop("INFO", None)
        samples = parse_metrics(agent.metrics_text())
        got = delta(db_counts(samples, SERVER_FAMILY, service_name="redis-server"),
                    db_counts(before_metrics, SERVER_FAMILY, service_name="redis-server"))
        got.pop("INFO", None)
        compare("server side (redis-server)", expected, got)
        if expected.get("PING", 0) != 50 or expected.get("INCR", 0) != 1000:
            fail(f"the oracle saw PING {expected.get('PING')} and INCR {expected.get('INCR')}")
        rss = proc_status_bytes(agent.proc.pid, "VmRSS")
        if rss > 128 << 20:
            fail(f"agent RSS {rss / 2**20:.1f} MiB after a 100 MB value")
        promtool_check(agent.metrics_text())
        print(f"exact per command after garbage, 100 MB values, a killed pipeline and an early "
              f"connection: {dict(expected)}; agent RSS {rss / 2**20:.1f} MiB", flush=True)
        early.close()
        agent.stop()
        print("PASS")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
