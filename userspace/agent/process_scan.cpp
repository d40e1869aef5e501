#include "agent/process_scan.h"

#include <dirent.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>

namespace loupe::agent {

std::vector<std::uint32_t> matching_tgids(const std::vector<std::uint32_t>& pids,
                                          const std::vector<std::string>& comms) {
    std::vector<std::uint32_t> out;
    if (comms.empty()) {
        out = pids;  // no need to walk /proc: the kernel ignores tgids that do not exist
        return out;
    }
    DIR* proc = ::opendir("/proc");
    if (!proc) return out;
    while (const dirent* entry = ::readdir(proc)) {
        std::uint32_t tgid = 0;
        const char* name = entry->d_name;
        const auto [end, ec] = std::from_chars(name, name + std::strlen(name), tgid);
        if (ec != std::errc() || *end != '\0') continue;
        if (!pids.empty() && std::find(pids.begin(), pids.end(), tgid) == pids.end()) continue;
        std::ifstream in(std::string("/proc/") + name + "/comm");
        std::string comm;
        if (!std::getline(in, comm)) continue;  // exited meanwhile
        if (std::find(comms.begin(), comms.end(), comm) != comms.end()) out.push_back(tgid);
    }
    ::closedir(proc);
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace loupe::agent
