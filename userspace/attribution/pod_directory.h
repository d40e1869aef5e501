// This node's pods, from a Kubernetes PodList (the API server's /api/v1/pods and the kubelet's
// /pods answer the same document): container id -> pod, namespace, container and workload names.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

namespace loupe::attribution {

struct PodContainer {
    std::string pod_uid;
    std::string pod_name;
    std::string namespace_name;
    std::string container_name;  // "" when found by pod uid only
    std::string node_name;
    // The owning workload (Deployment, StatefulSet, DaemonSet, Job, CronJob, ...); the pod itself
    // when nothing owns it.
    std::string workload_kind;
    std::string workload_name;
};

class PodDirectory {
  public:
    // Containers past this many are not indexed (a node runs at most a few hundred pods).
    explicit PodDirectory(std::size_t max_containers = 20'000) : max_containers_(max_containers) {}

    // Indexes a PodList. Returns an error message, or "" on success; a malformed pod is skipped.
    std::string load_pod_list(std::string_view json);

    const PodContainer* find_container(const std::string& container_id) const;
    // The pod (without a container name) of a pod uid, for containers not in its status yet.
    const PodContainer* find_pod(const std::string& pod_uid) const;

    std::size_t pods() const { return pods_.size(); }
    std::size_t containers() const { return containers_.size(); }
    std::size_t skipped() const { return skipped_; }

  private:
    std::size_t max_containers_;
    std::unordered_map<std::string, PodContainer> containers_;  // by container id
    std::unordered_map<std::string, PodContainer> pods_;        // by pod uid
    std::size_t skipped_ = 0;
};

// "containerd://<id>", "cri-o://<id>", "docker://<id>" -> "<id>".
std::string strip_runtime_scheme(std::string_view container_id);

}  // namespace loupe::attribution
