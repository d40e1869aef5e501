#!/usr/bin/env python3
"""Memory resource metrics against /proc: loupe_mem allocates and touches 512 MiB and waits.

- process_memory_usage_bytes within 5 % of /proc/PID/status VmRSS, and
  process_memory_utilization_ratio = that / MemTotal; loupe_processes == 1.
- after the process frees the 512 MiB, the gauge follows it down (within 5 % of VmRSS again).
- node: system_memory_usage_bytes within 5 % of MemTotal - MemAvailable as sampled around the
  scrape, at least loupe_mem's RSS; system_memory_utilization_ratio = that / MemTotal."""
from loupe_e2e import (Agent, Workload, fail, meminfo_bytes, metric, proc_status_bytes, require_root,
                       time_limit)

import time

SIZE = 512 << 20

MEM = r"""
import sys
block = bytearray(int(sys.argv[1]))
for i in range(0, len(block), 4096):
    block[i] = 1
print("touched", flush=True)
sys.stdin.readline()
del block
print("freed", flush=True)
sys.stdin.readline()
"""


def node_used_range(seconds=1.2):
    """min and max of MemTotal - MemAvailable over the last `seconds` (the agent samples every 1 s)."""
    used = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        m = meminfo_bytes()
        used.append(m["MemTotal"] - m["MemAvailable"])
        time.sleep(0.05)
    return min(used), max(used)


def check_rss(agent, mem, total, phase):
    agent.settle(1.3)
    used_lo, used_hi = node_used_range()
    rss_before = proc_status_bytes(mem.pid, "VmRSS")
    samples = agent.metrics()
    rss_after = proc_status_bytes(mem.pid, "VmRSS")
    m = meminfo_bytes()
    used_lo, used_hi = min(used_lo, m["MemTotal"] - m["MemAvailable"]), max(used_hi, m["MemTotal"] - m["MemAvailable"])
    usage = metric(samples, "process_memory_usage_bytes", service_name="loupe_mem")
    ratio = metric(samples, "process_memory_utilization_ratio", service_name="loupe_mem")
    processes = metric(samples, "loupe_processes", service_name="loupe_mem")
    node_usage = metric(samples, "system_memory_usage_bytes")
    node_ratio = metric(samples, "system_memory_utilization_ratio")
    print(f"{phase}: agent {usage / 2**20:.1f} MiB (ratio {ratio:.5f}), VmRSS {rss_before / 2**20:.1f}.."
          f"{rss_after / 2**20:.1f} MiB; node agent {node_usage / 2**20:.0f} MiB (ratio {node_ratio:.4f}), "
          f"/proc/meminfo {used_lo / 2**20:.0f}..{used_hi / 2**20:.0f} MiB")
    if processes != 1:
        fail(f"{phase}: loupe_processes{{loupe_mem}} = {processes:g}, expected 1")
    rss = (rss_before + rss_after) / 2
    if abs(rss_after - rss_before) > 0.01 * rss:
        fail(f"{phase}: VmRSS of loupe_mem moved during the scrape ({rss_before} -> {rss_after}): no stable oracle")
    if abs(usage - rss) > 0.05 * rss:
        fail(f"{phase}: process_memory_usage_bytes{{loupe_mem}} = {usage:.0f}, VmRSS = {rss:.0f}")
    if abs(ratio * total - usage) > 0.01 * usage:
        fail(f"{phase}: process_memory_utilization_ratio {ratio:.6f} x MemTotal {total} != usage {usage:.0f}")
    if not 0.95 * used_lo <= node_usage <= 1.05 * used_hi:
        fail(f"{phase}: system_memory_usage_bytes = {node_usage:.0f}, MemTotal - MemAvailable was "
             f"{used_lo}..{used_hi} around the scrape")
    if node_usage < usage:
        fail(f"{phase}: system_memory_usage_bytes {node_usage:.0f} < loupe_mem's RSS {usage:.0f}")
    if abs(node_ratio * total - node_usage) > 0.01 * node_usage:
        fail(f"{phase}: system_memory_utilization_ratio {node_ratio:.5f} x MemTotal {total} != {node_usage:.0f}")
    return usage, rss


def main():
    require_root()
    time_limit(60)
    info = meminfo_bytes()
    total = info["MemTotal"]
    if info["MemAvailable"] < 2 * SIZE:
        fail(f"only {info['MemAvailable'] >> 20} MiB available: need {2 * SIZE >> 20} MiB for this test")
    agent = Agent()
    mem = None
    try:
        mem = Workload("loupe_mem", MEM, SIZE)
        if mem.readline() != "touched":
            fail("loupe_mem did not touch its memory")
        usage, rss = check_rss(agent, mem, total, "512 MiB touched")
        if rss < SIZE:
            fail(f"VmRSS of loupe_mem is {rss:.0f} < {SIZE}: the workload did not touch its memory")
        mem.send("free")
        if mem.readline() != "freed":
            fail("loupe_mem did not free its memory")
        usage_freed, rss_freed = check_rss(agent, mem, total, "freed")
        if rss_freed > SIZE / 4:
            fail(f"VmRSS of loupe_mem still {rss_freed:.0f} after freeing: the workload did not release its memory")
        mem.send("exit")
        mem.reap()
    finally:
        if mem:
            mem.kill()
    agent.stop()
    print(f"resources memory: ok (RSS {usage / 2**20:.1f} MiB vs VmRSS {rss / 2**20:.1f} MiB; after free "
          f"{usage_freed / 2**20:.1f} vs {rss_freed / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
