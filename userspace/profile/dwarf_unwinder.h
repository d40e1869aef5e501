// DWARF unwinding of sampled user stacks, for code built without frame pointers (Debian's own
// binaries): each sample brings the user registers and a copy of the stack's top bytes; libdw
// (elfutils) walks it with the call frame information (.eh_frame) of the process's files.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "capture/profile_capture.h"

struct Dwfl;

namespace loupe::profile {

class DwarfUnwinder {
  public:
    // `max_processes` libdw sessions are kept (one per process: its files and their CFI); the
    // least recently used goes first.
    explicit DwarfUnwinder(std::string proc_root = "/proc", std::size_t max_processes = 64);
    ~DwarfUnwinder();
    DwarfUnwinder(const DwarfUnwinder&) = delete;
    DwarfUnwinder& operator=(const DwarfUnwinder&) = delete;

    // The sample's user stack: instruction pointers, leaf first (the sampled one, then return
    // addresses), as the kernel's frame-pointer stacks give them. As deep as the copied bytes and
    // the CFI reach; just the sampled ip when the process's files cannot be read.
    std::vector<std::uint64_t> unwind(const capture::DwarfSample& sample);
    // Unwinds every sample and counts identical stacks, like the kernel counts frame-pointer ones.
    std::vector<capture::StackCount> unwind_and_count(
        const std::vector<capture::DwarfSample>& samples);

    // Reads a process's mappings now, while it lives (its stacks may be unwound after it exits).
    void remember_process(std::uint32_t tgid);
    void forget_process(std::uint32_t tgid);
    // Drops the sessions of processes that exited.
    void forget_exited();
    std::size_t sessions() const { return sessions_.size(); }
    // Why the last unwind that found no caller stopped (libdw's message), for the debug log.
    const std::string& last_stop() const { return last_stop_; }

  private:
    struct Session;
    Session* session_for(std::uint32_t tgid);
    std::unique_ptr<Session> open_session(std::uint32_t tgid) const;

    std::string proc_root_;
    std::size_t max_processes_;
    std::list<std::uint32_t> recent_;  // most recently used first
    std::unordered_map<std::uint32_t, std::unique_ptr<Session>> sessions_;
    std::string last_stop_;
};

}  // namespace loupe::profile
