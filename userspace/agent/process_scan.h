// Finds the processes a --pid/--comm selection covers, so capture can be narrowed in the kernel
// (the traced_tgids map) instead of paying for every process on the host.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loupe::agent {

// tgids in /proc that match every non-empty criterion: pid in `pids` and comm in `comms`.
std::vector<std::uint32_t> matching_tgids(const std::vector<std::uint32_t>& pids,
                                          const std::vector<std::string>& comms);

}  // namespace loupe::agent
