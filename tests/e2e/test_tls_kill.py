#!/usr/bin/env python3
"""Bad input (issue 24): a process killed in the middle of TLS leaks no state in the kernel.

The agent keeps per-process TLS state in BPF maps: tls_sessions (an OpenSSL SSL* tied to its
connection, forgotten at SSL_free; a Go connection's session, keyed by its socket) and go_calls
(a goroutine inside crypto/tls's Read or Write, forgotten at its RET). A process SIGKILLed inside
those calls never reaches SSL_free or a RET. Checked with bpftool on the agent's own maps:
- OpenSSL (Debian's python3, libssl.so.3): a client with 4 connections blocked in SSL_read (their
  sessions tied) and 4 blocked in the handshake (a server that never answers the ClientHello);
- Go (tests/e2e/tls/gotls.go): a client whose 4 goroutines are blocked in (*Conn).Read;
each has entries while it runs, SIGKILL, then none are left within 8 s (the agent deletes the
entries of processes that ended at its full scan, every 5 s; a Go session goes with its socket)."""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from loupe_e2e import (Agent, Workload, bpftool_json, fail, require_root, require_tools,
                       self_signed_certificate, time_limit)

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"

OPENSSL_CLIENT = r'''
import socket, ssl, sys, threading
tls_port, silent_port = int(sys.argv[1]), int(sys.argv[2])
context = ssl._create_unverified_context()
print("started", flush=True)
sys.stdin.readline()                      # once the agent probes this process's libssl
conns = []
for i in range(4):
    s = context.wrap_socket(socket.create_connection(("127.0.0.1", tls_port)))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conns.append(s)
def stuck_in_handshake():
    context.wrap_socket(socket.create_connection(("127.0.0.1", silent_port)))
for i in range(4):
    threading.Thread(target=stuck_in_handshake, daemon=True).start()
def stuck_in_read(s):
    s.recv(100)
for s in conns:
    threading.Thread(target=stuck_in_read, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
'''


def agent_map(agent, name):
    """The id of the agent's BPF map `name` (among the maps its fds hold: /proc/PID/fdinfo)."""
    fdinfo = f"/proc/{agent.proc.pid}/fdinfo"
    ids = set()
    for fd in os.listdir(fdinfo):
        try:
            with open(f"{fdinfo}/{fd}") as f:
                for line in f:
                    if line.startswith("map_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    for map_id in sorted(ids):
        if bpftool_json("map", "show", "id", str(map_id)).get("name") == name:
            return map_id
    fail(f"the agent has no map {name}")


def entries_of(map_id, tgid):
    """Entries of map `map_id` whose key starts with `tgid` (tls_session_key, go_call_key)."""
    n = 0
    for e in bpftool_json("map", "dump", "id", str(map_id)):
        if "key" in e and isinstance(e["key"], list):
            key = bytes(int(b, 16) for b in e["key"])
            n += int.from_bytes(key[:4], "little") == tgid
        elif e.get("formatted", {}).get("key", {}).get("tgid") == tgid:
            n += 1
    return n


def wait_entries(maps, tgid, want_some, what):
    deadline = time.time() + 8
    while True:
        counts = {name: entries_of(i, tgid) for name, i in maps.items()}
        if (want_some and all(counts.values())) or (not want_some and not any(counts.values())):
            return counts
        if time.time() > deadline:
            fail(f"{what}: map entries of process {tgid}: {counts}")
        time.sleep(0.2)


def tls_server(cert, key):
    """A TLS server in this (untraced) process that reads and never answers; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    def serve():
        while True:
            conn, _ = listener.accept()
            def handshake(conn=conn):
                try:
                    held.append(context.wrap_socket(conn, server_side=True))
                except OSError:
                    pass
            threading.Thread(target=handshake, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def silent_server():
    """A TCP server that accepts and never answers (a TLS handshake never completes); its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    def serve():
        while True:
            held.append(listener.accept()[0])
    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def main():
    require_root()
    require_tools("bpftool", "go")
    time_limit(40)
    work = tempfile.mkdtemp(prefix="loupe-tls-kill-")
    cert, key = self_signed_certificate(work)
    go_binary = f"{work}/gotls"
    env = dict(os.environ, GOCACHE=os.environ.get("GOCACHE", "/tmp/loupe-e2e-gocache"), CGO_ENABLED="0",
               HOME=os.environ.get("HOME", "/root"))
    subprocess.run(["go", "build", "-o", go_binary, os.path.join(HERE, "tls", "gotls.go")], env=env,
                   check=True, capture_output=True, cwd=work)
    tls_port, silent_port = tls_server(cert, key), silent_server()

    agent = Agent("--comm", "killssl,killgo")
    maps = {"tls_sessions": agent_map(agent, "tls_sessions"), "go_calls": agent_map(agent, "go_calls")}

    client = Workload("killssl", OPENSSL_CLIENT, tls_port, silent_port, python=PYTHON)
    if client.readline() != "started":
        fail("the OpenSSL client did not start")
    deadline = time.time() + 10
    while not any(l["library"] == "openssl" and l["uprobes"] and l["processes"]
                  for l in agent.api("/api/v1/agent")[1]["tls"]["libraries"]):
        if time.time() > deadline:
            fail("the OpenSSL client's libssl was not probed within 10 s")
        time.sleep(0.2)
    client.send("go")
    if client.readline() != "ready":
        fail("the OpenSSL client did not connect")
    before = wait_entries({"tls_sessions": maps["tls_sessions"]}, client.pid, True, "OpenSSL, running")
    pid = client.pid
    client.kill()
    after = wait_entries({"tls_sessions": maps["tls_sessions"]}, pid, False, "OpenSSL, 8 s after SIGKILL")
    print(f"OpenSSL: {before} while blocked in SSL_read and the handshake; {after} after SIGKILL")

    link = os.path.join(work, "killgo")
    os.symlink(go_binary, link)
    go = subprocess.Popen([link, "client", str(tls_port), "4", "1", "0"], stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Probed at the agent's scan of new processes (within a second), before its requests go.
    deadline = time.time() + 10
    while not any(l["library"] == "go" and l["uprobes"] for l in agent.api("/api/v1/agent")[1]["tls"]["libraries"]):
        if time.time() > deadline:
            fail("the Go client was not probed within 10 s")
        time.sleep(0.2)
    go.stdin.write(b"go\n")
    go.stdin.flush()
    before = wait_entries(maps, go.pid, True, "Go, blocked in Read")
    go.kill()
    go.wait()
    after = wait_entries(maps, go.pid, False, "Go, 8 s after SIGKILL")
    print(f"Go: {before} while blocked in (*Conn).Read; {after} after SIGKILL")
    agent.stop()
    shutil.rmtree(work, ignore_errors=True)
    print("tls kill: ok")


if __name__ == "__main__":
    main()
