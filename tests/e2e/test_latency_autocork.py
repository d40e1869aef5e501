#!/usr/bin/env python3
"""Server latency when the kernel holds a response's last bytes back (TCP autocorking).

loupe times a server's write from the TCP stack's cached clock when the write's bytes all went
out during it (the push refreshed that clock), and reads the clock itself otherwise (write_time in
bpf/socket_capture.bpf.c). Autocorking is the case the second branch exists for. A small write is
held back when earlier segments of the socket still sit in a queue below TCP. The push then
returns before transmitting, so the cached clock keeps the time of the last transmission or ACK.

Here the server's egress goes through a token bucket (tbf) slow enough to hold its segments for
~0.7 s. For each request the server:
- reads the request;
- sleeps 50 ms, then writes 2,800 bytes (the second segment waits in the qdisc);
- sleeps 100 ms, then writes the last 10 bytes (autocorked).
The truth is 150 ms from the first byte read to the last byte written. With the TCP clock alone,
loupe would measure ~50 ms. The test fails if the kernel did not autocork (TcpExtTCPAutoCorking in
the server's namespace), because it would then prove nothing."""
import subprocess

from loupe_e2e import Agent, NetnsPair, Workload, fail, metric_or, net_counter, require_root, require_tools, select

PORT = 8080
REQUESTS = 5
SERVER = r"""
import socket, sys, time
FIRST_WRITE, LAST_WRITE = 2800, 10
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen()
print("ready", flush=True)
conn, _ = srv.accept()
buf = b""
while True:
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            sys.exit(0)
        buf += data
    buf = buf.split(b"\r\n\r\n", 1)[1]
    time.sleep(0.050)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
    body_len = FIRST_WRITE - len(head % 1000) + LAST_WRITE
    head = head % body_len
    response = head + b"x" * body_len
    conn.sendall(response[:FIRST_WRITE])
    time.sleep(0.100)
    conn.sendall(response[FIRST_WRITE:])
"""
CLIENT = r"""
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for _ in range(int(sys.argv[3])):
    conn.sendall(b"GET /autocork HTTP/1.1\r\nHost: test\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += conn.recv(65536)
    head, body = buf.split(b"\r\n\r\n", 1)
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536)
print("done", flush=True)
"""


class VethLink(NetnsPair):
    """Namespaces A (server) and B (client) joined by a veth pair; A's egress through tbf."""

    def __init__(self):
        super().__init__("loupe-ac", 198)
        self.create()
        dev_a, dev_b = f"loupeac{self.x}a", f"loupeac{self.x}b"
        subprocess.run(["ip", "link", "add", dev_a, "netns", self.a, "type", "veth", "peer", "name", dev_b,
                        "netns", self.b], check=True)
        for ns, dev, ip in ((self.a, dev_a, self.ip_a), (self.b, dev_b, self.ip_b)):
            for cmd in (["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev],
                        ["ip", "-n", ns, "link", "set", dev, "up"],
                        ["ip", "-n", ns, "link", "set", "lo", "up"]):
                subprocess.run(cmd, check=True)
        # One full segment passes at once (burst), the next waits ~0.7 s for its tokens.
        subprocess.run(["tc", "-n", self.a, "qdisc", "add", "dev", dev_a, "root", "tbf", "rate", "16kbit",
                        "burst", "1600", "limit", "100000"], check=True)

    def autocorked(self):
        """TcpExtTCPAutoCorking of namespace A."""
        return net_counter("/proc/net/netstat", "TcpExt:", "TCPAutoCorking", self.a)


def main():
    require_root()
    require_tools("ip", "tc")
    link = VethLink()
    agent = Agent("--comm", "loupe_acsrv")
    server = Workload("loupe_acsrv", SERVER, link.ip_a, PORT, netns=link.a)
    if server.readline() != "ready":
        fail("the server did not start")
    agent.settle(1.5)  # a process started after the agent is traced from its next /proc scan (<= 1 s)
    corked_before = link.autocorked()
    client = Workload("loupe_accli", CLIENT, link.ip_a, PORT, REQUESTS, netns=link.b)
    if client.readline(timeout=60) != "done":
        fail("the client did not finish")
    corked = link.autocorked() - corked_before
    agent.settle(1.0)
    samples = agent.metrics()
    agent.stop()
    server.kill()
    link.remove()

    count = metric_or(samples, "http_server_request_duration_seconds_count", 0, http_route="/autocork",
                      http_response_status_code="200")
    rows = select(samples, "loupe_http_server_request_duration_window_seconds", http_route="/autocork",
                  http_response_status_code="200", quantile="0.5", window="1m")
    print(f"autocorked writes: {corked}; requests counted: {count}; p50: "
          f"{rows[0][1] * 1e3 if rows else float('nan'):.2f} ms")
    if corked < REQUESTS:
        fail(f"the kernel autocorked {corked} writes, not one per request: the test proves nothing")
    if count != REQUESTS:
        fail(f"counted {count} requests, the client made {REQUESTS}")
    if len(rows) != 1 or abs(rows[0][1] - 0.150) > 0.150 * 0.05:
        fail(f"p50 {rows} is not within 5 % of 150 ms (with the TCP clock alone it would be ~50 ms)")
    print("latency_autocork: ok")


if __name__ == "__main__":
    main()
