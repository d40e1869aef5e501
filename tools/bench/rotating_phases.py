"""Rotating phases of one long benchmark run, shared by redis_overhead.py and sql_overhead.py: one
agent whose kernel hooks are detached (SIGUSR1) and attached again (SIGUSR2) from phase to phase,
and optionally a third phase running a bpftrace reference script instead (ReferenceTracer). The
throughput of a phase is the difference of a server's own operation counter across it."""
import itertools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import proc_cpu_seconds  # noqa: E402
from overhead_paused import idle_seconds, median_ci  # noqa: E402


def _reading(operations):
    """The counter and the moment it was read: the middle of the call, which may take tens of
    milliseconds on a loaded machine (a query to the server)."""
    t0 = time.monotonic()
    n = operations()
    return n, (t0 + time.monotonic()) / 2


def rotate(agent, operations, running, minutes, phase, settle, reference=None, per_reading=0,
           unit="ops"):
    """Runs rounds of phases for `minutes`: "without" (hooks detached), "loupe" (attached) and,
    with `reference`, "reference" (detached, the bpftrace script running), in rotating orders so
    that a drift of the host's speed weighs on every kind alike. `operations()` reads the server's
    cumulative count; `per_reading` is what one reading adds to it (Redis counts its own INFO).
    Returns (rounds: [{kind: operations a second}], agent CPU µs an operation with hooks, idle
    CPU shares of the phases)."""
    kinds = ["without", "loupe"] + (["reference"] if reference else [])
    orders = list(itertools.permutations(kinds)) if reference else [kinds, kinds[::-1]]
    rounds, agent_us, idle_share = [], [], []
    end = time.time() + minutes * 60
    try:
        while time.time() < end and running():
            rate = {}
            for kind in orders[len(rounds) % len(orders)]:
                if reference:
                    reference.set(kind == "reference")
                agent.set_hooks_paused(kind != "loupe")
                time.sleep(settle)
                c0, t0 = _reading(operations)
                a0, i0 = proc_cpu_seconds(agent.proc.pid), idle_seconds()
                time.sleep(phase)
                c1, t1 = _reading(operations)
                n = c1 - c0 - per_reading
                rate[kind] = n / (t1 - t0)
                idle_share.append((idle_seconds() - i0) / ((t1 - t0) * os.cpu_count()))
                if kind == "loupe" and n > 0:
                    agent_us.append((proc_cpu_seconds(agent.proc.pid) - a0) * 1e6 / n)
            rounds.append(rate)
            print(f"round {len(rounds)}: " + ", ".join(f"{k} {rate[k]:.0f} {unit}/s" for k in kinds)
                  + ", " + ", ".join(f"{k}/without {rate[k] / rate['without']:.3f}" for k in kinds[1:]),
                  flush=True)
    finally:
        if reference:
            reference.set(False)
    return rounds, agent_us, idle_share


def report(rounds, agent_us, idle_share, unit="operation"):
    if not rounds:
        print("no complete round")
        return
    kinds = list(rounds[0])
    for kind in (k for k in ("loupe", "reference") if k in kinds):
        med, lo, hi = median_ci([r[kind] / r["without"] for r in rounds])
        print(f"{kind}: median ratio over {len(rounds)} rounds: {med:.3f} (95 % CI {lo:.3f}-{hi:.3f})")
    if "reference" in kinds:
        med, lo, hi = median_ci([r["loupe"] / r["reference"] for r in rounds])
        wins = sum(r["loupe"] >= r["reference"] for r in rounds)
        print(f"loupe/reference: median {med:.3f} (95 % CI {lo:.3f}-{hi:.3f}); loupe ahead in "
              f"{wins} of {len(rounds)} rounds")
    # Idle CPUs mean the phases were not CPU-bound, and a ratio then says little about CPU cost.
    if agent_us:
        print(f"agent CPU with hooks: median {statistics.median(agent_us):.2f} us a {unit}; "
              f"idle CPU share: median {statistics.median(idle_share):.3f}")
