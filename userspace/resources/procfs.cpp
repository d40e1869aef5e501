#include "resources/procfs.h"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <sstream>

#include "util/read_file.h"

namespace loupe::resources {
namespace {

constexpr std::uint64_t kPfKthread = 0x00200000;

// Empty when unreadable: a process that exited between listing /proc and reading it.
std::string slurp(const std::string& path) {
    return util::read_file(path).value_or(std::string());
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
    while (!text.empty() && text.front() == ' ')
        text.remove_prefix(1);
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && ptr != text.data();
}

bool is_partition_or_virtual(const std::string& dev) {
    if (dev.rfind("loop", 0) == 0 || dev.rfind("ram", 0) == 0 || dev.rfind("zram", 0) == 0)
        return true;
    // sda1, vdb2, nvme0n1p1, mmcblk0p1: partitions of a device also listed.
    if (dev.rfind("nvme", 0) == 0 || dev.rfind("mmcblk", 0) == 0)
        return dev.find('p', 4) != std::string::npos;
    return !dev.empty() && std::isdigit(static_cast<unsigned char>(dev.back()));
}

}  // namespace

ProcFs::ProcFs(std::string root)
    : root_(std::move(root)),
      ticks_per_second_(::sysconf(_SC_CLK_TCK)),
      page_size_(::sysconf(_SC_PAGESIZE)) {}

std::optional<ProcessSample> ProcFs::parse_stat(std::uint32_t pid, const std::string& stat,
                                                long ticks_per_second, long page_size,
                                                bool* kernel_thread) {
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
    const auto open = stat.find('(');
    const auto close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open)
        return std::nullopt;
    ProcessSample s;
    s.pid = pid;
    s.comm = stat.substr(open + 1, close - open - 1);
    std::istringstream rest(stat.substr(close + 1));
    std::string field;
    std::uint64_t flags = 0, utime = 0, stime = 0, rss_pages = 0;
    // Fields after comm are numbered from 3 (state) as in proc(5).
    for (int index = 3; rest >> field && index <= 24; ++index) {
        if (index == 9) parse_u64(field, flags);
        if (index == 14) parse_u64(field, utime);
        if (index == 15) parse_u64(field, stime);
        if (index == 24) parse_u64(field, rss_pages);
    }
    if (kernel_thread) *kernel_thread = (flags & kPfKthread) != 0;
    const std::uint64_t ticks = utime + stime;
    s.cpu_ns = ticks_per_second > 0
                   ? ticks * (1'000'000'000ull / static_cast<std::uint64_t>(ticks_per_second))
                   : 0;
    s.rss_bytes = rss_pages * static_cast<std::uint64_t>(page_size);
    return s;
}

void ProcFs::parse_io(const std::string& io, ProcessSample& sample) {
    std::istringstream in(io);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("read_bytes:", 0) == 0)
            parse_u64(std::string_view(line).substr(11), sample.io_read_bytes);
        if (line.rfind("write_bytes:", 0) == 0)
            parse_u64(std::string_view(line).substr(12), sample.io_write_bytes);
    }
}

std::optional<ProcessSample> ProcFs::process(std::uint32_t pid) const {
    const std::string dir = root_ + "/" + std::to_string(pid);
    bool kernel_thread = false;
    auto sample =
        parse_stat(pid, slurp(dir + "/stat"), ticks_per_second_, page_size_, &kernel_thread);
    if (!sample || kernel_thread) return std::nullopt;
    parse_io(slurp(dir + "/io"), *sample);
    return sample;
}

std::vector<ProcessSample> ProcFs::processes() const {
    std::vector<ProcessSample> out;
    DIR* dir = ::opendir(root_.c_str());
    if (!dir) return out;
    while (const dirent* entry = ::readdir(dir)) {
        std::uint32_t pid = 0;
        const char* name = entry->d_name;
        const auto [end, ec] = std::from_chars(name, name + std::strlen(name), pid);
        if (ec != std::errc() || *end != '\0') continue;
        if (auto sample = process(pid)) out.push_back(std::move(*sample));
    }
    ::closedir(dir);
    return out;
}

NodeSample ProcFs::node() const {
    NodeSample n;
    {
        std::istringstream stat(slurp(root_ + "/stat"));
        std::string line;
        while (std::getline(stat, line)) {
            if (line.rfind("cpu ", 0) == 0) {
                std::istringstream fields(line.substr(4));
                std::uint64_t v = 0, total = 0, idle = 0;
                for (int i = 0; i < 8 && fields >> v;
                     ++i) {  // user nice system idle iowait irq softirq steal
                    total += v;
                    if (i == 3 || i == 4) idle += v;
                }
                n.cpu_total_ticks = total;
                n.cpu_busy_ticks = total - idle;
            } else if (line.rfind("cpu", 0) == 0) {
                ++n.cpus;
            }
        }
    }
    {
        std::istringstream meminfo(slurp(root_ + "/meminfo"));
        std::string key;
        std::uint64_t kb = 0;
        std::string unit;
        while (meminfo >> key >> kb) {
            if (key == "MemTotal:") n.mem_total_bytes = kb * 1024;
            if (key == "MemAvailable:") n.mem_available_bytes = kb * 1024;
            std::getline(meminfo, unit);
        }
    }
    {
        std::istringstream diskstats(slurp(root_ + "/diskstats"));
        std::string line;
        while (std::getline(diskstats, line)) {
            std::istringstream f(line);
            std::string major, minor, dev;
            std::uint64_t v[11] = {};
            f >> major >> minor >> dev;
            for (auto& x : v)
                f >> x;
            if (!f || is_partition_or_virtual(dev)) continue;
            // Fields: reads, merged, sectors read, ms, writes, merged, sectors written, ms,
            // in flight, io_ticks ms, weighted ms. Sectors are 512 bytes.
            n.disks[dev] = DiskCounters{v[9], v[2] * 512, v[6] * 512};
        }
    }
    {
        // /proc/net is the reader's network namespace: in a pod that is the pod's. PID 1's is the
        // node's when the agent shares the host's PID namespace (hostPID: true in the DaemonSet).
        std::string text = slurp(root_ + "/1/net/dev");
        if (text.empty()) text = slurp(root_ + "/net/dev");
        std::istringstream netdev(text);
        std::string line;
        while (std::getline(netdev, line)) {
            const auto colon = line.find(':');
            if (colon == std::string::npos) continue;  // the two header lines
            std::string name = line.substr(0, colon);
            name.erase(0, name.find_first_not_of(' '));
            std::istringstream f(line.substr(colon + 1));
            std::uint64_t v[9] = {};
            for (auto& x : v)
                f >> x;
            if (f) n.interfaces[name] = NetCounters{v[0], v[8]};
        }
    }
    return n;
}

}  // namespace loupe::resources
