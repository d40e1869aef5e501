#!/usr/bin/env python3
"""CPU resource metrics against /proc and wait4: a process spinning one core (loupe_burn) and one
that sleeps and wakes 200 times (loupe_wakeups).

- loupe_process_cpu_utilization_cores while it spins: about one core (0.85..1.15), and within
  0.1 core of what /proc/PID/stat says it used over the agent's last 1 s interval;
  process_cpu_utilization_ratio = cores / node CPUs; system_cpu_utilization_ratio covers it.
- process_cpu_time_seconds_total while it is stopped (frozen): within 5 % of /proc/PID/stat.
- after it exits: loupe_processes_exited_total == 1, the counter did not decrease and is within
  5 % of the CPU time wait4 reports for the process.
- loupe_process_runqueue_latency_seconds of the sleeper: one observation per time it got a CPU
  (/proc/PID/schedstat; at least its 200 wakeups), summing to the time it waited runnable
  (schedstat run_delay) within 1 us."""
import os
import signal
import time

from loupe_e2e import (Agent, Workload, fail, histogram, metric, metric_or, proc_cpu_seconds, require_root,
                       time_limit)

BURN = r"""
import sys, time
print("ready", flush=True)
while time.process_time() < float(sys.argv[1]):
    pass
"""

WAKEUPS = r"""
import os, signal, time
for _ in range(200):
    time.sleep(0.001)
print("done", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""

BURN_CPU_SECONDS = 4.0


def schedstat(pid):
    """(seconds on CPU, seconds waited runnable, times it got a CPU) from /proc/PID/schedstat."""
    with open(f"/proc/{pid}/schedstat") as f:
        run_ns, wait_ns, slices = (int(x) for x in f.read().split())
    return run_ns / 1e9, wait_ns / 1e9, slices


def main():
    require_root()
    time_limit(90)
    ncpu = os.cpu_count()
    agent = Agent()
    burn = wakeups = None
    try:
        # nice -20: the burner gets its core even if something else runs on the machine.
        burn = Workload("loupe_burn", BURN, BURN_CPU_SECONDS, nice=-20)
        wakeups = Workload("loupe_wakeups", WAKEUPS, nice=-20)
        burn.readline()

        # /proc oracle: the burner's CPU time every 50 ms, then a scrape after ~2.6 s of spinning.
        trace = []
        start = time.monotonic()
        while time.monotonic() - start < 2.6:
            trace.append((time.monotonic(), proc_cpu_seconds(burn.pid)))
            time.sleep(0.05)
        scraped_at = time.monotonic()
        live = agent.metrics()
        trace.append((time.monotonic(), proc_cpu_seconds(burn.pid)))

        cores = metric(live, "loupe_process_cpu_utilization_cores", service_name="loupe_burn")
        ratio = metric(live, "process_cpu_utilization_ratio", service_name="loupe_burn")
        node = metric(live, "system_cpu_utilization_ratio")
        processes = metric(live, "loupe_processes", service_name="loupe_burn")
        # The agent's last interval is some 1 s window that ended in the 1.3 s before the scrape.
        rates = []
        for t1, c1 in trace:
            if scraped_at - 1.3 <= t1 <= scraped_at:
                t0, c0 = min(trace, key=lambda s: abs(s[0] - (t1 - 1.0)))
                if t1 - t0 > 0.8:
                    rates.append((c1 - c0) / (t1 - t0))
        if not rates:
            fail("could not sample /proc often enough to build the oracle")
        lo, hi = min(rates), max(rates)
        print(f"running: agent {cores:.3f} cores (ratio {ratio:.4f} x {ncpu} CPUs), /proc {lo:.3f}..{hi:.3f} cores, "
              f"node {node:.3f}, processes {processes:g}")
        if lo < 0.85:
            fail(f"the burner itself only got {lo:.3f} cores per /proc (machine too busy?): cannot check the agent")
        if not 0.85 <= cores <= 1.15:
            fail(f"loupe_process_cpu_utilization_cores{{loupe_burn}} = {cores:.3f}, expected 0.85..1.15 "
                 f"(/proc says {lo:.3f}..{hi:.3f})")
        if not lo - 0.1 <= cores <= hi + 0.1:
            fail(f"loupe_process_cpu_utilization_cores{{loupe_burn}} = {cores:.3f}, /proc says {lo:.3f}..{hi:.3f} "
                 "over the last second")
        if abs(ratio * ncpu - cores) > 0.01 * cores + 0.005:
            fail(f"process_cpu_utilization_ratio {ratio:.4f} x {ncpu} CPUs != {cores:.3f} cores")
        if not 0.8 / ncpu <= node <= 1.0:
            fail(f"system_cpu_utilization_ratio {node:.3f} while one of {ncpu} CPUs spins (expected >= {0.8 / ncpu:.3f})")
        if processes != 1:
            fail(f"loupe_processes{{loupe_burn}} = {processes:g}, expected 1")

        # Frozen: both /proc and the agent stop moving; they must agree within 5 %.
        os.kill(burn.pid, signal.SIGSTOP)
        burn.wait_stopped()
        agent.settle(2.5)
        on_proc = proc_cpu_seconds(burn.pid)
        stopped = agent.metrics()
        frozen = metric(stopped, "process_cpu_time_seconds_total", service_name="loupe_burn")
        idle_cores = metric(stopped, "loupe_process_cpu_utilization_cores", service_name="loupe_burn")
        print(f"stopped: agent {frozen:.3f} s CPU, /proc {on_proc:.3f} s; {idle_cores:.3f} cores")
        if on_proc < 2.0:
            fail(f"the burner only used {on_proc:.3f} s of CPU before it was stopped")
        if abs(frozen - on_proc) > 0.05 * on_proc:
            fail(f"process_cpu_time_seconds_total{{loupe_burn}} = {frozen:.3f} s, /proc/PID/stat says {on_proc:.3f} s")
        if idle_cores > 0.05:
            fail(f"loupe_process_cpu_utilization_cores{{loupe_burn}} = {idle_cores:.3f} for a stopped process")

        # The sleeper stopped itself after its 200 wakeups.
        wakeups.readline()
        wakeups.wait_stopped()
        _, waited, slices = schedstat(wakeups.pid)
        buckets, count, total = histogram(stopped, "loupe_process_runqueue_latency_seconds",
                                          service_name="loupe_wakeups")
        print(f"runqueue latency of loupe_wakeups: {count:g} observations, sum {total * 1e3:.3f} ms; "
              f"schedstat: {slices} times on a CPU, {waited * 1e3:.3f} ms waited")
        # loupe reads the kernel's own sched_info at every switch-out: one observation per time
        # the process got a CPU, and the same total wait, to the nanosecond.
        if count != slices or count < 200:
            fail(f"loupe_process_runqueue_latency_seconds_count{{loupe_wakeups}} = {count:g}: 200 wakeups happened "
                 f"and the process got a CPU {slices} times")
        if abs(total - waited) > 1e-6:
            fail(f"loupe_process_runqueue_latency_seconds_sum{{loupe_wakeups}} = {total * 1e3:.6f} ms, "
                 f"but the process waited runnable {waited * 1e3:.6f} ms in all (schedstat)")
        if buckets[-1][1] != count:
            fail(f"+Inf bucket {buckets[-1][1]:g} != _count {count:g}")

        # Exit: the CPU time moves from the live side to the exited side without a dip.
        os.kill(wakeups.pid, signal.SIGCONT)
        os.kill(burn.pid, signal.SIGCONT)
        code, burned = burn.reap()
        wakeups.reap()
        if code != 0:
            fail(f"the burner exited {code}")
        agent.settle(2.5)
        done = agent.metrics()
        final = metric(done, "process_cpu_time_seconds_total", service_name="loupe_burn")
        exited = metric(done, "loupe_processes_exited_total", service_name="loupe_burn")
        exited_sleeper = metric(done, "loupe_processes_exited_total", service_name="loupe_wakeups")
        left = metric_or(done, "loupe_processes", 0, service_name="loupe_burn")
        print(f"exited: agent {final:.3f} s CPU, wait4 {burned:.3f} s; exited {exited:g} (sleeper {exited_sleeper:g}), "
              f"live {left:g}")
        if exited != 1 or exited_sleeper != 1:
            fail(f"loupe_processes_exited_total: loupe_burn {exited:g}, loupe_wakeups {exited_sleeper:g}, expected 1 each")
        if left != 0:
            fail(f"loupe_processes{{loupe_burn}} = {left:g} after its only process exited")
        if final < frozen:
            fail(f"process_cpu_time_seconds_total{{loupe_burn}} decreased at exit: {frozen:.3f} -> {final:.3f}")
        if abs(final - burned) > 0.05 * burned:
            fail(f"process_cpu_time_seconds_total{{loupe_burn}} = {final:.3f} s after exit, wait4 says {burned:.3f} s")
    finally:
        for w in (burn, wakeups):
            if w:
                w.kill()
    agent.stop()
    print(f"resources cpu: ok (running {cores:.3f} cores; frozen {frozen:.3f}/{on_proc:.3f} s; "
          f"exited {final:.3f}/{burned:.3f} s; runqueue {count:g} observations)")


if __name__ == "__main__":
    main()
