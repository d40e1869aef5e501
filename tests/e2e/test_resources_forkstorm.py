#!/usr/bin/env python3
"""A storm of 1,000 short processes (a copy of /bin/true named loupe_storm_bin, run one after the
other by a shell loop): every exit is counted, their CPU time is kept, and the per-process BPF map
does not leak.

- loupe_processes_exited_total{service_name="loupe_storm_bin"} == 1000 exactly;
- process_cpu_time_seconds_total for it > 0, and no more than the CPU time the whole loop (shell
  included) used per getrusage(RUSAGE_CHILDREN);
- no leak in the kernel's proc_stats map: at most 10 of its entries belong to processes that no
  longer exist (read with bpftool); when bpftool cannot tell (several agents' maps),
  loupe_bpf_map_entries{map="proc_stats"} no more than 10 above its value before the storm.
  (Growth alone is not a leak: other processes started on the machine meanwhile, a build, count.)"""
import os
import resource
import shutil
import subprocess
import tempfile
import time

from loupe_e2e import Agent, fail, metric, metric_or, require_root, time_limit

COUNT = 1000
NAME = "loupe_storm_bin"  # exactly 15 characters: the kernel keeps all of it


def main():
    require_root()
    time_limit(120)
    work = tempfile.mkdtemp(prefix="loupe-storm-")
    binary = os.path.join(work, NAME)
    agent = None
    try:
        # What the kernel calls a process exec'd from this path (checked before the agent starts,
        # so this probe is not counted): a long-running copy, /proc/PID/comm, then the real /bin/true.
        shutil.copy("/bin/sleep", binary)
        probe = subprocess.Popen([binary, "10"])
        time.sleep(0.2)
        with open(f"/proc/{probe.pid}/comm") as f:
            comm = f.read().strip()
        probe.kill()
        probe.wait()
        if comm != NAME[:15]:
            fail(f"a process exec'd from {binary} is called {comm!r}, expected {NAME[:15]!r}")
        shutil.copy("/bin/true", binary)

        agent = Agent()
        agent.settle(2.5)
        before = agent.metrics()
        entries_before = metric(before, "loupe_bpf_map_entries", map="proc_stats")
        dropped_before = metric_or(before, "loupe_events_dropped_total", 0)
        if select_any(before, comm):
            fail(f"series for {comm} exist before the storm")

        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        subprocess.run(["bash", "-c", f'for i in $(seq {COUNT}); do "$0" || exit 1; done', binary], check=True)
        elapsed = time.monotonic() - started
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        loop_cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)

        agent.settle(2.5)
        after = agent.metrics()
        exited = metric(after, "loupe_processes_exited_total", service_name=comm)
        cpu = metric(after, "process_cpu_time_seconds_total", service_name=comm)
        live = metric_or(after, "loupe_processes", 0, service_name=comm)
        entries_after = metric(after, "loupe_bpf_map_entries", map="proc_stats")
        dropped_after = metric_or(after, "loupe_events_dropped_total", 0)
        print(f"storm: {COUNT} processes in {elapsed:.2f} s; exited {exited:g}; CPU agent {cpu * 1e3:.1f} ms, "
              f"whole loop {loop_cpu * 1e3:.1f} ms; proc_stats entries {entries_before:g} -> {entries_after:g}; "
              f"events dropped {dropped_before:g} -> {dropped_after:g}")
        if exited != COUNT:
            fail(f"loupe_processes_exited_total{{{comm}}} = {exited:g}, {COUNT} processes exited")
        if live != 0:
            fail(f"loupe_processes{{{comm}}} = {live:g} after all of them exited")
        if not 0 < cpu <= 1.1 * loop_cpu + 0.02:
            fail(f"process_cpu_time_seconds_total{{{comm}}} = {cpu:.4f} s; the whole loop used {loop_cpu:.4f} s")
        dead = dead_entry_count()
        if (dead is not None and dead > 10) or (dead is None and entries_after - entries_before > 10):
            fail(f"loupe_bpf_map_entries{{proc_stats}}: {entries_before:g} before the storm, {entries_after:g} after "
                 f"({live_processes()} processes live on the machine now){dead_entries()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    agent.stop()
    print(f"resources forkstorm: ok ({exited:g} exits counted, {cpu * 1e3:.1f} ms CPU, "
          f"proc_stats {entries_before:g} -> {entries_after:g})")


def live_processes():
    return sum(1 for d in os.listdir("/proc") if d.isdigit())


def dead_entry_count():
    """Entries of proc_stats whose process has exited, or None when bpftool cannot tell."""
    counts = dead_entries_by_comm()
    return None if counts is None else sum(counts.values())


def dead_entries():
    counts = dead_entries_by_comm()
    return "; bpftool could not tell" if counts is None else \
        f"; {sum(counts.values())} entries of exited processes: {dict(counts)}"


def dead_entries_by_comm():
    """The proc_stats entries whose process (key: tgid) no longer exists, by the comm stored in
    them; None when bpftool cannot tell (it is missing, or several agents' maps are loaded)."""
    import collections
    import json
    try:
        maps = json.loads(subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True).stdout)
        ids = [m["id"] for m in maps if m.get("name") == "proc_stats"]
        if len(ids) != 1:
            return None
        dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "id", str(ids[0])], capture_output=True,
                                         text=True).stdout)
        dead = collections.Counter()
        for entry in dump:
            tgid = int.from_bytes(bytes(int(x, 16) for x in entry["key"]), "little")
            if not os.path.exists(f"/proc/{tgid}"):
                dead[bytes(int(x, 16) for x in entry["value"][:16]).split(b"\0")[0].decode(errors="replace")] += 1
        return dead
    except (OSError, ValueError, KeyError, TypeError):
        return None


def select_any(samples, service):
    return [key for key in samples if ("service_name", service) in key[1]]


if __name__ == "__main__":
    main()
