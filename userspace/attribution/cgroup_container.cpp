#include "attribution/cgroup_container.h"

#include <algorithm>
#include <array>
#include <vector>

namespace loupe::attribution {
namespace {

constexpr std::size_t kContainerIdLength = 64;

bool is_hex_id(std::string_view s) {
    return s.size() == kContainerIdLength && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

bool consume_prefix(std::string_view& s, std::string_view prefix) {
    if (!s.starts_with(prefix)) return false;
    s.remove_prefix(prefix.size());
    return true;
}

bool consume_suffix(std::string_view& s, std::string_view suffix) {
    if (!s.ends_with(suffix)) return false;
    s.remove_suffix(suffix.size());
    return true;
}

// "cri-containerd-<id>.scope", "crio-<id>.scope", "docker-<id>.scope" (systemd driver), "crio-<id>"
// (cgroupfs driver), or a bare "<id>" (containerd and Docker with the cgroupfs driver).
std::optional<ContainerRef> container_of_segment(std::string_view segment) {
    struct Layout {
        std::string_view prefix;
        const char* runtime;
    };
    // conmon (CRI-O's monitor) lives in "crio-conmon-<id>.scope": not the container itself.
    if (segment.starts_with("crio-conmon-")) return std::nullopt;
    constexpr std::array<Layout, 4> layouts = {{{"cri-containerd-", "containerd"},
                                                {"crio-", "cri-o"},
                                                {"docker-", "docker"},
                                                {"libpod-", "podman"}}};
    std::string_view id = segment;
    consume_suffix(id, ".scope");
    for (const auto& layout : layouts) {
        std::string_view candidate = id;
        if (consume_prefix(candidate, layout.prefix) && is_hex_id(candidate))
            return ContainerRef{std::string(candidate), layout.runtime, {}};
    }
    if (segment.size() == kContainerIdLength && is_hex_id(segment))
        return ContainerRef{std::string(segment), "", {}};
    return std::nullopt;
}

// "kubepods-burstable-pod<uid with _>.slice" (systemd driver) or "pod<uid>" (cgroupfs driver).
std::optional<std::string> pod_uid_of_segment(std::string_view segment) {
    std::string_view s = segment;
    if (consume_suffix(s, ".slice")) {
        const auto at = s.rfind("-pod");
        if (at == std::string_view::npos || !s.starts_with("kubepods")) return std::nullopt;
        std::string uid(s.substr(at + 4));
        std::replace(uid.begin(), uid.end(), '_', '-');
        return uid.size() == 36 ? std::optional(uid) : std::nullopt;
    }
    if (consume_prefix(s, "pod") && s.size() == 36) return std::string(s);
    return std::nullopt;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    while (!s.empty()) {
        const auto at = s.find(sep);
        parts.push_back(s.substr(0, at));
        if (at == std::string_view::npos) break;
        s.remove_prefix(at + 1);
    }
    return parts;
}

}  // namespace

std::optional<ContainerRef> container_of_cgroup_path(std::string_view path) {
    const auto segments = split(path, '/');
    std::optional<std::string> pod_uid;
    bool in_kubepods = false;
    // The innermost container segment wins: a container's own sub-cgroups (systemd inside a
    // container, "init.scope") sit below it.
    std::optional<ContainerRef> found;
    for (const auto segment : segments) {
        if (segment.starts_with("kubepods")) in_kubepods = true;
        if (in_kubepods && !found)
            if (auto uid = pod_uid_of_segment(segment)) pod_uid = std::move(uid);
        if (auto ref = container_of_segment(segment)) found = std::move(ref);
    }
    if (!found) return std::nullopt;
    if (pod_uid) found->pod_uid = *pod_uid;
    return found;
}

std::vector<ProcCgroupLine> parse_proc_cgroup(std::string_view text) {
    std::vector<ProcCgroupLine> lines;
    for (const auto line : split(text, '\n')) {
        const auto first = line.find(':');
        if (first == std::string_view::npos) continue;
        const auto second = line.find(':', first + 1);
        if (second == std::string_view::npos) continue;
        ProcCgroupLine parsed;
        parsed.controllers = split(line.substr(first + 1, second - first - 1), ',');
        parsed.v2 = line.substr(0, first) == "0" && parsed.controllers.empty();
        parsed.path = line.substr(second + 1);
        lines.push_back(std::move(parsed));
    }
    return lines;
}

std::optional<ContainerRef> container_of_proc_cgroup(std::string_view text) {
    const auto lines = parse_proc_cgroup(text);
    for (const auto& line : lines)
        if (line.v2)
            if (auto ref = container_of_cgroup_path(line.path)) return ref;
    for (const auto& line : lines)
        if (!line.v2)
            if (auto ref = container_of_cgroup_path(line.path)) return ref;
    return std::nullopt;
}

}  // namespace loupe::attribution
