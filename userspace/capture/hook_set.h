// The hooks of one BPF object: which of its programs this kernel and the user allow, and the links
// of those attached. SocketCapture and ResourceCapture load through it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "capture/bpf_handles.h"

struct bpf_object;
struct bpf_program;

namespace loupe::capture {

// A program's hook: its section without the attach type, "syscalls/sys_enter_read" for
// "tracepoint/syscalls/sys_enter_read", "sched_switch" for "tp_btf/sched_switch".
std::string hook_name(const bpf_program* prog);

// Whether a --disable-hooks name means `hook`: its whole name, or its last part
// ("sys_enter_write" for "syscalls/sys_enter_write").
inline bool hook_named(const std::string& name, const std::string& hook) {
    return name == hook || (hook.size() > name.size() && hook.ends_with("/" + name));
}

// Whether the user turned a hook off (--disable-hooks).
inline bool hook_disabled(const std::vector<std::string>& disabled, const std::string& hook) {
    return std::any_of(disabled.begin(), disabled.end(),
                       [&](const std::string& name) { return hook_named(name, hook); });
}

class HookSet {
  public:
    // Before the object loads: a program whose hook this kernel lacks (tp_btf: no such typed
    // tracepoint in the kernel's BTF; tracepoint: not in tracefs, which is mounted only for
    // these) is not loaded and is listed as missing, so one absent hook does not fail the whole
    // object; one the user disabled is not loaded either, and is listed as disabled.
    void select(bpf_object* obj, const std::vector<std::string>& disabled);
    // After it loaded: attaches every loaded program not attached yet (all of them at first, the
    // detached ones when a pause ends); one the kernel refuses is logged and listed as missing.
    void attach(bpf_object* obj);
    // Detaches every program: before the maps and ring buffers they write to go away, or to pause
    // (the programs stay loaded and their maps keep what they hold). `keep`: hooks left attached.
    void detach(const std::vector<std::string>& keep = {});

    // Runs of the attached programs the kernel skipped because the same program was already
    // running on that CPU (interrupted by an interrupt that hit its hook again): each is an event
    // lost without any map of ours seeing it.
    std::uint64_t recursion_misses() const;

    bool empty() const { return links_.empty(); }
    // The hooks with a program attached, each named once (a hook may have several programs).
    std::vector<std::string> attached() const;
    const std::vector<std::string>& missing() const { return missing_; }
    const std::vector<std::string>& disabled() const { return disabled_; }

  private:
    std::vector<BpfLinkPtr> links_;           // in step with linked_ and attached_
    std::vector<const bpf_program*> linked_;  // one hook may have several programs
    std::vector<std::string> attached_;
    std::vector<int> program_fds_;      // of the programs ever attached; owned by the object
    std::vector<std::string> missing_;  // absent_, and the ones the kernel refused to attach
    std::vector<std::string> absent_;   // hooks this kernel lacks (select)
    std::vector<std::string> disabled_;
};

}  // namespace loupe::capture
