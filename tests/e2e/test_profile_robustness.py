#!/usr/bin/env python3
"""loupe profile beyond the known split:
- kernel: a syscall-heavy process (dd, 1-byte reads and writes) shows kernel frames named from
  /proc/kallsyms (the read and write system calls' own functions) under its user frames;
- Go: a Go program's functions (main.spinHot called by main.spinCaller) are named, also when it
  is stripped (from .gopclntab);
- container: a static binary run by chroot in its own mount namespace (unshare -m), then deleted,
  is named (through /proc/PID/map_files: its path means nothing in loupe's namespace);
- exit: a process that exits mid-profile ends the profile early, cleanly, with its stacks named
  (its symbol tables were read while it lived);
- bad input: a pid that does not exist, a kernel thread, --frequency 0 and 100000, an unknown
  output extension: exit status 2 and a sentence saying what is wrong, before any sampling."""
import os
import subprocess
import tempfile
import time

from loupe_e2e import fail, require_root, require_tools

LOUPE = os.environ.get("LOUPE_BIN", "build/loupe")
HERE = os.path.dirname(os.path.abspath(__file__))


def profile(*args, timeout=40):
    r = subprocess.run([LOUPE, "profile", *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def folded_stacks(path):
    with open(path) as f:
        return [(line.rsplit(" ", 1)[0].split(";"), int(line.rsplit(" ", 1)[1])) for line in f]


def unused_pid():
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    for pid in range(pid_max - 1, 1, -1):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    fail("no free pid")


def check_bad_input(work):
    kthreadd = 2
    if "kthreadd" not in open(f"/proc/{kthreadd}/comm").read():
        fail("pid 2 is not kthreadd on this machine")
    me = str(os.getpid())
    cases = [
        (["--pid", str(unused_pid())], "no such process"),
        (["--pid", str(kthreadd)], "kernel thread"),
        (["--pid", me, "--frequency", "0"], "--frequency must be at least 1"),
        (["--pid", me, "--frequency", "100000"], "too high"),
        (["--pid", me, "--duration", "soon"], "--duration"),
        (["--pid", me, "--output", os.path.join(work, "p.txt")], "unknown format"),
        ([], "--pid N, --comm NAME or --service NAME"),
    ]
    for args, expected in cases:
        started = time.time()
        code, out, err = profile(*args, "--duration", "5s") if "--duration" not in args else profile(*args)
        if code != 2 or expected not in err:
            fail(f"loupe profile {' '.join(args)}: exit {code}, stderr {err!r}; expected 2 and {expected!r}")
        if time.time() - started > 3:
            fail(f"loupe profile {' '.join(args)} sampled before refusing")
        print(f"bad input {args}: {err.strip()}")


def profile_process(argv, work, name, seconds):
    """The folded stacks of `seconds` of the process started from argv, at 499 Hz."""
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        out = os.path.join(work, f"{name}.folded")
        code, _, err = profile("--pid", str(process.pid), "--duration", f"{seconds}s", "--frequency",
                               "499", "--output", out)
        if code != 0:
            fail(f"profile of {name}: {err}")
    finally:
        process.kill()
        process.wait()
    return folded_stacks(out)


def check_kernel_frames(work):
    stacks = profile_process(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=2000000000"], work,
                             "dd", 4)
    total = sum(c for _, c in stacks)
    kernel = [(frames, c) for frames, c in stacks if any(f.endswith("_[k]") for f in frames)]
    kernel_samples = sum(c for _, c in kernel)
    names = {f[:-4] for frames, _ in kernel for f in frames if f.endswith("_[k]")}
    kallsyms = {line.split()[2] for line in open("/proc/kallsyms") if len(line.split()) >= 3}
    unknown = {n for n in names if n not in kallsyms}
    print(f"dd: {total} samples, {kernel_samples} with kernel frames, e.g. {sorted(names)[:8]}")
    if total < 50 or kernel_samples < total * 0.3:
        fail(f"dd spends most of its time in system calls, yet {kernel_samples}/{total} samples have kernel frames")
    if unknown:
        fail(f"kernel frames not in /proc/kallsyms: {sorted(unknown)[:10]}")
    if not names & {"ksys_read", "ksys_write", "vfs_read", "vfs_write", "__x64_sys_read", "__x64_sys_write"}:
        fail(f"no read/write system call function among dd's kernel frames: {sorted(names)[:40]}")
    # Kernel frames sit above the user frames that made the system call.
    for frames, _ in kernel:
        first_kernel = next(i for i, f in enumerate(frames) if f.endswith("_[k]"))
        if any(not f.endswith("_[k]") for f in frames[first_kernel:]):
            fail(f"a user frame above a kernel frame: {frames}")


def check_go(work):
    """Built normally and stripped (-ldflags='-s -w': no .symtab, names from .gopclntab)."""
    env = dict(os.environ, GOCACHE=os.path.join(work, "gocache"), GOPATH=os.path.join(work, "gopath"),
               GO111MODULE="off")
    for build, flags in (("spin", []), ("spin-stripped", ["-ldflags=-s -w"])):
        binary = os.path.join(work, build)
        subprocess.run(["go", "build", *flags, "-o", binary, os.path.join(HERE, "profile", "spin.go")],
                       check=True, env=env, timeout=120)
        sections = subprocess.run(["readelf", "-S", "-W", binary], capture_output=True, text=True,
                                  check=True).stdout
        if (".symtab" in sections) == bool(flags):
            fail(f"{build}: .symtab {'kept' if flags else 'missing'}")
        stacks = profile_process([binary, "20"], work, build, 3)
        total = sum(c for _, c in stacks)
        hot = sum(c for frames, c in stacks if frames[-1] == "main.spinHot")
        chained = sum(c for frames, c in stacks if frames[-2:] == ["main.spinCaller", "main.spinHot"])
        print(f"go ({build}): {total} samples, main.spinHot {hot}, under main.spinCaller {chained}")
        if total < 100 or hot < 0.8 * total or chained < 0.95 * hot:
            fail(f"Go names missing in {build}: {stacks[:10]}")


def check_exit(work):
    binary = os.path.join(work, "split")
    subprocess.run(["clang", "-O2", "-fno-omit-frame-pointer", "-o", binary,
                    os.path.join(HERE, "profile", "split.c")], check=True)
    short = subprocess.Popen([binary, "2"])
    out = os.path.join(work, "exit.folded")
    started = time.time()
    code, _, err = profile("--pid", str(short.pid), "--duration", "10s", "--frequency", "499", "--output", out)
    elapsed = time.time() - started
    short.wait()
    if code != 0:
        fail(f"profile of an exiting process: exit {code}: {err}")
    if "exited" not in err or elapsed > 6:
        fail(f"the profile did not end when its process exited ({elapsed:.1f} s): {err}")
    stacks = folded_stacks(out)
    named = sum(c for frames, c in stacks if frames[-1] in ("burn_heavy", "burn_light"))
    total = sum(c for _, c in stacks)
    print(f"exit: ended after {elapsed:.1f} s, {named}/{total} samples in burn_*; {err.strip()}")
    if total < 50 or named < 0.9 * total:
        fail(f"stacks of the exited process not named: {stacks[:10]}")


def check_container(work):
    root = os.path.join(work, "root")
    os.makedirs(root)
    binary = os.path.join(root, "split-static")
    subprocess.run(["clang", "-O2", "-static", "-fno-omit-frame-pointer", "-o", binary,
                    os.path.join(HERE, "profile", "split.c")], check=True)
    # unshare and chroot exec in place: the pid is the workload's.
    contained = subprocess.Popen(["unshare", "--mount", "chroot", root, "/split-static", "20"])
    try:
        deadline = time.time() + 10
        while open(f"/proc/{contained.pid}/comm").read().strip() != "split-static":
            if time.time() > deadline:
                fail("the chrooted workload did not start")
            time.sleep(0.05)
        os.unlink(binary)  # now only the process holds it: "/split-static (deleted)"
        maps = open(f"/proc/{contained.pid}/maps").read()
        if "/split-static (deleted)" not in maps:
            fail(f"expected a deleted binary in the workload's maps:\n{maps}")
        out = os.path.join(work, "container.folded")
        code, _, err = profile("--pid", str(contained.pid), "--duration", "3s", "--frequency", "499", "--output", out)
        if code != 0:
            fail(f"profile of the chrooted process: {err}")
    finally:
        contained.kill()
        contained.wait()
    stacks = folded_stacks(out)
    total = sum(c for _, c in stacks)
    chained = sum(c for frames, c in stacks
                  if frames[-1] in ("burn_heavy", "burn_light") and frames[-3:-1] == ["main", "run_split"])
    print(f"container: {total} samples, {chained} named main;run_split;burn_*")
    if total < 100 or chained < 0.9 * total:
        fail(f"the chrooted, deleted binary is not symbolized: {stacks[:10]}")


def main():
    require_root()
    require_tools("clang", "go", "dd", "unshare", "chroot")
    work = tempfile.mkdtemp(prefix="loupe-profile-")
    check_bad_input(work)
    check_kernel_frames(work)
    check_exit(work)
    check_container(work)
    check_go(work)
    print("PASS")


if __name__ == "__main__":
    main()
