// A CPU profile: distinct stacks of named frames and how many samples each took, and the ways
// loupe writes it out (pprof, folded stacks, an interactive SVG flame graph, a top list).
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <unordered_map>
#include <vector>

#include "profile/symbolizer.h"

namespace loupe::profile {

class Profile {
  public:
    // A stack, root first (the order flame graphs and folded stacks draw).
    void add(const std::vector<Frame>& root_first, std::uint64_t count);
    // Like add(), unless the stack is new and the profile already holds `max_stacks`: false then,
    // nothing added (memory stays bounded whatever the number of distinct stacks).
    bool add_bounded(const std::vector<Frame>& root_first, std::uint64_t count,
                     std::size_t max_stacks);
    void merge(const Profile& other);

    const std::vector<Frame>& frames() const { return frames_; }
    const std::map<std::vector<std::uint32_t>, std::uint64_t>& stacks() const { return stacks_; }
    std::uint64_t total_samples() const { return total_; }

    unsigned frequency_hz = 99;
    std::uint64_t start_unix_ns = 0;
    std::uint64_t duration_ns = 0;

  private:
    std::uint32_t intern(const Frame& frame);

    std::vector<Frame> frames_;
    std::unordered_map<std::string, std::uint32_t> frame_ids_;  // by module + function
    std::map<std::vector<std::uint32_t>, std::uint64_t> stacks_;
    std::uint64_t total_ = 0;
};

// Brendan Gregg's folded stacks: "root;caller;leaf count" per line, kernel frames suffixed _[k].
void write_folded(const Profile& profile, std::ostream& out);

// pprof's profile.proto, gzipped (go tool pprof, Pyroscope). Empty string, or why it failed.
std::string write_pprof(const Profile& profile, const std::string& path);
// The gzipped pprof file's bytes (served over HTTP).
std::string pprof_gzipped(const Profile& profile);
// The encoded profile.proto message before compression (tests decode it).
std::string encode_pprof(const Profile& profile);

// A self-contained interactive flame graph: click to zoom, a search box, no external script.
void write_flame_graph_svg(const Profile& profile, const std::string& title, std::ostream& out);

struct FunctionShare {
    std::string function;
    std::string module;
    std::uint64_t self = 0;   // samples with the function as the leaf
    std::uint64_t total = 0;  // samples with the function anywhere on the stack
};
// Functions by self samples, then total, at most `limit`.
std::vector<FunctionShare> top_functions(const Profile& profile, std::size_t limit);
void write_top(const Profile& profile, std::size_t limit, std::ostream& out);

}  // namespace loupe::profile
