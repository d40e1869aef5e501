// `loupe profile`: samples the stacks of chosen processes for a while and writes a pprof file,
// folded stacks or a flame graph, or prints the hottest functions.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace loupe::profile_cli {

struct ProfileOptions {
    std::vector<std::uint32_t> pids;
    std::vector<std::string> comms;
    std::string service;  // resolved to its live processes by a running agent
    std::string agent_url = "http://127.0.0.1:9464";
    std::string duration = "10s";
    unsigned frequency_hz = 99;
    std::string output;  // format from the extension; empty: print the top functions
    std::size_t top = 25;
    std::string unwind = "fp";  // fp (frame pointers, in the kernel) or dwarf (libdw, user space)
};

enum class OutputFormat { kTop, kPprof, kFolded, kSvg };

// "10s", "500ms", "2m", "1.5" (seconds); nullopt when not a positive duration.
std::optional<double> parse_duration_seconds(const std::string& text);
// nullopt for an extension loupe does not write.
std::optional<OutputFormat> output_format(const std::string& path);
// Why these options cannot run (a clear sentence), or nullopt. Reads /proc for --pid.
std::optional<std::string> options_problem(const ProfileOptions& options);

// Exit status: 0, 1 (could not profile), 2 (bad input).
int run_profile(const ProfileOptions& options, std::ostream& out, std::ostream& err);

}  // namespace loupe::profile_cli
