#!/usr/bin/env python3
"""Records real Redis conversations for tests/unit/redis_replay_test.cpp (no agent needed).

Starts redis-server (Debian) on a free loopback port and a recording TCP proxy in front of it,
drives it through the proxy with real clients (python3-redis with pipelines, MULTI/EXEC, WATCH,
SELECT, pub/sub; redis-cli; redis-benchmark -P 1 and -P 16 with random keys; raw sockets for
RESP3, client-side caching pushes and inline commands), and writes to OUT, one record a line:

  seg <conn> <c2s|s2c> <monotonic ns> <hex bytes>   every chunk the proxy received, in order
  close <conn> <monotonic ns>
  cmdstat <name> <calls> <rejected_calls> <failed_calls>   INFO commandstats delta
  errstat <PREFIX> <count>                                   INFO errorstats delta
  keyspace <hits> <misses>     keyspace_hits/misses delta over the GET-only phase
  getonly <conn>               the connections of that phase

Each chunk is logged before it is forwarded, so a reply is always logged after its command.
Usage: redis_conversation.py OUT
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import redis  # python3-redis

LOG_LOCK = threading.Lock()
LOG = []
CONN_IDS = iter(range(1, 1 << 30))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(line):
    with LOG_LOCK:
        LOG.append(line)


class Proxy:
    """One upstream connection per accepted client; both directions pumped and recorded."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.threads = []
        self.conns = []
        self.stopping = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            conn = next(CONN_IDS)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with LOG_LOCK:
                self.conns.append(conn)
            done = threading.Event()
            a = threading.Thread(target=self.pump, args=(conn, "c2s", client, upstream, None))
            b = threading.Thread(target=self.pump, args=(conn, "s2c", upstream, client, done))
            for t in (a, b):
                t.start()
                self.threads.append(t)

    def pump(self, conn, direction, src, dst, done):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            # Logged before forwarding: the reply cannot be logged before its command.
            log(f"seg {conn} {direction} {time.monotonic_ns()} {data.hex()}")
            try:
                dst.sendall(data)
            except OSError:
                break
        if direction == "c2s":
            try:
                dst.shutdown(socket.SHUT_WR)  # let the server finish what it was sent
            except OSError:
                pass
        else:
            log(f"close {conn} {time.monotonic_ns()}")
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def conns_snapshot(self):
        with LOG_LOCK:
            return list(self.conns)

    def drain(self):
        """Waits until every proxied connection has closed."""
        deadline = time.time() + 30
        for t in list(self.threads):
            t.join(max(0.1, deadline - time.time()))
            if t.is_alive():
                raise RuntimeError("proxy connection did not close")


def disconnect(r):
    """Closes a client's sockets now (redis-py 4's close() only returns them to the pool)."""
    r.connection_pool.disconnect()


def info(port, section):
    r = redis.Redis(port=port)
    try:
        return r.info(section)
    finally:
        disconnect(r)


def recv_until(sock, marker, timeout=5):
    sock.settimeout(timeout)
    buf = b""
    while marker not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed before {marker!r}: {buf[-200:]!r}")
        buf += chunk
    return buf


def resp(*words):
    out = b"*%d\r\n" % len(words)
    for w in words:
        w = w if isinstance(w, bytes) else str(w).encode()
        out += b"$%d\r\n%s\r\n" % (len(w), w)
    return out


def python_clients(port):
    r = redis.Redis(port=port)
    other = redis.Redis(port=port)
    r.flushall()
    r.client_setname("loupe-replay")
    r.config_get("maxmemory")
    for i in range(40):
        r.set(f"k:{i}", f"v{i}")
    for i in range(60):
        r.get(f"k:{i}")  # 40 hits, 20 misses
    r.mget([f"k:{i}" for i in range(35, 45)])
    r.hset("h", mapping={"a": "1", "b": "2"})
    r.hget("h", "a")
    r.hget("h", "zz")
    r.hmget("h", ["a", "zz", "b"])
    r.exists("k:1", "k:2", "nope")
    r.object("encoding", "k:1")
    r.lpush("list", "x")
    for _ in range(3):
        try:
            r.get("list")
        except redis.ResponseError:
            pass
    try:
        r.execute_command("NOSUCHCOMMAND", "x")
    except redis.ResponseError:
        pass
    # A pipeline of 50 commands in one write.
    p = r.pipeline(transaction=False)
    for i in range(25):
        p.incr("counter")
        p.get(f"k:{i}")
    p.execute()
    # MULTI/EXEC with an error inside the transaction.
    p = r.pipeline(transaction=True)
    p.set("s", "abc")
    p.incr("s")
    p.get("s")
    p.mget(["s", "nope"])
    p.execute(raise_on_error=False)
    # EXECABORT: a command rejected while queuing.
    p = r.pipeline(transaction=True)
    p.set("t", "1")
    p.execute_command("SET", "only-a-key")
    try:
        p.execute()
    except redis.RedisError:
        pass
    # WATCH failure: EXEC answered nil.
    with r.pipeline() as p:
        p.watch("w")
        other.set("w", "changed")
        p.multi()
        p.incr("w")
        try:
            p.execute()
        except redis.WatchError:
            pass
    # A 1 MB value, written and read in many chunks.
    r.set("big", b"x" * 1_000_000)
    r.get("big")
    # SELECT: a client on database 3.
    r3 = redis.Redis(port=port, db=3)
    r3.set("in3", "x")
    r3.get("in3")
    r3.get("missing")
    disconnect(r3)
    # Pub/sub (RESP2): confirmations and messages.
    ps = r.pubsub()
    ps.subscribe("news", "sport")
    ps.psubscribe("n*")
    while ps.get_message(timeout=0.2):
        pass
    for i in range(5):
        other.publish("news", f"hello {i}")
    got = 0
    deadline = time.time() + 5
    while got < 10 and time.time() < deadline:  # 5 messages + 5 pattern messages
        if ps.get_message(timeout=0.5):
            got += 1
    ps.unsubscribe()
    ps.punsubscribe()
    while ps.get_message(timeout=0.2):
        pass
    ps.close()
    disconnect(r)
    disconnect(other)


def raw_clients(port):
    # RESP3 with client-side caching: invalidation pushes arrive between replies.
    s = socket.create_connection(("127.0.0.1", port))
    t = socket.create_connection(("127.0.0.1", port))
    s.sendall(resp("HELLO", "3"))
    recv_until(s, b"modules")
    s.sendall(resp("CLIENT", "TRACKING", "ON"))
    recv_until(s, b"+OK\r\n")
    s.sendall(resp("GET", "tracked") + resp("SET", "tracked", "1") + resp("GET", "tracked"))
    recv_until(s, b"$1\r\n1\r\n")
    t.sendall(resp("SET", "tracked", "2"))
    recv_until(t, b"+OK\r\n")
    s.sendall(resp("PING"))
    recv_until(s, b"+PONG\r\n")
    s.sendall(resp("HGETALL", "h") + resp("GET", "nope") + resp("SUBSCRIBE", "r3"))
    recv_until(s, b"r3\r\n:1\r\n")
    t.sendall(resp("PUBLISH", "r3", "m"))
    recv_until(t, b":1\r\n")
    recv_until(s, b"$1\r\nm\r\n")
    s.sendall(resp("UNSUBSCRIBE") + resp("GET", "k:1"))
    recv_until(s, b"$2\r\nv1\r\n")
    s.close()
    # Inline commands, as redis-benchmark's PING_INLINE and telnet users send them.
    t.sendall(b"PING\r\nPING\r\nexists k:1 k:2 nope\r\nget k:3\r\n")
    recv_until(t, b"$2\r\nv3\r\n")
    t.close()


def tool_clients(port):
    for args in (["set", "cli", "v"], ["get", "cli"], ["config", "get", "maxmemory"],
                 ["incr", "cli"]):
        subprocess.run(["redis-cli", "-p", str(port)] + args, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    for pipeline in ("1", "16"):
        subprocess.run(["redis-benchmark", "-p", str(port), "-n", "2000", "-c", "3", "-P", pipeline,
                        "-r", "1000", "-t", "set,get", "-q"],
                       check=True, stdout=subprocess.DEVNULL, timeout=120)


def get_only(port, proxy_port):
    """A phase of GETs only, for keyspace_hits/misses."""
    before = info(port, "stats")
    first = set(PROXY.conns_snapshot())
    r = redis.Redis(port=proxy_port)
    for i in range(0, 80, 3):
        r.get(f"k:{i}")
    p = r.pipeline(transaction=False)
    for i in range(0, 80):
        p.get(f"key:{i:012d}")
    p.execute()
    disconnect(r)
    subprocess.run(["redis-benchmark", "-p", str(proxy_port), "-n", "1000", "-c", "2", "-P", "16",
                    "-r", "2000", "-t", "get", "-q"],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    PROXY.drain()
    after = info(port, "stats")
    conns = [c for c in PROXY.conns_snapshot() if c not in first]
    return (after["keyspace_hits"] - before["keyspace_hits"],
            after["keyspace_misses"] - before["keyspace_misses"], conns)


def commandstats(port):
    stats = {}
    for key, v in info(port, "commandstats").items():
        stats[key.removeprefix("cmdstat_")] = (v.get("calls", 0), v.get("rejected_calls", 0),
                                               v.get("failed_calls", 0))
    errors = {}
    for key, v in info(port, "errorstats").items():
        # "count=N": redis-py 4 leaves a single key=value pair unparsed.
        count = v["count"] if isinstance(v, dict) else int(str(v).removeprefix("count="))
        errors[key.removeprefix("errorstat_")] = count
    return stats, errors


PROXY = None


def main():
    global PROXY
    out = sys.argv[1]
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="loupe-redis-")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, "--logfile", os.path.join(workdir, "log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                probe = redis.Redis(port=port)
                probe.ping()
                disconnect(probe)
                break
            except redis.ConnectionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        PROXY = Proxy(port)
        direct = redis.Redis(port=port)
        direct.config_resetstat()
        disconnect(direct)
        stats0, errors0 = commandstats(port)
        python_clients(PROXY.port)
        raw_clients(PROXY.port)
        tool_clients(PROXY.port)
        PROXY.drain()
        hits, misses, get_conns = get_only(port, PROXY.port)
        stats1, errors1 = commandstats(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    with open(out, "w") as f:
        with LOG_LOCK:
            for line in LOG:
                f.write(line + "\n")
        for name, (calls, rejected, failed) in sorted(stats1.items()):
            c0, r0, f0 = stats0.get(name, (0, 0, 0))
            if name == "info" or name == "config|resetstat":
                continue  # sent directly to the server, not through the proxy
            f.write(f"cmdstat {name} {calls - c0} {rejected - r0} {failed - f0}\n")
        for name, count in sorted(errors1.items()):
            f.write(f"errstat {name} {count - errors0.get(name, 0)}\n")
        f.write(f"keyspace {hits} {misses}\n")
        for c in get_conns:
            f.write(f"getonly {c}\n")


if __name__ == "__main__":
    main()
