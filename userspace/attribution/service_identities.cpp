#include "attribution/service_identities.h"

#include "util/read_file.h"

namespace loupe::attribution {
namespace {

constexpr std::size_t kShortIdLength = 12;  // as `docker ps` and `crictl ps` show ids
constexpr std::size_t kMaxUnknownReported = 10'000;

}  // namespace

ServiceIdentities::ServiceIdentities(CgroupReader read_cgroup, std::size_t max_identities,
                                     std::shared_ptr<const CgroupLimitReader> limits)
    : read_cgroup_(std::move(read_cgroup)),
      max_identities_(max_identities),
      limit_reader_(std::move(limits)) {}

std::optional<std::string> ServiceIdentities::read_proc_cgroup(std::uint32_t pid) {
    return util::read_file("/proc/" + std::to_string(pid) + "/cgroup");
}

std::string ServiceIdentities::resolve(const Process& process) {
    if (!process.container) return process.name;
    const ContainerRef& ref = *process.container;
    const PodContainer* pod = nullptr;
    if (pods_) {
        pod = pods_->find_container(ref.container_id);
        if (!pod && !ref.pod_uid.empty()) pod = pods_->find_pod(ref.pod_uid);
    }
    if (!pod && !unknown_reported_.contains(ref.container_id)) {
        if (unknown_reported_.size() >= kMaxUnknownReported) unknown_reported_.clear();
        unknown_reported_.insert(ref.container_id);
        unknown_containers_ = true;
    }
    Labels labels;
    std::string key;
    if (pod) {
        const std::string& container =
            pod->container_name.empty() ? process.name : pod->container_name;
        key = pod->namespace_name + "/" + pod->pod_name + "/" + container;
        labels = {{"service_name", pod->workload_name},
                  {"container_id", ref.container_id},
                  {"k8s_namespace_name", pod->namespace_name},
                  {"k8s_pod_name", pod->pod_name}};
        if (!pod->container_name.empty())
            labels.emplace_back("k8s_container_name", pod->container_name);
        const std::string& node = pod->node_name.empty() ? node_name_ : pod->node_name;
        if (!node.empty()) labels.emplace_back("k8s_node_name", node);
    } else {
        key = process.name + "@" + ref.container_id.substr(0, kShortIdLength);
        labels = {{"service_name", process.name}, {"container_id", ref.container_id}};
    }
    if (!labels_.contains(key)) {
        if (labels_.size() >= max_identities_) {
            ++identities_dropped_;
            return process.name;
        }
        labels_.emplace(key, std::move(labels));
    }
    if (limit_reader_) {
        const CgroupLimits limits = limit_reader_->read(process.cgroup_text);
        if (limits.cpu_cores > 0 || limits.memory_bytes > 0)
            limits_[key] = limits;
        else
            limits_.erase(key);
    }
    return key;
}

const std::string& ServiceIdentities::key_for(std::uint32_t pid, const std::string& name) {
    auto [it, inserted] = processes_.try_emplace(pid);
    Process& process = it->second;
    if (inserted) {
        if (const auto text = read_cgroup_(pid)) {
            process.container = container_of_proc_cgroup(*text);
            if (process.container) process.cgroup_text = *text;
        }
    } else if (process.name == name && process.pods_version == pods_version_) {
        return process.key;  // the hot path: one lookup per request
    }
    process.name = name;
    process.pods_version = pods_version_;
    process.key = resolve(process);
    return process.key;
}

const Labels* ServiceIdentities::labels_of(const std::string& key) const {
    const auto it = labels_.find(key);
    return it == labels_.end() ? nullptr : &it->second;
}

std::string ServiceIdentities::service_name_of(const std::string& key) const {
    const Labels* labels = labels_of(key);
    return labels ? labels->front().second : key;
}

CgroupLimits ServiceIdentities::limits_of(const std::string& key) const {
    const auto it = limits_.find(key);
    return it == limits_.end() ? CgroupLimits{} : it->second;
}

void ServiceIdentities::set_pods(std::shared_ptr<const PodDirectory> pods, std::string node_name) {
    pods_ = std::move(pods);
    node_name_ = std::move(node_name);
    ++pods_version_;
}

bool ServiceIdentities::take_unknown_containers() {
    return std::exchange(unknown_containers_, false);
}

void ServiceIdentities::retain_keys(const std::unordered_set<std::string>& in_use) {
    std::unordered_set<std::string> of_processes;
    for (const auto& [pid, process] : processes_)
        of_processes.insert(process.key);
    std::erase_if(labels_, [&](const auto& entry) {
        return !in_use.contains(entry.first) && !of_processes.contains(entry.first);
    });
    std::erase_if(limits_, [&](const auto& entry) { return !labels_.contains(entry.first); });
}

void ServiceIdentities::retain(const std::vector<std::uint32_t>& live_pids) {
    const std::unordered_set<std::uint32_t> live(live_pids.begin(), live_pids.end());
    std::erase_if(processes_, [&](const auto& entry) { return !live.contains(entry.first); });
}

}  // namespace loupe::attribution
