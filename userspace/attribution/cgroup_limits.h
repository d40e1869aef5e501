// The CPU and memory limits a container runs under, read from its cgroup (cgroup v2 cpu.max and
// memory.max, or v1 cpu.cfs_quota_us/cpu.cfs_period_us and memory.limit_in_bytes). "CPU above 75 %"
// of a pod means of its limit, not of the node.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loupe::attribution {

struct CgroupLimits {
    double cpu_cores = 0;            // 0: no CPU quota
    std::uint64_t memory_bytes = 0;  // 0: no memory limit
};

class CgroupLimitReader {
  public:
    // Finds the cgroup mounts in `mountinfo` (normally /proc/self/mountinfo).
    explicit CgroupLimitReader(const std::string& mountinfo_path = "/proc/self/mountinfo");

    // The tightest limits on the cgroup of a process (its own and its ancestors': a pod's limit
    // covers its containers), from the text of /proc/PID/cgroup.
    CgroupLimits read(std::string_view proc_cgroup_text) const;

    struct Mount {
        std::string mount_point;
        bool v2 = false;
        bool cpu = false;     // v1 hierarchy with the cpu controller
        bool memory = false;  // v1 hierarchy with the memory controller
    };
    const std::vector<Mount>& mounts() const { return mounts_; }

  private:
    // The directory of `cgroup_path` under `mount`, or "" when it cannot be found.
    std::string directory_of(const Mount& mount, std::string_view cgroup_path) const;

    std::vector<Mount> mounts_;
};

}  // namespace loupe::attribution
