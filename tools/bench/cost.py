#!/usr/bin/env python3
"""CPU cost of loupe per request, which throughput ratios on a noisy 2-core VM hide: nginx + wrk
with an agent attached and kernel.bpf_stats_enabled=1; prints the BPF run time of every loupe
program (per request and in total) and the agent's own CPU.

    sudo python3 tools/bench/cost.py [--seconds 10] [--path /] [--all-processes] [--https] [--go]

--https: nginx with `ssl` and wrk https:// (keep-alive), read through the OpenSSL uprobes. The
BPF run time then includes the uprobe programs, not the traps that enter them (an uprobe hit and
a uretprobe return each cost a trap into the kernel, which bpf_stats does not count).

--go: instead of nginx, the Go HTTPS server of tests/e2e/tls/gotls.go (built here with the
machine's Go, its per-request garbage off) under wrk https:// (keep-alive), `--comm gotlscost`:
read through the Go crypto/tls uprobes (entry and every RET of (*Conn).Read and Write).
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import Agent, Nginx, bpftool_json, proc_cpu_seconds, select  # noqa: E402


def prog_stats():
    progs = bpftool_json("prog", "show")
    return {p["id"]: (p.get("name", "?"), p.get("run_cnt", 0), p.get("run_time_ns", 0)) for p in progs}


def run_time_by_program(before, after):
    """{program name: [runs, ns]} between two prog_stats() readings."""
    by_name = collections.defaultdict(lambda: [0, 0])
    for pid, (name, cnt, ns) in after.items():
        b = before.get(pid, (name, 0, 0))
        if cnt - b[1] > 0:
            by_name[name][0] += cnt - b[1]
            by_name[name][1] += ns - b[2]
    return by_name


def print_per_operation(before, after, operations, agent_cpu_seconds, unit):
    """The BPF run time of every loupe program and the agent's CPU, per `unit` (e.g. "command"),
    between two prog_stats() readings that saw `operations` of them."""
    by_name = run_time_by_program(before, after)
    total_ns = sum(v[1] for v in by_name.values())
    for name, (cnt, ns) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:<28} {cnt:>10} runs  {ns / cnt:>6.0f} ns/run  {cnt / operations:>5.2f} runs/{unit}  "
              f"{ns / operations:>6.0f} ns/{unit}")
    print(f"BPF total: {total_ns / operations:.0f} ns a {unit}; agent: "
          f"{agent_cpu_seconds * 1e9 / operations:.0f} ns a {unit}")


class GoServer:
    """tests/e2e/tls/gotls.go's HTTPS server, run as `comm`, with the interface cost.py uses of Nginx."""

    def __init__(self, comm):
        import tempfile
        from loupe_e2e import self_signed_certificate
        self.dir = tempfile.mkdtemp(prefix="loupe-cost-go-")
        source = os.path.join(os.path.dirname(__file__), "../../tests/e2e/tls/gotls.go")
        binary = os.path.join(self.dir, comm)
        env = dict(os.environ, GOCACHE=os.environ.get("GOCACHE", "/tmp/loupe-e2e-gocache"), CGO_ENABLED="0")
        subprocess.run(["go", "build", "-o", binary, source], env=env, check=True, cwd=self.dir)
        cert, key = self_signed_certificate(self.dir)
        self.proc = subprocess.Popen([binary, "server", cert, key], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=dict(os.environ, GOTLS_NO_CHURN="1"))
        self.port = int(self.proc.stdout.readline())

    def wait_probed(self, agent):
        deadline = time.time() + 10
        while not any(l["library"] == "go" and l["uprobes"] for l in agent.api("/api/v1/agent")[1]["tls"]["libraries"]):
            if time.time() > deadline:
                sys.exit("the Go server was not probed within 10 s")
            time.sleep(0.2)

    def url(self, path):
        return f"https://127.0.0.1:{self.port}{path if path != '/' else '/ok'}"

    def stop(self):
        import shutil
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--path", default="/")
    ap.add_argument("--all-processes", action="store_true")
    ap.add_argument("--https", action="store_true", help="nginx with ssl, wrk https://")
    ap.add_argument("--agent-arg", action="append", default=[],
                    help="extra agent argument, repeatable (e.g. --agent-arg=--disable-hooks=sched_switch)")
    ap.add_argument("--go", action="store_true", help="the Go HTTPS server of tests/e2e/tls/gotls.go")
    args = ap.parse_args()
    comm = "gotlscost" if args.go else "nginx"
    nginx = GoServer(comm) if args.go else Nginx(workers=1, tls=args.https)
    agent = Agent(*args.agent_arg) if args.all_processes else Agent("--comm", comm, *args.agent_arg)
    if args.go:
        nginx.wait_probed(agent)
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    # Past the agent's one-off start-up work (its first /proc scan and identities), as in
    # overhead.py: counted here, it was ~0.4 µs of every request of a 10 s run. And past its one-off
    # work at the first traffic, under 2 s of the same load: the continuous profiler's first stacks
    # load /proc/kallsyms and the server's symbol tables (~0.1 s of CPU, once), which counted here
    # was ~0.4 µs of every request of a 10 s run again.
    time.sleep(1)
    subprocess.run(["wrk", "-t2", "-c50", "-d2s", nginx.url(args.path)], capture_output=True, check=True)
    time.sleep(1.5)  # the profiler's next collect (every second) is past too
    try:
        before, cpu0, t0 = prog_stats(), proc_cpu_seconds(agent.proc.pid), time.time()
        out = subprocess.run(["wrk", "-t2", "-c50", f"-d{args.seconds}s", nginx.url(args.path)],
                             capture_output=True, text=True, check=True).stdout
        after, cpu1, t1 = prog_stats(), proc_cpu_seconds(agent.proc.pid), time.time()
        requests = int(re.search(r"(\d+) requests in", out).group(1))
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
        agent.stop()
        nginx.stop()
    by_name = run_time_by_program(before, after)
    elapsed = t1 - t0
    total_ns = sum(v[1] for v in by_name.values())
    print(f"{requests} requests in {elapsed:.1f} s ({requests / elapsed:.0f} req/s), path {args.path}, "
          f"{'all processes' if args.all_processes else '--comm ' + comm}")
    for name, (cnt, ns) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:<28} {cnt:>10} runs  {ns / cnt:>6.0f} ns/run  {ns / requests:>6.0f} ns/request")
    agent_cpu = cpu1 - cpu0
    print(f"BPF: {total_ns / requests:.0f} ns/request, {total_ns / 1e9 / elapsed * 100:.1f} % of one core")
    print(f"agent user space: {agent_cpu / requests * 1e9:.0f} ns/request, {agent_cpu / elapsed * 100:.1f} % of one core")
    print(f"total: {(total_ns / 1e9 + agent_cpu) / elapsed * 100 / os.cpu_count():.1f} % of the machine's "
          f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
