#!/usr/bin/env python3
"""SIGUSR1 detaches the agent's kernel hooks and SIGUSR2 attaches them again: requests served
meanwhile are not seen, every other one is counted exactly (nginx's access log is the oracle),
a keep-alive connection carries on after the pause, one closed during the pause is still seen
to end (the TCP state hooks stay), and the kernel's own link list (bpftool) agrees with what the
agent reports."""
import http.client
import subprocess

from loupe_e2e import Agent, Nginx, bpftool_json, fail, require_root, require_tools, select, server_counts


def curl(port, n):
    for _ in range(n):
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/ok"], check=True)


def keep_alive(conn, n):
    for _ in range(n):
        conn.request("GET", "/users/7")
        conn.getresponse().read()


def http_links():
    """Links the kernel holds for the socket capture's read and write programs."""
    ids = {p["id"] for p in bpftool_json("prog", "show") if p.get("name", "") in ("socket_recv", "socket_send")}
    links = bpftool_json("link", "show")
    return sum(1 for link in links if link.get("prog_id") in ids)


def main():
    require_root()
    require_tools("curl", "bpftool")
    nginx = Nginx(workers=1)
    agent = Agent("--comm", "nginx")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", nginx.port)
        closed_in_pause = http.client.HTTPConnection("127.0.0.1", nginx.port)
        curl(nginx.port, 5)
        keep_alive(conn, 2)
        keep_alive(closed_in_pause, 1)
        if http_links() != 2:
            fail(f"before the pause the kernel holds {http_links()} links of the HTTP programs, not 2")

        body = agent.set_hooks_paused(True)
        if (body["hooks_attached"] != ["inet_sock_set_state"] or
                sorted(body["resource_hooks_attached"]) != ["inet_sock_set_state", "sched_process_exit"]):
            fail(f"paused, hooks still attached: {body['hooks_attached']} {body['resource_hooks_attached']}")
        if http_links() != 0:
            fail(f"paused, the kernel still holds {http_links()} links of the HTTP programs")
        if select(agent.metrics(), "loupe_hooks_paused")[0][1] != 1:
            fail("loupe_hooks_paused is not 1 while paused")
        curl(nginx.port, 7)
        keep_alive(conn, 3)
        closed_in_pause.close()

        body = agent.set_hooks_paused(False)
        if "sock_recv_length" not in body["hooks_attached"] or "sched_switch" not in body["resource_hooks_attached"]:
            fail(f"resumed, hooks not attached again: {body['hooks_attached']} {body['resource_hooks_attached']}")
        if http_links() != 2:
            fail(f"resumed, the kernel holds {http_links()} links of the HTTP programs, not 2")
        keep_alive(conn, 2)
        agent.settle(1.5)
        # Before any new connection could reuse its fd (which would end it too): the connection
        # closed during the pause has ended, in the HTTP tracker and in the resource accounting.
        samples = agent.metrics()
        tracked = select(samples, "loupe_connections_tracked")[0][1]
        active = select(samples, "loupe_process_tcp_active_connections", service_name="nginx")
        print(f"after the pause: {tracked:.0f} connections tracked, nginx active {active}")
        if tracked != 1:
            fail(f"{tracked:.0f} connections tracked, 1 open: a close during the pause was missed")
        if [v for _, v in active] != [1]:
            fail(f"nginx's active TCP connections {active}, 1 open: a close during the pause was missed")
        curl(nginx.port, 4)
        conn.close()
        agent.settle(1.5)
        samples = agent.metrics()
        logs = agent.logs()
        log = nginx.access_log()
    finally:
        agent.stop()
        nginx.stop()
    logged_ok = sum(1 for status, _, uri, _ in log if uri == "/ok")
    logged_users = sum(1 for status, _, uri, _ in log if uri == "/users/7")
    if (logged_ok, logged_users) != (16, 8):
        fail(f"nginx logged {logged_ok} /ok and {logged_users} /users/7, expected 16 and 8")
    counts = server_counts(samples, "nginx")
    got = (counts.get(("GET", "/ok", "200")), counts.get(("GET", "/users/{id}", "200")))
    # Seen: the requests before and after the pause (5 + 4 by curl, 2 + 2 + 1 on kept-alive connections).
    if got != (9, 5):
        fail(f"counted /ok and /users/{{id}} {got}, expected (9, 5): the 7 + 3 requests of the pause left "
             f"out, nothing else. counts={counts}")
    if select(samples, "loupe_hooks_paused")[0][1] != 0:
        fail("loupe_hooks_paused is not 0 after SIGUSR2")
    if "SIGUSR1: kernel hooks detached" not in logs or "SIGUSR2: kernel hooks attached again" not in logs:
        fail("the pause and resume are not logged")
    print("ok: 9 + 5 requests outside the pause counted exactly, 7 + 3 inside it not seen, a close inside it "
          "seen; links 2 -> 0 -> 2")


if __name__ == "__main__":
    main()
