"""Rotating phases of one long benchmark run. rotate_phases(): any set of phase kinds, each set
up by a function (tls_overhead.py, profile_nginx_overhead.py). rotate(), shared by
redis_overhead.py and sql_overhead.py: one agent whose kernel hooks are detached (SIGUSR1) and
attached again (SIGUSR2) from phase to phase, and optionally a third phase running a bpftrace
reference script instead (ReferenceTracer). The throughput of a phase is the difference of a
server's own operation counter across it."""
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


def phase_orders(kinds):
    """Orders that put every kind in every position as often: all permutations for two or three
    kinds (ABBA for two), else the rotations of the list and of its reverse (every kind also
    follows every other one), so that a drift of the host's speed weighs on every kind alike."""
    if len(kinds) == 2:
        return [kinds, kinds[::-1]]
    if len(kinds) == 3:
        return list(itertools.permutations(kinds))
    forward = [kinds[i:] + kinds[:i] for i in range(len(kinds))]
    return forward + [order[::-1] for order in forward]


def rotate_phases(kinds, switch, operations, running, minutes, phase, settle, per_reading=0,
                  unit="ops", baseline="without", counters=None):
    """Runs rounds of phases for `minutes`, one phase of each kind a round in phase_orders(kinds).
    `switch(kind)` sets a phase up (starts or stops tracers) and returns the pid of the process
    whose CPU that phase charges, or None; `settle` seconds pass before the phase is measured for
    `phase` seconds. `operations()` reads the server's cumulative count; `per_reading` is what one
    reading adds to it; `counters` ({name: function}) are other cumulative readings, whose
    differences across each phase are kept under their names. Returns (rounds: [{kind: operations
    a second}], phases: [{"kind", "rate", "operations", "seconds", "cpu_seconds" (of switch's pid,
    None without one), "idle_share", and counters' names}])."""
    counters = counters or {}
    orders = phase_orders(kinds)
    rounds, phases = [], []
    end = time.time() + minutes * 60
    while time.time() < end and running():
        rate = {}
        for kind in orders[len(rounds) % len(orders)]:
            pid = switch(kind)
            time.sleep(settle)
            c0, t0 = _reading(operations)
            a0, i0 = (proc_cpu_seconds(pid) if pid else None), idle_seconds()
            others = {name: read() for name, read in counters.items()}
            time.sleep(phase)
            c1, t1 = _reading(operations)
            a1 = proc_cpu_seconds(pid) if pid else None
            others = {name: read() - others[name] for name, read in counters.items()}
            n = c1 - c0 - per_reading
            rate[kind] = n / (t1 - t0)
            phases.append({"kind": kind, "rate": rate[kind], "operations": n, "seconds": t1 - t0,
                           "cpu_seconds": a1 - a0 if pid else None,
                           "idle_share": (idle_seconds() - i0) / ((t1 - t0) * os.cpu_count()),
                           **others})
        rounds.append(rate)
        print(f"round {len(rounds)}: " + ", ".join(f"{k} {rate[k]:.0f} {unit}/s" for k in kinds)
              + ", " + ", ".join(f"{k}/{baseline} {rate[k] / rate[baseline]:.3f}"
                                 for k in kinds if k != baseline), flush=True)
    return rounds, phases


def rotate(agent, operations, running, minutes, phase, settle, reference=None, per_reading=0,
           unit="ops"):
    """rotate_phases() with one agent whose hooks are detached (SIGUSR1) and attached again
    (SIGUSR2): "without" (hooks detached), "loupe" (attached) and, with `reference`, "reference"
    (detached, the bpftrace script running). Returns (rounds: [{kind: operations a second}],
    agent CPU µs an operation with hooks, idle CPU shares of the phases)."""
    kinds = ["without", "loupe"] + (["reference"] if reference else [])

    def switch(kind):
        if reference:
            reference.set(kind == "reference")
        agent.set_hooks_paused(kind != "loupe")
        return agent.proc.pid

    try:
        rounds, phases = rotate_phases(kinds, switch, operations, running, minutes, phase, settle,
                                       per_reading=per_reading, unit=unit)
    finally:
        if reference:
            reference.set(False)
    agent_us = [p["cpu_seconds"] * 1e6 / p["operations"] for p in phases
                if p["kind"] == "loupe" and p["operations"] > 0]
    return rounds, agent_us, [p["idle_share"] for p in phases]


def ratios_to(rounds, kind, baseline="without"):
    """The median of `kind`'s per-round ratios to `baseline` and its 95 % confidence interval."""
    return median_ci([r[kind] / r[baseline] for r in rounds])


def report(rounds, agent_us, idle_share, unit="operation"):
    if not rounds:
        print("no complete round")
        return
    kinds = list(rounds[0])
    for kind in (k for k in ("loupe", "reference") if k in kinds):
        med, lo, hi = ratios_to(rounds, kind)
        print(f"{kind}: median ratio over {len(rounds)} rounds: {med:.3f} (95 % CI {lo:.3f}-{hi:.3f})")
    if "reference" in kinds:
        med, lo, hi = ratios_to(rounds, "loupe", "reference")
        wins = sum(r["loupe"] >= r["reference"] for r in rounds)
        print(f"loupe/reference: median {med:.3f} (95 % CI {lo:.3f}-{hi:.3f}); loupe ahead in "
              f"{wins} of {len(rounds)} rounds")
    # Idle CPUs mean the phases were not CPU-bound, and a ratio then says little about CPU cost.
    if agent_us:
        print(f"agent CPU with hooks: median {statistics.median(agent_us):.2f} us a {unit}; "
              f"idle CPU share: median {statistics.median(idle_share):.3f}")


def print_kind_table(rounds, phases, unit="request", baseline="without", columns=None):
    """A Markdown table, one row a kind: the median rate, the median per-round ratio to
    `baseline` (95 % CI), and the medians over the kind's phases of the CPU of the pid its switch
    returned, as a share of the machine and per `unit`; `columns` ({title: function of a phase})
    adds medians of other figures."""
    if not rounds:
        print("no complete round")
        return
    columns = columns or {}
    kinds = list(rounds[0])
    cpus = os.cpu_count()
    print(f"| phase | {unit}s/s | vs {baseline} (95 % CI) | process CPU, % of machine | "
          f"process CPU µs/{unit} | " + " | ".join(columns) + (" |" if columns else ""))
    print("|---" * (5 + len(columns)) + "|")
    for kind in kinds:
        mine = [p for p in phases if p["kind"] == kind]
        rate = statistics.median(p["rate"] for p in mine)
        ratio = "" if kind == baseline else "{:.3f} ({:.3f}-{:.3f})".format(
            *ratios_to(rounds, kind, baseline))
        charged = [p for p in mine if p["cpu_seconds"] is not None]
        share = per_op = ""
        if charged:
            share = f"{100 * statistics.median(p['cpu_seconds'] / (p['seconds'] * cpus) for p in charged):.2f} %"
            per_op = f"{statistics.median(1e6 * p['cpu_seconds'] / max(p['operations'], 1) for p in charged):.2f}"
        extra = [f"{statistics.median(f(p) for p in mine):.3g}" for f in columns.values()]
        print(f"| {kind} | {rate:.0f} | {ratio} | {share} | {per_op} | " + " | ".join(extra)
              + (" |" if extra else ""))
    print(f"idle CPU share over all phases: median "
          f"{statistics.median(p['idle_share'] for p in phases):.3f}; load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
