#!/usr/bin/env python3
"""service_name is the process name as in /proc/PID/comm, whatever the process did before.

(a) 5 processes that spend 1.5 s (longer than the agent's 1 s sampling interval) between fork and
    exec, sleeping under their parent's name (python3), and then exec under the name
    loupe_lateexec: after the agent's sampling, loupe_processes{loupe_lateexec} == 5 and they use
    CPU under that name; after they exit, loupe_processes_exited_total{loupe_lateexec} == 5. (A
    shell does exactly this: fork, some work, exec; a short-lived window of the same kind is hit
    at random by every other test.)
(b) a process exec'd as loupe_prerename that, 1.5 s later, renames itself with
    prctl(PR_SET_NAME) to loupe_renamed: loupe_processes{loupe_renamed} == 1 while it runs, nothing
    live under loupe_prerename, and loupe_processes_exited_total{loupe_renamed} == 1 after it
    exits."""
import time

from loupe_e2e import Agent, Workload, fail, metric, metric_or, require_root, time_limit

LATE = 5

LATE_EXEC = r"""
import sys, time
start = time.process_time()
while time.process_time() - start < 0.2:
    pass
print("ready", flush=True)
sys.stdin.readline()
"""

RENAME = r"""
import ctypes, sys, time
time.sleep(1.5)  # seen by the agent under its exec name first
ctypes.CDLL(None).prctl(15, b"loupe_renamed", 0, 0, 0)  # PR_SET_NAME
start = time.process_time()
while time.process_time() - start < 0.2:
    pass
print("ready", open("/proc/self/comm").read().strip(), flush=True)
sys.stdin.readline()
"""


def before_exec():
    for _ in range(150):  # 1.5 s, 150 wakeups, while the child is still called python3
        time.sleep(0.01)


def main():
    require_root()
    time_limit(60)
    agent = Agent()
    workloads = []
    try:
        late = [Workload("loupe_lateexec", LATE_EXEC, preexec=before_exec) for _ in range(LATE)]
        workloads += late
        renamed = Workload("loupe_prerename", RENAME)  # started last: it renames itself 1.5 s later
        workloads.append(renamed)
        for w in late:
            w.readline()
        if renamed.readline() != "ready loupe_renamed":
            fail("prctl(PR_SET_NAME) did not rename the process")
        agent.settle(2.5)
        live = agent.metrics()
        python3 = metric_or(live, "loupe_processes", 0, service_name="python3")
        late_live = metric_or(live, "loupe_processes", 0, service_name="loupe_lateexec")
        late_cpu = metric_or(live, "process_cpu_time_seconds_total", 0, service_name="loupe_lateexec")
        renamed_live = metric_or(live, "loupe_processes", 0, service_name="loupe_renamed")
        prerename_live = metric_or(live, "loupe_processes", 0, service_name="loupe_prerename")
        print(f"live: loupe_lateexec {late_live:g} processes ({late_cpu:.2f} s CPU), loupe_renamed {renamed_live:g}, "
              f"loupe_prerename {prerename_live:g}; python3 {python3:g}")
        if late_live != LATE:
            fail(f"loupe_processes{{loupe_lateexec}} = {late_live:g}, {LATE} processes run under that name "
                 f"(/proc/PID/comm); python3 has {python3:g}: named after what they were before exec?")
        if late_cpu < 0.9 * LATE * 0.2:
            fail(f"process_cpu_time_seconds_total{{loupe_lateexec}} = {late_cpu:.3f} s, its {LATE} processes used "
                 f"at least {LATE * 0.2:.1f} s after exec")
        if renamed_live != 1 or prerename_live != 0:
            fail(f"after prctl(PR_SET_NAME): loupe_processes{{loupe_renamed}} = {renamed_live:g}, "
                 f"{{loupe_prerename}} = {prerename_live:g}; /proc/PID/comm says loupe_renamed")

        for w in workloads:
            w.send("exit")
        for w in workloads:
            w.reap()
        agent.settle(2.5)
        done = agent.metrics()
        late_exited = metric(done, "loupe_processes_exited_total", service_name="loupe_lateexec")
        renamed_exited = metric_or(done, "loupe_processes_exited_total", 0, service_name="loupe_renamed")
        prerename_exited = metric_or(done, "loupe_processes_exited_total", 0, service_name="loupe_prerename")
        print(f"exited: loupe_lateexec {late_exited:g}, loupe_renamed {renamed_exited:g}, "
              f"loupe_prerename {prerename_exited:g}")
        if late_exited != LATE:
            fail(f"loupe_processes_exited_total{{loupe_lateexec}} = {late_exited:g}, {LATE} exited")
        if renamed_exited != 1 or prerename_exited != 0:
            fail(f"loupe_processes_exited_total: loupe_renamed {renamed_exited:g}, loupe_prerename "
                 f"{prerename_exited:g}; the process was called loupe_renamed when it exited")
    finally:
        for w in workloads:
            w.kill()
    agent.stop()
    print(f"resources naming: ok ({LATE} late exec'd processes and a prctl-renamed one under their /proc names)")


if __name__ == "__main__":
    main()
