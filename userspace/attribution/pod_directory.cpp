#include "attribution/pod_directory.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

namespace loupe::attribution {
namespace {

using nlohmann::json;

std::string string_at(const json& object, const char* key) {
    const auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// The workload a pod belongs to, as `kubectl` users name it: a ReplicaSet made by a Deployment
// is "<deployment>-<pod-template-hash>", a Job made by a CronJob is "<cronjob>-<minutes>".
void set_workload(const json& metadata, PodContainer& pod) {
    pod.workload_kind = "Pod";
    pod.workload_name = pod.pod_name;
    const auto owners = metadata.find("ownerReferences");
    if (owners == metadata.end() || !owners->is_array() || owners->empty()) return;
    const json* owner = &owners->front();
    for (const auto& candidate : *owners) {
        const auto controller =
            candidate.is_object() ? candidate.find("controller") : candidate.end();
        if (controller != candidate.end() && controller->is_boolean() && controller->get<bool>())
            owner = &candidate;
    }
    if (!owner->is_object()) return;
    std::string kind = string_at(*owner, "kind");
    std::string name = string_at(*owner, "name");
    if (kind.empty() || name.empty()) return;
    if (kind == "Node") return;  // a static (mirror) pod: the pod is the workload
    if (kind == "ReplicaSet") {
        std::string hash;
        if (const auto labels = metadata.find("labels"); labels != metadata.end())
            hash = string_at(*labels, "pod-template-hash");
        if (!hash.empty() && name.size() > hash.size() + 1 && name.ends_with("-" + hash)) {
            kind = "Deployment";
            name.resize(name.size() - hash.size() - 1);
        }
    } else if (kind == "Job") {
        const auto dash = name.rfind('-');
        if (dash != std::string::npos && dash > 0 && name.size() - dash - 1 >= 8 &&
            all_digits(std::string_view(name).substr(dash + 1))) {
            kind = "CronJob";
            name.resize(dash);
        }
    }
    pod.workload_kind = std::move(kind);
    pod.workload_name = std::move(name);
}

}  // namespace

std::string strip_runtime_scheme(std::string_view container_id) {
    const auto at = container_id.find("://");
    return std::string(at == std::string_view::npos ? container_id : container_id.substr(at + 3));
}

std::string PodDirectory::load_pod_list(std::string_view text) {
    const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return "not JSON";
    if (!doc.is_object() || !doc.contains("items") || !doc["items"].is_array())
        return "not a PodList (no items array)";
    for (const auto& item : doc["items"]) {
        if (!item.is_object() || !item.contains("metadata") || !item["metadata"].is_object()) {
            ++skipped_;
            continue;
        }
        const json& metadata = item["metadata"];
        PodContainer pod;
        pod.pod_uid = string_at(metadata, "uid");
        pod.pod_name = string_at(metadata, "name");
        pod.namespace_name = string_at(metadata, "namespace");
        if (pod.pod_uid.empty() || pod.pod_name.empty()) {
            ++skipped_;
            continue;
        }
        if (const auto spec = item.find("spec"); spec != item.end() && spec->is_object())
            pod.node_name = string_at(*spec, "nodeName");
        set_workload(metadata, pod);
        if (pods_.size() >= max_containers_) {
            ++skipped_;
            continue;
        }
        pods_[pod.pod_uid] = pod;
        const auto status = item.find("status");
        if (status == item.end() || !status->is_object()) continue;
        for (const char* list :
             {"containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"}) {
            const auto statuses = status->find(list);
            if (statuses == status->end() || !statuses->is_array()) continue;
            for (const auto& container : *statuses) {
                if (!container.is_object()) continue;
                const std::string id = strip_runtime_scheme(string_at(container, "containerID"));
                if (id.empty()) continue;  // not started yet
                if (containers_.size() >= max_containers_) {
                    ++skipped_;
                    continue;
                }
                PodContainer entry = pod;
                entry.container_name = string_at(container, "name");
                containers_[id] = std::move(entry);
            }
        }
    }
    return "";
}

const PodContainer* PodDirectory::find_container(const std::string& container_id) const {
    const auto it = containers_.find(container_id);
    return it == containers_.end() ? nullptr : &it->second;
}

const PodContainer* PodDirectory::find_pod(const std::string& pod_uid) const {
    const auto it = pods_.find(pod_uid);
    return it == pods_.end() ? nullptr : &it->second;
}

}  // namespace loupe::attribution
