#include "capture/hook_set.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include "capture/tracefs.h"

namespace loupe::capture {
namespace {

// Uprobes attach to files, not to a kernel hook: their owner (TlsLibraries) attaches them.
bool is_uprobe(std::string_view section) {
    return section.starts_with("uprobe") || section.starts_with("uretprobe");
}

}  // namespace

std::string hook_name(const bpf_program* prog) {
    const std::string section = bpf_program__section_name(prog);
    const auto slash = section.find('/');
    return slash == std::string::npos ? section : section.substr(slash + 1);
}

void HookSet::select(bpf_object* obj, const std::vector<std::string>& disabled) {
    btf* vmlinux = nullptr;  // parsed only when a typed tracepoint needs it (tens of MB)
    std::optional<TracefsStatus> tracefs;  // looked for (and mounted) only for a classic one
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, obj) {
        if (!bpf_program__autoload(prog)) continue;  // left out by the caller
        const std::string section = bpf_program__section_name(prog);
        if (is_uprobe(section)) continue;  // attached per library by their owner
        const std::string name = hook_name(prog);
        bool present = true;
        if (section.starts_with("tp_btf/")) {
            if (!vmlinux) vmlinux = btf__load_vmlinux_btf();
            present = vmlinux && btf__find_by_name_kind(vmlinux, ("btf_trace_" + name).c_str(),
                                                        BTF_KIND_TYPEDEF) > 0;
        } else if (section.starts_with("tracepoint/")) {
            if (!tracefs) tracefs = ensure_tracefs();
            present = tracefs->available &&
                      ::access((tracefs->path + "/events/" + name).c_str(), F_OK) == 0;
        }
        if (!present) {
            bpf_program__set_autoload(prog, false);
            absent_.push_back(name);
        } else if (hook_disabled(disabled, name)) {
            bpf_program__set_autoload(prog, false);
            disabled_.push_back(name);
        }
    }
    btf__free(vmlinux);
    missing_ = absent_;
}

void HookSet::attach(bpf_object* obj) {
    missing_ = absent_;
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, obj) {
        if (!bpf_program__autoload(prog)) continue;
        if (is_uprobe(bpf_program__section_name(prog))) continue;
        if (std::find(linked_.begin(), linked_.end(), prog) != linked_.end()) continue;
        const std::string name = hook_name(prog);
        BpfLinkPtr link(bpf_program__attach(prog));
        if (!link) {
            spdlog::warn("cannot attach {}: {}", name, std::strerror(errno));
            missing_.push_back(name);
            continue;
        }
        links_.push_back(std::move(link));
        linked_.push_back(prog);
        attached_.push_back(name);
        const int fd = bpf_program__fd(prog);
        if (std::find(program_fds_.begin(), program_fds_.end(), fd) == program_fds_.end())
            program_fds_.push_back(fd);
    }
}

void HookSet::detach(const std::vector<std::string>& keep) {
    for (std::size_t i = links_.size(); i-- > 0;) {
        if (std::find(keep.begin(), keep.end(), attached_[i]) != keep.end()) continue;
        links_.erase(links_.begin() + static_cast<std::ptrdiff_t>(i));
        linked_.erase(linked_.begin() + static_cast<std::ptrdiff_t>(i));
        attached_.erase(attached_.begin() + static_cast<std::ptrdiff_t>(i));
    }
}

std::vector<std::string> HookSet::attached() const {
    std::vector<std::string> hooks;
    for (const auto& name : attached_)
        if (std::find(hooks.begin(), hooks.end(), name) == hooks.end()) hooks.push_back(name);
    return hooks;
}

std::uint64_t HookSet::recursion_misses() const {
    std::uint64_t total = 0;
    for (const int fd : program_fds_) {
        bpf_prog_info info{};
        __u32 length = sizeof(info);
        if (bpf_obj_get_info_by_fd(fd, &info, &length) == 0) total += info.recursion_misses;
    }
    return total;
}

}  // namespace loupe::capture
