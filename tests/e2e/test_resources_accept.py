#!/usr/bin/env python3
"""Accepted TCP connections are counted with no accept() hook: at the first read or write of the
process that accepted them, or at its close() or shutdown() when it never reads or writes.

On loopback, loupe_acceptsrv accepts six connections from loupe_acceptcli:
- three it reads to EOF (counted at the first read);
- one it closes at once, the client having sent nothing (counted in close(): FIN_WAIT1);
- one it closes without reading what the client sent (counted in close(), which resets it);
- one the client closed before the server accepted it (counted in close(): LAST_ACK).
Checked: connections accepted{srv} == 6, closed{srv} == 6, opened{srv} == 0; opened{cli} == 6,
closed{cli} == 6, accepted{cli} == 0; resets sent{srv} == 1 and received{cli} == 1 (the unread
data); no active connections left for either."""
from loupe_e2e import Agent, Workload, fail, metric, metric_or, require_root, time_limit

SERVER = r"""
import socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print(listener.getsockname()[1], flush=True)
for _ in range(3):
    c, _ = listener.accept()
    while c.recv(65536):
        pass
    c.close()
c, _ = listener.accept()  # a probe: nothing sent, closed at once
c.close()
c, _ = listener.accept()  # data it never reads: close() resets the connection
time.sleep(0.2)
c.close()
sys.stdin.readline()      # the client closed this one before it was accepted
c, _ = listener.accept()
c.close()
print("done", flush=True)
sys.stdin.readline()
"""

CLIENT = r"""
import socket, sys
port = int(sys.argv[1])
def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=10)
for _ in range(3):
    s = connect()
    s.sendall(b"hello")
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
s = connect()
s.recv(1)  # the server's FIN
s.close()
s = connect()
s.sendall(b"never read")
try:
    s.recv(1)
except ConnectionResetError:
    pass
s.close()
connect().close()
print("done", flush=True)
sys.stdin.readline()
"""

CONNECTIONS = 6


def main():
    require_root()
    time_limit(60)
    agent = Agent()
    workloads = []
    try:
        server = Workload("loupe_acceptsrv", SERVER)
        workloads.append(server)
        port = int(server.readline())
        client = Workload("loupe_acceptcli", CLIENT, port)
        workloads.append(client)
        if client.readline(timeout=20) != "done":
            fail("the client did not finish")
        server.send("go")
        if server.readline(timeout=20) != "done":
            fail("the server did not finish")
        agent.settle(2.5)
        after = agent.metrics()
    finally:
        for w in workloads:
            w.kill()
    agent.stop()

    def conns(service, event):
        return metric_or(after, "loupe_process_tcp_connections_total", 0, service_name=service, event=event)

    def resets(service, direction):
        return metric_or(after, "loupe_process_tcp_resets_total", 0, service_name=service, direction=direction)

    expected = {("loupe_acceptsrv", "accepted"): CONNECTIONS, ("loupe_acceptsrv", "closed"): CONNECTIONS,
                ("loupe_acceptsrv", "opened"): 0, ("loupe_acceptcli", "opened"): CONNECTIONS,
                ("loupe_acceptcli", "closed"): CONNECTIONS, ("loupe_acceptcli", "accepted"): 0}
    got = {key: conns(*key) for key in expected}
    got_resets = {"sent by the server": resets("loupe_acceptsrv", "sent"),
                  "received by the client": resets("loupe_acceptcli", "received")}
    active = {s: metric_or(after, "loupe_process_tcp_active_connections", 0, service_name=s)
              for s in ("loupe_acceptsrv", "loupe_acceptcli")}
    print("connections: " + ", ".join(f"{s[6:]} {e} {got[(s, e)]:g}" for s, e in expected) +
          f"; resets {got_resets}; active {active}")
    wrong = [f"{s} {e}: {got[(s, e)]:g}, expected {n}" for (s, e), n in expected.items() if got[(s, e)] != n]
    if wrong:
        fail("loupe_process_tcp_connections_total: " + "; ".join(wrong))
    if any(n != 1 for n in got_resets.values()):
        fail(f"loupe_process_tcp_resets_total: {got_resets}, one connection was reset")
    if any(active.values()):
        fail(f"loupe_process_tcp_active_connections after all closed: {active}")
    metric(after, "loupe_process_tcp_connections_total", service_name="loupe_acceptsrv")  # the series exist
    print("resources accept: ok")


if __name__ == "__main__":
    main()
