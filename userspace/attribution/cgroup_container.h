// Which container a process runs in, read from its cgroup path: the layouts containerd, CRI-O,
// Docker and the kubelet (systemd and cgroupfs drivers, cgroup v1 and v2) create.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loupe::attribution {

struct ContainerRef {
    std::string container_id;  // 64 hex digits, as the runtime and the pod status name it
    std::string runtime;       // "containerd", "cri-o", "docker", or "" when the path does not say
    std::string pod_uid;       // with dashes, "" outside a kubelet pod cgroup
};

// The container of one cgroup path ("/kubepods.slice/.../cri-containerd-<id>.scope"). A path
// seen from another cgroup namespace may start with "/../.."; only its segments matter.
std::optional<ContainerRef> container_of_cgroup_path(std::string_view path);

// One line of /proc/PID/cgroup, "hierarchy-ID:controller-list:cgroup-path".
struct ProcCgroupLine {
    bool v2 = false;                            // "0::<path>": the unified hierarchy
    std::vector<std::string_view> controllers;  // v1: "cpu", "cpuacct", "name=systemd", ...
    std::string_view path;                      // may itself contain ':'
};

// The lines of /proc/PID/cgroup (views into `text`); malformed lines are skipped.
std::vector<ProcCgroupLine> parse_proc_cgroup(std::string_view text);

// The container of a process, from the text of /proc/PID/cgroup: the cgroup v2 line ("0::") first,
// then the v1 hierarchies in file order, so hybrid and v1-only hosts are read alike.
std::optional<ContainerRef> container_of_proc_cgroup(std::string_view proc_cgroup_text);

}  // namespace loupe::attribution
