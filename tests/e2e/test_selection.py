#!/usr/bin/env python3
"""Process and port selection, config file, env vars and bad config, as a user drives them."""
import os
import subprocess
import tempfile

from loupe_e2e import (LOUPE, Agent, Nginx, Workload, fail, free_port, require_root, select, server_counts,
                       wait_port)

# One request to nginx, then exit: a process that lives ~50 ms, between two of the agent's /proc
# scans (a second apart).
SHORT_CLIENT = r"""
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
conn.request("GET", "/ok")
print(conn.getresponse().status, flush=True)
"""
SHORT_RUNS = 5


def python_server():
    port = free_port()
    proc = subprocess.Popen(["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory",
                             tempfile.mkdtemp()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def traffic(nginx_port, py_port, n=5):
    for _ in range(n):
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{nginx_port}/ok"], check=True)
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{py_port}/"], check=True)


def main():
    require_root()
    nginx = Nginx(workers=1)
    py, py_port = python_server()
    try:
        # --port: only connections whose server port is nginx's.
        agent = Agent("--port", str(nginx.port))
        traffic(nginx.port, py_port)
        agent.settle()
        samples = agent.metrics()
        agent.stop()
        if server_counts(samples, "nginx").get(("GET", "/ok", "200")) != 5:
            fail(f"--port: nginx not counted: {server_counts(samples, 'nginx')}")
        if server_counts(samples, "python3"):
            fail("--port: python3 on another port was reported")
        ports = {l["server_port"] for l, _ in select(samples, "http_client_request_duration_seconds_count")}
        if ports != {str(nginx.port)}:
            fail(f"--port: client series for other ports: {ports}")

        # --comm from a config file, flags still win over the file (listen), env var for the level.
        config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        config.write("comm: [python3]\nlisten: 127.0.0.1:1\nmax_series: 500\n")
        config.close()
        os.environ["LOUPE_LOG_LEVEL"] = "debug"
        agent = Agent("--config", config.name)
        del os.environ["LOUPE_LOG_LEVEL"]
        traffic(nginx.port, py_port)
        agent.settle(1.5)
        samples = agent.metrics()
        logs = agent.logs()
        agent.stop()
        if server_counts(samples, "nginx") or select(samples, "http_client_request_duration_seconds_count",
                                                     service_name="curl"):
            fail("--comm python3: other processes were reported")
        if server_counts(samples, "python3").get(("GET", "/", "200")) != 5:
            fail(f"--comm python3: python3 not counted: {server_counts(samples, 'python3')}")
        if '"level":"debug"' not in logs:
            fail("LOUPE_LOG_LEVEL=debug from the environment was ignored")

        # --comm selects a process started later from its exec on (in the kernel), not from the
        # next /proc scan: short-lived clients are all seen.
        agent = Agent("--comm", "loupe_shortcli")
        for _ in range(SHORT_RUNS):
            client = Workload("loupe_shortcli", SHORT_CLIENT, nginx.port)
            if client.readline() != "200":
                fail("the short-lived client got no 200")
            client.reap()
        agent.settle(1.0)
        samples = agent.metrics()
        agent.stop()
        seen = sum(v for _, v in select(samples, "http_client_request_duration_seconds_count",
                                        service_name="loupe_shortcli", http_response_status_code="200"))
        print(f"short-lived clients: {seen:.0f} of {SHORT_RUNS} requests seen")
        if seen != SHORT_RUNS:
            fail(f"--comm: {seen:.0f} of {SHORT_RUNS} requests of short-lived processes seen")
    finally:
        py.terminate()
        py.wait()
        nginx.stop()

    # A bad config is refused with file, line and key named.
    def refused(config_text, message):
        bad = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        bad.write(config_text)
        bad.close()
        r = subprocess.run([LOUPE, "agent", "--config", bad.name], capture_output=True, text=True, timeout=10)
        os.unlink(bad.name)
        if r.returncode != 2 or f"{bad.name}:{message}" not in r.stderr:
            fail(f"bad config {config_text!r} not refused clearly: rc={r.returncode} stderr={r.stderr!r}")
    refused("listen: 127.0.0.1:9\nmax_seriez: 5\n", "2: unknown key 'max_seriez'")
    refused("kubernetes: maybe\n", "1: invalid value for 'kubernetes'")
    r = subprocess.run([LOUPE, "agent", "--listen", "nonsense"], capture_output=True, text=True, timeout=10)
    if r.returncode == 0:
        fail("--listen nonsense was accepted")

    # --disable-hooks: those hooks are not attached (in either BPF object), the rest are, and the
    # agent says which.
    agent = Agent("--disable-hooks", "sched_switch,tcp_send_reset,inet_sock_set_state")
    _, info = agent.api("/api/v1/agent")
    agent.stop()
    if ("sched_switch" in info["resource_hooks_attached"] or "tcp_send_reset" in info["resource_hooks_attached"]
            or "inet_sock_set_state" in info["hooks_attached"]
            or "inet_sock_set_state" in info["resource_hooks_attached"]):
        fail(f"--disable-hooks: disabled hooks still attached: {info}")
    if "sock_send_length" not in info["hooks_attached"] or "tcp_retransmit_skb" not in info["resource_hooks_attached"]:
        fail(f"--disable-hooks: other hooks missing: {info}")
    if info["hooks_disabled"] != ["sched_switch", "tcp_send_reset", "inet_sock_set_state"]:
        fail(f"--disable-hooks not reported: {info['hooks_disabled']}")

    r = subprocess.run([LOUPE, "agent", "--help"], capture_output=True, text=True, timeout=10)
    for flag in ("--listen", "--config", "--pid", "--comm", "--port", "--max-series", "LOUPE_LISTEN",
                 "--disable-hooks", "--kubernetes", "--k8s-pods-url"):
        if flag not in r.stdout:
            fail(f"agent --help does not mention {flag}")
    print("selection, config, env and bad config: ok")


if __name__ == "__main__":
    main()
