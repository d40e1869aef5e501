#include "attribution/cgroup_limits.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "attribution/cgroup_container.h"

namespace loupe::attribution {
namespace {

namespace fs = std::filesystem;

// v1 reports "no limit" as a huge page-aligned number (LONG_MAX rounded down).
constexpr std::uint64_t kV1Unlimited = std::uint64_t{1} << 62;
// Searching for a cgroup by name (see directory_of) stops after this many directories.
constexpr int kMaxSearchedDirectories = 20'000;

std::optional<std::string> read_first_line(const fs::path& path) {
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line)) return std::nullopt;
    return line;
}

std::optional<std::int64_t> parse_int(std::string_view s) {
    std::int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
    return value;
}

void tighten(double& current, double candidate) {
    if (candidate > 0 && (current == 0 || candidate < current)) current = candidate;
}

void tighten(std::uint64_t& current, std::uint64_t candidate) {
    if (candidate > 0 && (current == 0 || candidate < current)) current = candidate;
}

// "50000 100000" (quota period) or "max 100000".
double v2_cpu_cores(const fs::path& dir) {
    const auto line = read_first_line(dir / "cpu.max");
    if (!line) return 0;
    const auto space = line->find(' ');
    if (space == std::string::npos) return 0;
    const auto quota = parse_int(std::string_view(*line).substr(0, space));
    const auto period = parse_int(std::string_view(*line).substr(space + 1));
    return quota && period && *quota > 0 && *period > 0
               ? static_cast<double>(*quota) / static_cast<double>(*period)
               : 0;
}

std::uint64_t v2_memory_bytes(const fs::path& dir) {
    const auto line = read_first_line(dir / "memory.max");
    const auto value = line ? parse_int(*line) : std::nullopt;  // "max" -> none
    return value && *value > 0 ? static_cast<std::uint64_t>(*value) : 0;
}

double v1_cpu_cores(const fs::path& dir) {
    const auto quota_line = read_first_line(dir / "cpu.cfs_quota_us");
    const auto period_line = read_first_line(dir / "cpu.cfs_period_us");
    const auto quota = quota_line ? parse_int(*quota_line) : std::nullopt;
    const auto period = period_line ? parse_int(*period_line) : std::nullopt;
    return quota && period && *quota > 0 && *period > 0
               ? static_cast<double>(*quota) / static_cast<double>(*period)
               : 0;
}

std::uint64_t v1_memory_bytes(const fs::path& dir) {
    const auto line = read_first_line(dir / "memory.limit_in_bytes");
    const auto value = line ? parse_int(*line) : std::nullopt;
    if (!value || *value <= 0 || static_cast<std::uint64_t>(*value) >= kV1Unlimited) return 0;
    return static_cast<std::uint64_t>(*value);
}

}  // namespace

CgroupLimitReader::CgroupLimitReader(const std::string& mountinfo_path) {
    // "36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory"
    std::ifstream in(mountinfo_path);
    std::string line;
    while (std::getline(in, line)) {
        const auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        std::istringstream before(line.substr(0, dash)), after(line.substr(dash + 3));
        std::string id, parent, devices, root, mount_point, fstype, source, options;
        before >> id >> parent >> devices >> root >> mount_point;
        after >> fstype >> source >> options;
        Mount mount{mount_point};
        if (fstype == "cgroup2") {
            mount.v2 = true;
        } else if (fstype == "cgroup") {
            std::istringstream opts(options);
            std::string opt;
            while (std::getline(opts, opt, ',')) {
                if (opt == "cpu") mount.cpu = true;
                if (opt == "memory") mount.memory = true;
            }
            if (!mount.cpu && !mount.memory) continue;
        } else {
            continue;
        }
        mounts_.push_back(std::move(mount));
    }
}

std::string CgroupLimitReader::directory_of(const Mount& mount,
                                            std::string_view cgroup_path) const {
    // Seen from the host's cgroup namespace the path is under the mount point as it is.
    std::string_view relative = cgroup_path;
    while (relative.starts_with("/"))
        relative.remove_prefix(1);
    if (!relative.starts_with("..")) {
        const fs::path direct = fs::path(mount.mount_point) / relative;
        std::error_code ec;
        return fs::is_directory(direct, ec) ? direct.string() : "";
    }
    // From another cgroup namespace (an agent pod without the host's) the path starts with
    // "/../.." and its prefix is unknown: find the cgroup by its own name, which holds the
    // container id and is therefore unique.
    const auto slash = relative.rfind('/');
    const std::string leaf(slash == std::string_view::npos ? relative : relative.substr(slash + 1));
    if (leaf.empty() || leaf == "..") return "";
    std::error_code ec;
    int searched = 0;
    for (fs::recursive_directory_iterator
             it(mount.mount_point, fs::directory_options::skip_permission_denied, ec),
         end;
         !ec && it != end; it.increment(ec)) {
        if (++searched > kMaxSearchedDirectories) break;
        if (!it->is_directory(ec)) {
            it.disable_recursion_pending();
            continue;
        }
        if (it->path().filename() == leaf) return it->path().string();
    }
    return "";
}

CgroupLimits CgroupLimitReader::read(std::string_view proc_cgroup_text) const {
    CgroupLimits limits;
    for (const auto& line : parse_proc_cgroup(proc_cgroup_text)) {
        for (const auto& mount : mounts_) {
            // v1: the line whose controller list names this hierarchy's controller.
            const bool matches =
                mount.v2 ? line.v2
                         : !line.v2 && std::any_of(line.controllers.begin(), line.controllers.end(),
                                                   [&](std::string_view name) {
                                                       return (name == "cpu" && mount.cpu) ||
                                                              (name == "memory" && mount.memory);
                                                   });
            if (!matches) continue;
            const std::string dir = directory_of(mount, line.path);
            if (dir.empty()) continue;
            // The effective limit is the tightest on the way up to the mount point.
            for (fs::path at = dir; at.string().size() >= mount.mount_point.size();
                 at = at.parent_path()) {
                if (mount.v2) {
                    tighten(limits.cpu_cores, v2_cpu_cores(at));
                    tighten(limits.memory_bytes, v2_memory_bytes(at));
                } else {
                    if (mount.cpu) tighten(limits.cpu_cores, v1_cpu_cores(at));
                    if (mount.memory) tighten(limits.memory_bytes, v1_memory_bytes(at));
                }
                if (at == at.parent_path()) break;
            }
        }
    }
    return limits;
}

}  // namespace loupe::attribution
