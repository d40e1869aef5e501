// Who a process is, as the metrics name it. Outside containers a service is its process name, as
// before. In a container the process's cgroup names the container; in a Kubernetes pod, the pod
// directory names the pod, namespace, container and owning workload, which becomes service_name.
//
// Each identity has a key, unique on the node, that the aggregation tables use as the service's
// name (and `loupe top` shows): "<name>" outside containers, "<namespace>/<pod>/<container>" in a
// known pod, "<name>@<container id prefix>" in other containers. labels_of(key) gives the
// OpenTelemetry resource labels the exporters put on its series.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "attribution/cgroup_container.h"
#include "attribution/cgroup_limits.h"
#include "attribution/pod_directory.h"

namespace loupe::attribution {

using Labels = std::vector<std::pair<std::string, std::string>>;

class ServiceIdentities {
  public:
    // Reads /proc/PID/cgroup; injectable so tests can feed recorded files.
    using CgroupReader = std::function<std::optional<std::string>(std::uint32_t pid)>;

    // With `limits`, the CPU and memory limits of containers are read too (see limits_of).
    explicit ServiceIdentities(CgroupReader read_cgroup = read_proc_cgroup,
                               std::size_t max_identities = 20'000,
                               std::shared_ptr<const CgroupLimitReader> limits = nullptr);

    // The key of the service process `pid` (whose configured name is `name`) belongs to.
    // (The reference is valid until the next call that changes the identities.)
    const std::string& key_for(std::uint32_t pid, const std::string& name);
    // Labels of a key, starting with service_name; null for a plain process name.
    const Labels* labels_of(const std::string& key) const;
    // service_name of a key (the key itself outside containers).
    std::string service_name_of(const std::string& key) const;
    // The CPU and memory limits of a container's key (zeros: none known, or not a container).
    // Refreshed whenever its processes are attributed again (a new pod list).
    CgroupLimits limits_of(const std::string& key) const;

    // A new view of this node's pods; processes are attributed again at their next lookup.
    void set_pods(std::shared_ptr<const PodDirectory> pods, std::string node_name);
    // Whether a container the directory does not know appeared since the last call: the pod
    // metadata source should refresh. Each container id is reported once, so a container that
    // is not a pod's (a `docker run` on the node) does not make the agent list pods again and
    // again; the periodic refresh still catches late pods.
    bool take_unknown_containers();
    // Forgets processes that are gone (their pids may be reused by someone else).
    void retain(const std::vector<std::uint32_t>& live_pids);
    // Forgets identities no series refers to any more (`in_use`) and no known process has, so
    // that pods coming and going over weeks never fill the cap.
    void retain_keys(const std::unordered_set<std::string>& in_use);

    std::size_t identities() const { return labels_.size(); }
    // Identities refused over the cap: their processes are attributed by name only.
    std::uint64_t identities_dropped() const { return identities_dropped_; }

    static std::optional<std::string> read_proc_cgroup(std::uint32_t pid);

  private:
    struct Process {
        std::string name;
        std::optional<ContainerRef> container;
        std::string cgroup_text;  // kept for containers: their limits are read again later
        std::uint64_t pods_version = 0;
        std::string key;
    };
    std::string resolve(const Process& process);

    CgroupReader read_cgroup_;
    std::size_t max_identities_;
    std::shared_ptr<const PodDirectory> pods_;
    std::string node_name_;
    std::uint64_t pods_version_ = 1;
    bool unknown_containers_ = false;
    std::unordered_set<std::string> unknown_reported_;  // container ids, bounded (see .cpp)
    std::unordered_map<std::uint32_t, Process> processes_;
    std::unordered_map<std::string, Labels> labels_;  // by key; immutable once made
    std::shared_ptr<const CgroupLimitReader> limit_reader_;
    std::unordered_map<std::string, CgroupLimits> limits_;  // by key, containers with limits
    std::uint64_t identities_dropped_ = 0;
};

}  // namespace loupe::attribution
