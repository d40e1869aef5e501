// Names the instruction pointers of sampled stacks: ELF symbol tables (.symtab, .dynsym) of the
// process's own files, read through /proc/PID/map_files or /proc/PID/root so that containers and
// deleted files work; perf maps of JIT runtimes (/tmp/perf-PID.map); the kernel's /proc/kallsyms.
// An address no table covers is shown as `module+0xoffset` (file offset), never as a wrong name.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace loupe::profile {

struct Frame {
    std::string function;  // demangled name, or `module+0xoffset` when unknown
    std::string module;    // file name of the mapping (basename), "[kernel]" or a module's
    bool kernel = false;
    bool known = false;  // a symbol table named it
    // False when the ip lies in no executable mapping of the process: not code at all, the
    // "return address" a frame-pointer walk read through a register used for something else.
    bool mapped = true;
};

// Unwind quality: the user frames (leaf first) up to the first that is not code. Frame-pointer
// unwinding through code without frame pointers yields the leaf and then garbage.
std::size_t trustworthy_depth(const std::vector<Frame>& leaf_first);
// Stacks this shallow (or shallower) count as cut short in the unwind-quality figures.
inline constexpr std::size_t kShallowStackFrames = 2;

// The function symbols of one ELF file, sorted by address.
class ElfSymbols {
  public:
    // nullptr when the file is not a readable ELF file.
    static std::shared_ptr<ElfSymbols> load(int fd);

    // The symbol covering `vaddr` (a virtual address of the file's own layout), or nullptr.
    const std::string* lookup(std::uint64_t vaddr) const;
    // The file's virtual address of a file offset inside a loaded segment.
    std::optional<std::uint64_t> vaddr_of_offset(std::uint64_t offset) const;
    const std::string& build_id() const { return build_id_; }
    std::size_t size() const { return symbols_.size(); }

  private:
    struct Symbol {
        std::uint64_t start;
        std::uint64_t end;
        std::uint32_t name;  // index into names_
    };
    struct Segment {
        std::uint64_t offset;
        std::uint64_t vaddr;
        std::uint64_t size;
    };
    std::vector<Symbol> symbols_;
    std::vector<std::string> names_;
    std::vector<Segment> segments_;
    std::string build_id_;  // hex, empty when the file has none
};

// /proc/kallsyms: text symbols of the kernel and its modules.
class KernelSymbols {
  public:
    void load(const std::string& path = "/proc/kallsyms");
    Frame lookup(std::uint64_t ip) const;
    std::size_t size() const { return symbols_.size(); }

  private:
    struct Symbol {
        std::uint64_t start;
        std::string name;
        std::string module;  // empty for the kernel image
    };
    std::vector<Symbol> symbols_;
};

// One executable mapping of a process (/proc/PID/maps).
struct Mapping {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::uint64_t offset = 0;
    std::uint64_t inode = 0;
    std::string device;
    std::string path;  // empty for anonymous memory
};

std::vector<Mapping> parse_maps(const std::string& text);

// C++ (Itanium ABI) names demangled; anything else returned as is.
std::string demangle(const std::string& name);

class Symbolizer {
  public:
    explicit Symbolizer(std::string proc_root = "/proc");

    // Reads a process's mappings now, while it lives: its stacks are named from them later, even
    // after it exits. Call when a process is first selected and when a drain finds new code.
    void remember_process(std::uint32_t tgid);
    void forget_process(std::uint32_t tgid);
    // Frames of a user stack, leaf first as given.
    std::vector<Frame> user_frames(std::uint32_t tgid, const std::vector<std::uint64_t>& ips);
    std::vector<Frame> kernel_frames(const std::vector<std::uint64_t>& ips);

    std::size_t cached_files() const { return by_file_.size(); }

  private:
    struct ProcessImage {
        std::vector<Mapping> mappings;
        std::vector<std::shared_ptr<ElfSymbols>> symbols;  // per mapping, may be null
        std::map<std::uint64_t, std::pair<std::uint64_t, std::string>>
            perf_map;  // start->size,name
        bool perf_map_read = false;
        std::chrono::steady_clock::time_point read_at;  // when its maps were read
    };
    Frame user_frame(std::uint32_t tgid, ProcessImage& image, std::uint64_t ip);
    std::shared_ptr<ElfSymbols> symbols_for(std::uint32_t tgid, const Mapping& mapping);
    void read_perf_map(std::uint32_t tgid, ProcessImage& image);

    std::string proc_root_;
    std::unordered_map<std::uint32_t, ProcessImage> processes_;
    // Files by device:inode, then by build-id (the same library seen through two containers'
    // roots is read once).
    std::unordered_map<std::string, std::shared_ptr<ElfSymbols>> by_file_;
    std::unordered_map<std::string, std::shared_ptr<ElfSymbols>> by_build_id_;
    KernelSymbols kernel_;
    bool kernel_loaded_ = false;
};

}  // namespace loupe::profile
