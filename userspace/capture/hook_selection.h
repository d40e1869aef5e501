// Hooks the user turned off (--disable-hooks): to shed the cost of a hook whose figures they do
// not need. Names are those /api/v1/agent lists: "sched_switch", "syscalls/sys_enter_write", or
// just "sys_enter_write".
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace loupe::capture {

inline bool hook_disabled(const std::vector<std::string>& disabled, const std::string& hook) {
    return std::any_of(disabled.begin(), disabled.end(), [&](const std::string& name) {
        return name == hook || (hook.size() > name.size() && hook.ends_with("/" + name));
    });
}

}  // namespace loupe::capture
