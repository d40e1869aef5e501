#!/usr/bin/env python3
"""Disk resource metrics against /proc/PID/io and the kernel's block-device counters, on a real block
device (/var/tmp if it is one, otherwise a 200 MB ext4 file system in a loop device):

(a) loupe_odirect writes 64 MiB with O_DIRECT in 1 MiB writes, reads it back with O_DIRECT, and
    stops itself. process_disk_io_bytes_total{write,read} within 5 % of /proc/PID/io
    write_bytes/read_bytes; loupe_process_disk_operations_total{write} and {read} at least 64 each
    (each synchronous 1 MiB direct I/O is at least one block request) and no more than all block
    devices completed meanwhile (/sys/block/*/stat); loupe_process_disk_io_duration_seconds has at
    least as many observations, of sane size.
(b) loupe_fsync writes 64 MiB through the page cache, fsyncs, and stops itself: write bytes within
    5 % of /proc/PID/io write_bytes; block write operations > 0 and no more than the devices did."""
import atexit
import os
import shutil
import subprocess
import tempfile

from loupe_e2e import Agent, Workload, fail, histogram, metric, proc_io, require_root, require_tools, time_limit

MIB = 64

ODIRECT = r"""
import mmap, os, signal, sys
path, mib = sys.argv[1], int(sys.argv[2])
buf = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT needs
buf.write(os.urandom(1 << 20))
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
for _ in range(mib):
    if os.write(fd, buf) != 1 << 20:
        sys.exit("short write")
os.close(fd)
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
read = 0
while True:
    n = os.readv(fd, [buf])
    if n == 0:
        break
    read += n
os.close(fd)
print("done", read, flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""

FSYNC = r"""
import os, signal, sys
path, mib = sys.argv[1], int(sys.argv[2])
chunk = os.urandom(1 << 20)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
for _ in range(mib):
    os.write(fd, chunk)
os.fsync(fd)
os.close(fd)
print("done", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""

BLOCK_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs"}


def mount_of(path):
    """(mount point, fs type, source, 'major:minor') of the file system holding `path`."""
    path = os.path.realpath(path)
    best = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields, rfields = left.split(), right.split()
            point = fields[4]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and (best is None or len(point) >= len(best[0])):
                best = (point, rfields[0], rfields[1], fields[2])
    return best


def device_ops():
    """(reads completed, writes completed) summed over every block device of the machine: a bound on
    what a process can have submitted (it also reads its own binaries and libraries, from any disk)."""
    reads = writes = 0
    for dev in os.listdir("/sys/block"):
        with open(f"/sys/block/{dev}/stat") as f:
            fields = [int(x) for x in f.read().split()]
        reads, writes = reads + fields[0], writes + fields[4]
    return reads, writes


class LoopFs:
    """A 200 MB ext4 file system in a loop device, mounted under a temporary directory."""

    def __init__(self):
        require_tools("mkfs.ext4", "losetup", "mount", "umount")
        self.work = tempfile.mkdtemp(prefix="loupe-disk-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
        self.image, self.mnt, self.dev = os.path.join(self.work, "img"), os.path.join(self.work, "mnt"), None
        atexit.register(self.remove)
        os.mkdir(self.mnt)
        subprocess.run(["truncate", "-s", "200M", self.image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", self.image], check=True)
        self.dev = subprocess.run(["losetup", "--find", "--show", self.image], check=True, capture_output=True,
                                  text=True).stdout.strip()
        subprocess.run(["mount", self.dev, self.mnt], check=True)

    def remove(self):
        if self.dev:
            subprocess.run(["umount", self.mnt], check=False)
            subprocess.run(["losetup", "-d", self.dev], check=False)
            self.dev = None
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    require_root()
    time_limit(120)
    loop = None
    base = "/var/tmp"
    mount = mount_of(base)
    if mount is None or mount[1] not in BLOCK_FS or not os.path.exists(f"/sys/dev/block/{mount[3]}"):
        print(f"{base} is on {mount}: using a loop device")
        loop = LoopFs()
        base = loop.mnt
        mount = mount_of(base)
    if mount[1] not in BLOCK_FS or not os.path.exists(f"/sys/dev/block/{mount[3]}"):
        fail(f"no block-device file system to test on: {mount}")
    print(f"file system: {mount[2]} ({mount[1]}, device {mount[3]}) at {mount[0]}")
    work = tempfile.mkdtemp(prefix="loupe-disk-files-", dir=base)
    agent = Agent()
    odirect = fsync = None
    try:
        reads0, writes0 = device_ops()
        odirect = Workload("loupe_odirect", ODIRECT, os.path.join(work, "odirect.bin"), MIB)
        line = odirect.readline(timeout=60)
        if line != f"done {MIB << 20}":
            fail(f"loupe_odirect: {line}")
        odirect.wait_stopped()
        fsync = Workload("loupe_fsync", FSYNC, os.path.join(work, "fsync.bin"), MIB)
        fsync.readline(timeout=60)
        fsync.wait_stopped()
        agent.settle(2.5)
        io = {w.comm: proc_io(w.pid) for w in (odirect, fsync)}
        samples = agent.metrics()
        reads1, writes1 = device_ops()
        device_reads, device_writes = reads1 - reads0, writes1 - writes0
        print(f"block devices completed {device_reads} reads, {device_writes} writes meanwhile")

        def check_bytes(service, direction):
            key = f"{direction}_bytes"
            expected = io[service][key]
            got = metric(samples, "process_disk_io_bytes_total", service_name=service, disk_io_direction=direction)
            print(f"{service} {direction}: agent {got:.0f} bytes, /proc/PID/io {key} {expected}")
            if expected < MIB << 20:
                fail(f"{service}: /proc/PID/io {key} is only {expected}: the workload did not do its I/O")
            if abs(got - expected) > 0.05 * expected:
                fail(f"process_disk_io_bytes_total{{{service},{direction}}} = {got:.0f}, /proc/PID/io {key} = {expected}")

        def ops(service, direction):
            return metric(samples, "loupe_process_disk_operations_total", service_name=service, disk_io_direction=direction)

        check_bytes("loupe_odirect", "write")
        check_bytes("loupe_odirect", "read")
        check_bytes("loupe_fsync", "write")

        odirect_writes, odirect_reads = ops("loupe_odirect", "write"), ops("loupe_odirect", "read")
        fsync_writes, fsync_reads = ops("loupe_fsync", "write"), ops("loupe_fsync", "read")
        print(f"block requests: loupe_odirect {odirect_writes:g} writes, {odirect_reads:g} reads; "
              f"loupe_fsync {fsync_writes:g} writes, {fsync_reads:g} reads")
        if not MIB <= odirect_writes <= device_writes:
            fail(f"loupe_process_disk_operations_total{{loupe_odirect,write}} = {odirect_writes:g}: {MIB} synchronous "
                 f"1 MiB direct writes need at least {MIB} requests, the block devices completed {device_writes}")
        if not MIB <= odirect_reads <= device_reads:
            fail(f"loupe_process_disk_operations_total{{loupe_odirect,read}} = {odirect_reads:g}: {MIB} synchronous "
                 f"1 MiB direct reads need at least {MIB} requests, the block devices completed {device_reads}")
        if not 0 < fsync_writes <= device_writes - odirect_writes:
            fail(f"loupe_process_disk_operations_total{{loupe_fsync,write}} = {fsync_writes:g} (the block devices completed "
                 f"{device_writes} writes, {odirect_writes:g} of them loupe_odirect's)")

        for service, least in (("loupe_odirect", odirect_writes + odirect_reads), ("loupe_fsync", fsync_writes + fsync_reads)):
            buckets, count, total = histogram(samples, "loupe_process_disk_io_duration_seconds", service_name=service)
            mean = total / count if count else 0
            print(f"{service} block latency: {count:g} observations, mean {mean * 1e3:.3f} ms")
            if count < least:
                fail(f"loupe_process_disk_io_duration_seconds_count{{{service}}} = {count:g} < {least:g} block requests")
            if buckets[-1][1] != count:
                fail(f"{service}: +Inf bucket {buckets[-1][1]:g} != _count {count:g}")
            if not 1e-6 <= mean <= 1.0:
                fail(f"loupe_process_disk_io_duration_seconds{{{service}}}: mean {mean:g} s per request")
    finally:
        for w in (odirect, fsync):
            if w:
                w.kill()
        shutil.rmtree(work, ignore_errors=True)
        if loop:
            loop.remove()
    agent.stop()
    print(f"resources disk: ok (odirect {odirect_writes:g} write / {odirect_reads:g} read requests, "
          f"fsync {fsync_writes:g} write requests; bytes within 5 % of /proc/PID/io)")


if __name__ == "__main__":
    main()
