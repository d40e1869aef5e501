"""The rig of overhead_paused.py and perf_phases.py: nginx serving one long `wrk -t2 -c50` run,
with one agent whose kernel hooks are detached (SIGUSR1) and attached again (SIGUSR2) from phase
to phase, and nginx's access log as the count of requests served."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
from loupe_e2e import Agent, Nginx, proc_cpu_seconds  # noqa: E402


class PausedLoad:
    """`with PausedLoad(seconds) as load:` starts nginx, the agent (`--comm nginx` unless
    `all_processes`) and wrk for `seconds` plus a margin; `load.switch(hooks, settle)` sets the
    hooks and waits `settle` seconds; `load.served()` is the number of requests logged since its
    last call. With `reference` (a bpftrace script), `load.switch(hooks, settle, reference=True)`
    also runs that script until the next switch; the rig stops it on exit."""

    def __init__(self, seconds, path="/", workers=2, agent_args=(), all_processes=False, reference=None):
        self.seconds, self.path, self.workers = seconds, path, workers
        self.agent_args = list(agent_args) if all_processes else ["--comm", "nginx", *agent_args]
        self.reference = ReferenceTracer(reference) if reference else None
        self.nginx = self.agent = self.wrk = self.log = None

    def __enter__(self):
        self.nginx = Nginx(workers=self.workers)
        try:
            self.agent = Agent(*self.agent_args)
            self.agent.settle(1.0)
            self.wrk = subprocess.Popen(["wrk", "-t2", "-c50", f"-d{int(self.seconds + 30)}s",
                                         self.nginx.url(self.path)], stdout=subprocess.DEVNULL)
            time.sleep(2)  # warm-up
            self.log = AccessLogCount(self.nginx)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def running(self):
        return self.wrk.poll() is None

    def switch(self, hooks, settle, reference=False):
        if self.reference:
            self.reference.set(reference)
        self.agent.set_hooks_paused(not hooks)
        time.sleep(settle)
        self.served()

    def served(self):
        before = self.log.total
        return self.log() - before

    def __exit__(self, *exc):
        if self.reference:
            self.reference.set(False)
        if self.wrk and self.wrk.poll() is None:
            self.wrk.terminate()
            self.wrk.wait()
        if self.agent:
            self.agent.stop()
        self.nginx.stop()
        return False


class AccessLogCount:
    """The requests a private nginx (loupe_e2e.Nginx) has logged since this object was made:
    calling it returns that total, reading only the lines added since the last call (the log
    grows by millions)."""

    def __init__(self, nginx):
        self.log = open(f"{nginx.work}/access.log", "rb")
        self.log.seek(0, os.SEEK_END)
        self.total = 0

    def __call__(self):
        while chunk := self.log.read(1 << 20):
            self.total += chunk.count(b"\n")
        return self.total


def nginx_pids(nginx):
    """nginx's master and worker processes."""
    master = nginx.proc.pid
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [master] + [int(p) for p in f.read().split()]


def cpu_seconds_of(pids):
    """User + system CPU seconds of these processes so far: a server's CPU per request is steadier
    than its throughput on a shared host, and it includes what tracing costs inside the server's
    own time (uprobe traps, sampling interrupts and the unwinding in them)."""
    return sum(proc_cpu_seconds(pid) for pid in pids)


class ReferenceTracer:
    """A bpftrace script run only in the phases that want it: `set(True)` starts it and returns
    once its probes are attached (the script prints "ready" in BEGIN), `set(False)` stops it (SIGINT) and waits for its exit, which
    detaches them."""

    def __init__(self, script):
        self.script, self.proc = script, None

    def set(self, on, timeout=30.0):
        if on and self.proc is None:
            self.proc = subprocess.Popen(["bpftrace", self.script], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
            deadline = time.time() + timeout
            while time.time() < deadline:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"bpftrace {self.script} exited before attaching")
                if line.strip() == "ready":  # the script's BEGIN, run once every probe is attached
                    return
            raise RuntimeError(f"bpftrace {self.script} did not attach within {timeout} s")
        if not on and self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.communicate(timeout=timeout)  # its maps, printed at exit: not needed
            except subprocess.TimeoutExpired:  # seen once in ~40 stops under load
                self.proc.kill()
                self.proc.communicate()
            self.proc = None
