#!/usr/bin/env python3
"""TCP resource metrics over a lossy, slow link between two network namespaces of our own.

This kernel has no netem (CONFIG_NET_SCH_NETEM is off), so the link is made in user space: a TUN
device in each namespace, and a "wire" process (loupe_wire) that moves IP packets between them,
dropping 5 % of them at random and delaying the rest by 20 ms, in each direction (RTT ~40 ms).

loupe_tcpsrv (namespace A) accepts 5 connections and reads each to EOF; loupe_tcpcli (namespace B)
opens 5 connections, sends 2 MB on each, holds them open, then closes them; loupe_tcprst (B)
connects 3 times to a closed port. Checked:
- connections: opened{cli} == 5, accepted{srv} == 5, closed == 5 for each, failed == 0 for both;
  failed{rst} == 3 and resets received{rst} == 3; active connections 5 each while held open, 0
  after; connection durations: 5 each, all longer than the time they were held open, and the
  client's _sum within 5 % of the lifetimes it measured itself.
- bytes: process_network_io_bytes_total transmit{cli} and receive{srv} = 10 MB (1 %).
- retransmits: loupe_system_tcp_retransmits_total grew by within 10 % of the TcpRetransSegs deltas
  of the namespaces (/proc/net/snmp); loupe_process_tcp_retransmits_total{cli} > 0, and cli + rst
  within 10 % of namespace B's delta (every TCP socket of B is theirs).
- RTT: the median of loupe_process_tcp_rtt_seconds{cli} is in the bucket (32.768 ms, 65.536 ms]
  (and the server's too, if it has samples), and its mean (_sum/_count) is at least 40 ms.
The whole test is bounded (60 s) and the namespaces are always deleted."""
import os
import subprocess
import time

from loupe_e2e import Agent, NetnsPair, Workload, fail, histogram, metric, metric_or, net_counter, quantile_bucket, \
    require_root, require_tools, time_limit

CONNECTIONS = 5
PAYLOAD = 2_000_000
PORT, CLOSED_PORT = 5001, 5002
REFUSED = 3

WIRE = r"""
import collections, fcntl, os, random, select, struct, sys, time
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454ca, 0x0001, 0x1000
def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd
a, b = tun(sys.argv[1]), tun(sys.argv[2])
delay, loss = float(sys.argv[3]), float(sys.argv[4])
print("ready", flush=True)
peer = {a: b, b: a}
queues = {a: collections.deque(), b: collections.deque()}  # (due, packet) to write to the fd
rng = random.Random()
while True:
    now = time.monotonic()
    for fd, q in queues.items():
        while q and q[0][0] <= now:
            try:
                os.write(fd, q.popleft()[1])
            except OSError:
                pass  # the device is full (EAGAIN) or not up yet (EIO): a drop, as on a real wire
    due = [q[0][0] for q in queues.values() if q]
    ready, _, _ = select.select([a, b], [], [], max(0.0, min(due) - time.monotonic()) if due else 1.0)
    now = time.monotonic()
    for fd in ready:
        while True:
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                sys.exit(0)  # the namespace and its device are gone
            if rng.random() >= loss:
                queues[peer[fd]].append((now + delay, packet))
"""

SERVER = r"""
import socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((host, port))
listener.listen(16)
print("listening", flush=True)
got = [0] * n
def serve(i, conn):
    while True:
        data = conn.recv(65536)
        if not data:
            break
        got[i] += len(data)
    conn.close()
threads = []
for i in range(n):
    conn, _ = listener.accept()
    threads.append(threading.Thread(target=serve, args=(i, conn)))
    threads[-1].start()
for t in threads:
    t.join()
print("received", sum(got), flush=True)
sys.stdin.readline()
"""

CLIENT = r"""
import select, socket, sys, time
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
payload = b"x" * size
conns, established = [], []
for _ in range(n):
    conns.append(socket.create_connection((host, port), timeout=30))
    established.append(time.monotonic())
for c in conns:
    c.sendall(payload)
print("sent", flush=True)
sys.stdin.readline()
for c in conns:
    c.shutdown(socket.SHUT_WR)
# Each connection's end is timed when its EOF arrives (the server's FIN: the socket left
# ESTABLISHED's family for good), all watched at once: reading them one after the other would add
# one connection's lost FIN (a retransmit timeout of seconds) to the lifetimes of the next ones.
lifetime = 0.0
waiting = dict(zip(conns, established))
while waiting:
    ready, _, _ = select.select(list(waiting), [], [], 30)
    if not ready:
        sys.exit("no EOF in 30 s")
    for c in ready:
        if not c.recv(65536):
            lifetime += time.monotonic() - waiting.pop(c)
            c.close()
print("closed", lifetime, flush=True)
"""

REFUSER = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
refused = 0
for _ in range(n):
    try:
        socket.create_connection((host, port), timeout=30).close()
    except ConnectionRefusedError:
        refused += 1
print("refused", refused, flush=True)
"""


def netns(ns, *cmd, **kwargs):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True, text=True, **kwargs)


def retrans_segs(ns=None):
    """TcpRetransSegs of a network namespace (None: ours) from /proc/net/snmp."""
    return net_counter("/proc/net/snmp", "Tcp:", "RetransSegs", ns)


def busy_sockets(ns):
    """TCP sockets of a namespace that are neither listening nor in TIME-WAIT (closed for good)."""
    out = netns(ns, "ss", "-tanH").stdout
    return [line for line in out.splitlines() if line and not line.startswith(("LISTEN", "TIME-WAIT"))]


class Link(NetnsPair):
    """Namespaces A and B joined by two TUN devices and the lossy, slow wire between them."""

    def __init__(self, delay=0.020, loss=0.05):
        self.wire = None
        super().__init__("loupe-tcp", 199)
        dev_a, dev_b = f"loupetun{self.x}a", f"loupetun{self.x}b"
        self.wire = Workload("loupe_wire", WIRE, dev_a, dev_b, delay, loss)
        if self.wire.readline() != "ready":
            fail("the wire did not create its devices")
        self.create()
        for ns, dev, ip in ((self.a, dev_a, self.ip_a), (self.b, dev_b, self.ip_b)):
            for cmd in (["ip", "link", "set", dev, "netns", ns],
                        ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev],
                        ["ip", "-n", ns, "link", "set", dev, "up"],
                        ["ip", "-n", ns, "link", "set", "lo", "up"]):
                subprocess.run(cmd, check=True)

    def remove(self):
        super().remove()
        if self.wire:
            self.wire.kill()


def main():
    require_root()
    require_tools("ip", "ss")
    if not os.path.exists("/dev/net/tun"):
        fail("no /dev/net/tun: the test link needs TUN devices")
    time_limit(60)
    agent = Agent()
    link = None
    workloads = []
    try:
        link = Link()
        server = Workload("loupe_tcpsrv", SERVER, link.ip_a, PORT, CONNECTIONS, netns=link.a)
        workloads.append(server)
        if server.readline() != "listening":
            fail("the server did not listen")
        agent.settle(1.0)
        before = agent.metrics()
        system_before = metric(before, "loupe_system_tcp_retransmits_total")
        snmp_before = {ns: retrans_segs(ns) for ns in (link.a, link.b, None)}
        started = time.monotonic()

        client = Workload("loupe_tcpcli", CLIENT, link.ip_a, PORT, CONNECTIONS, PAYLOAD, netns=link.b)
        workloads.append(client)
        if client.readline(timeout=40) != "sent":
            fail("the client did not send its data")
        sent_at = time.monotonic()
        # Held open: the active-connection gauges see them.
        agent.settle(2.5)
        held = agent.metrics()
        active_cli = metric(held, "loupe_process_tcp_active_connections", service_name="loupe_tcpcli")
        active_srv = metric(held, "loupe_process_tcp_active_connections", service_name="loupe_tcpsrv")
        held_for = time.monotonic() - sent_at
        client.send("close")
        closed = client.readline(timeout=40).split()
        if closed[0] != "closed":
            fail("the client did not close its connections")
        lifetimes = float(closed[1])  # sum over its connections, established -> FIN received
        received = server.readline(timeout=40)
        if received != f"received {CONNECTIONS * PAYLOAD}":
            fail(f"the server got {received!r}, expected {CONNECTIONS * PAYLOAD} bytes")
        client.reap()
        deadline = time.time() + 15
        while busy_sockets(link.a) or busy_sockets(link.b):
            if time.time() > deadline:
                fail(f"connections still closing after 15 s: {busy_sockets(link.a)} {busy_sockets(link.b)}")
            time.sleep(0.1)
        transfer = time.monotonic() - started

        refuser = Workload("loupe_tcprst", REFUSER, link.ip_a, CLOSED_PORT, REFUSED, netns=link.b)
        workloads.append(refuser)
        if refuser.readline(timeout=40) != f"refused {REFUSED}":
            fail(f"loupe_tcprst was not refused {REFUSED} times")
        refuser.reap()

        agent.settle(2.5)
        after = agent.metrics()
        snmp_after = {ns: retrans_segs(ns) for ns in (link.a, link.b, None)}
    finally:
        for w in workloads:
            w.kill()
        if link:
            link.remove()

    snmp = {ns: snmp_after[ns] - snmp_before[ns] for ns in snmp_before}
    oracle = sum(snmp.values())
    system = metric(after, "loupe_system_tcp_retransmits_total") - system_before
    print(f"transfer of {CONNECTIONS} x {PAYLOAD} bytes took {transfer:.1f} s (held open {held_for:.1f} s); "
          f"TcpRetransSegs deltas: A {snmp[link.a]}, B {snmp[link.b]}, root {snmp[None]}; agent system {system:g}")

    def conns(service, event):
        return metric_or(after, "loupe_process_tcp_connections_total", 0, service_name=service, event=event)

    # Connections.
    metric(after, "loupe_process_tcp_connections_total", service_name="loupe_tcpcli")  # the series exist
    metric(after, "loupe_process_tcp_connections_total", service_name="loupe_tcpsrv")
    expected = {("loupe_tcpcli", "opened"): CONNECTIONS, ("loupe_tcpcli", "accepted"): 0,
                ("loupe_tcpcli", "closed"): CONNECTIONS, ("loupe_tcpcli", "failed"): 0,
                ("loupe_tcpsrv", "opened"): 0, ("loupe_tcpsrv", "accepted"): CONNECTIONS,
                ("loupe_tcpsrv", "closed"): CONNECTIONS, ("loupe_tcpsrv", "failed"): 0,
                ("loupe_tcprst", "opened"): 0, ("loupe_tcprst", "failed"): REFUSED}
    got = {key: conns(*key) for key in expected}
    print("connections: " + ", ".join(f"{s[6:]} {e} {got[(s, e)]:g}" for s, e in expected))
    wrong = [f"{s} {e}: {got[(s, e)]:g}, expected {n}" for (s, e), n in expected.items() if got[(s, e)] != n]
    if wrong:
        fail("loupe_process_tcp_connections_total: " + "; ".join(wrong))

    resets = metric(after, "loupe_process_tcp_resets_total", service_name="loupe_tcprst", direction="received")
    clean_resets = {s: metric_or(after, "loupe_process_tcp_resets_total", 0, service_name=s)
                    for s in ("loupe_tcpcli", "loupe_tcpsrv")}
    print(f"resets: loupe_tcprst received {resets:g}; clean connections: {clean_resets}")
    if resets != REFUSED:
        fail(f"loupe_process_tcp_resets_total{{loupe_tcprst,received}} = {resets:g}, {REFUSED} connects were refused")
    if any(clean_resets.values()):
        fail(f"resets counted for connections that closed cleanly: {clean_resets}")

    active_after = {s: metric_or(after, "loupe_process_tcp_active_connections", 0, service_name=s)
                    for s in ("loupe_tcpcli", "loupe_tcpsrv")}
    print(f"active connections: held {active_cli:g} / {active_srv:g}, after {active_after}")
    if active_cli != CONNECTIONS or active_srv != CONNECTIONS:
        fail(f"loupe_process_tcp_active_connections while {CONNECTIONS} were open: client {active_cli:g}, "
             f"server {active_srv:g}")
    if any(active_after.values()):
        fail(f"loupe_process_tcp_active_connections after all closed: {active_after}")

    for service in ("loupe_tcpcli", "loupe_tcpsrv"):
        buckets, count, total = histogram(after, "loupe_process_tcp_connection_duration_seconds", service_name=service)
        shorter = max((c for le, c in buckets if le < held_for), default=0)
        print(f"{service} connection durations: {count:g}, sum {total:.2f} s, {shorter:g} in buckets below "
              f"{held_for:.2f} s")
        if count != CONNECTIONS:
            fail(f"loupe_process_tcp_connection_duration_seconds_count{{{service}}} = {count:g}, "
                 f"{CONNECTIONS} connections closed")
        if shorter or total < CONNECTIONS * held_for:
            fail(f"loupe_process_tcp_connection_duration_seconds{{{service}}}: {shorter:g} connections shorter than "
                 f"{held_for:.2f} s, sum {total:.2f} s; every connection was held open at least that long")
        # _sum is the sum of the observations: the client timed its own connections.
        if service == "loupe_tcpcli" and abs(total - lifetimes) > 0.05 * lifetimes:
            fail(f"loupe_process_tcp_connection_duration_seconds_sum{{loupe_tcpcli}} = {total:.3f} s, the client "
                 f"timed its {CONNECTIONS} connections (established -> closed) at {lifetimes:.3f} s in all")

    # Bytes through the sockets.
    tx = metric(after, "process_network_io_bytes_total", service_name="loupe_tcpcli", network_io_direction="transmit")
    rx = metric(after, "process_network_io_bytes_total", service_name="loupe_tcpsrv", network_io_direction="receive")
    print(f"socket bytes: client transmitted {tx:.0f}, server received {rx:.0f} (sent {CONNECTIONS * PAYLOAD})")
    for what, value in (("transmit{loupe_tcpcli}", tx), ("receive{loupe_tcpsrv}", rx)):
        if not CONNECTIONS * PAYLOAD <= value <= 1.01 * CONNECTIONS * PAYLOAD:
            fail(f"process_network_io_bytes_total {what} = {value:.0f}, {CONNECTIONS * PAYLOAD} bytes went through")

    # Retransmits.
    cli = metric(after, "loupe_process_tcp_retransmits_total", service_name="loupe_tcpcli")
    rst = metric_or(after, "loupe_process_tcp_retransmits_total", 0, service_name="loupe_tcprst")
    print(f"retransmits: agent system {system:g} vs /proc/net/snmp {oracle}; loupe_tcpcli {cli:g} + loupe_tcprst "
          f"{rst:g} vs namespace B {snmp[link.b]}")
    if oracle <= 0:
        fail("no retransmits happened: the lossy link did not work")
    if not 0 < system or abs(system - oracle) > 0.1 * oracle:
        fail(f"loupe_system_tcp_retransmits_total grew by {system:g}, TcpRetransSegs by {oracle} "
             f"(A {snmp[link.a]}, B {snmp[link.b]}, root {snmp[None]})")
    if not cli > 0 or abs(cli + rst - snmp[link.b]) > 0.1 * snmp[link.b]:
        fail(f"loupe_process_tcp_retransmits_total: loupe_tcpcli {cli:g} + loupe_tcprst {rst:g}, "
             f"namespace B retransmitted {snmp[link.b]} segments")

    # RTT: 2 x 20 ms of delay.
    for service, required in (("loupe_tcpcli", True), ("loupe_tcpsrv", False)):
        if not required and not metric_or(after, "loupe_process_tcp_rtt_seconds_count", 0, service_name=service):
            print(f"{service}: no RTT samples")
            continue
        buckets, count, total = histogram(after, "loupe_process_tcp_rtt_seconds", service_name=service)
        lower, upper = quantile_bucket(buckets, 0.5)
        print(f"{service} RTT: {count:g} samples, mean {total / count * 1e3:.1f} ms, median in ({lower}, {upper}]")
        # Every RTT sample on this link is at least 2 x 20 ms, so is every smoothed RTT, and so is their mean.
        if total / count < 0.99 * 2 * 0.020:
            fail(f"loupe_process_tcp_rtt_seconds{{{service}}}: mean {total / count * 1e3:.2f} ms < the link's 40 ms")
        if (lower, upper) != (0.032768, 0.065536):
            fail(f"loupe_process_tcp_rtt_seconds{{{service}}}: median in ({lower}, {upper}] s, expected "
                 "(0.032768, 0.065536] for a 40 ms RTT")

    agent.stop()
    print(f"resources tcp: ok ({CONNECTIONS} connections each way, {system:g} retransmits vs {oracle} in "
          f"/proc/net/snmp, client {cli:g}, RTT median ~40 ms)")


if __name__ == "__main__":
    main()
