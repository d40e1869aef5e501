// Readers of /proc for what it measures best: per-process CPU time, RSS and storage I/O bytes (the
// very numbers `top` and iotop show), and node CPU, memory, disk and network counters. The root is
// injectable so that tests can use fixture trees.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace loupe::resources {

struct ProcessSample {
    std::uint32_t pid = 0;
    std::string comm;
    std::uint64_t cpu_ns = 0;  // utime + stime, from clock ticks
    std::uint64_t rss_bytes = 0;
    std::uint64_t io_read_bytes = 0;   // /proc/PID/io read_bytes: storage reads it caused
    std::uint64_t io_write_bytes = 0;  // write_bytes: storage writes it caused (at dirtying time)
};

struct DiskCounters {
    std::uint64_t io_ticks_ms = 0;  // time the device had I/O in flight
    std::uint64_t read_bytes = 0;
    std::uint64_t write_bytes = 0;
};

struct NetCounters {
    std::uint64_t rx_bytes = 0;
    std::uint64_t tx_bytes = 0;
};

struct NodeSample {
    std::uint64_t cpu_busy_ticks = 0;
    std::uint64_t cpu_total_ticks = 0;
    unsigned cpus = 0;
    std::uint64_t mem_total_bytes = 0;
    std::uint64_t mem_available_bytes = 0;
    std::map<std::string, DiskCounters> disks;  // whole devices, no partitions, no loop/ram
    std::map<std::string, NetCounters> interfaces;
};

class ProcFs {
  public:
    explicit ProcFs(std::string root = "/proc");

    // Every user-space process (kernel threads excluded). Processes that vanish while being read
    // are skipped.
    std::vector<ProcessSample> processes() const;
    std::optional<ProcessSample> process(std::uint32_t pid) const;
    NodeSample node() const;

    // Parsers, exposed for tests.
    static std::optional<ProcessSample> parse_stat(std::uint32_t pid, const std::string& stat,
                                                   long ticks_per_second, long page_size,
                                                   bool* kernel_thread);
    static void parse_io(const std::string& io, ProcessSample& sample);

  private:
    std::string root_;
    long ticks_per_second_;
    long page_size_;
};

}  // namespace loupe::resources
