#include "profile/symbolizer.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "elf/go_functions.h"
#include "util/unique_fd.h"

namespace loupe::profile {

namespace {

std::string hex_bytes(const unsigned char* data, std::size_t size) {
    std::string out;
    out.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i)
        out += fmt::format("{:02x}", data[i]);
    return out;
}

std::string basename_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

constexpr std::string_view kDeletedSuffix = " (deleted)";

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

std::string demangle(const std::string& name) {
    if (name.size() < 2 || name[0] != '_' || name[1] != 'Z') return name;
    int status = 0;
    char* out = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
    if (status != 0 || !out) return name;
    std::string result(out);
    std::free(out);
    return result;
}

std::shared_ptr<ElfSymbols> ElfSymbols::load(int fd) {
    if (elf_version(EV_CURRENT) == EV_NONE) return nullptr;
    Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    if (!elf) return nullptr;
    struct ElfCloser {
        Elf* elf;
        ~ElfCloser() { elf_end(elf); }
    } closer{elf};
    if (elf_kind(elf) != ELF_K_ELF) return nullptr;

    auto table = std::make_shared<ElfSymbols>();
    std::size_t phnum = 0;
    if (elf_getphdrnum(elf, &phnum) != 0) return nullptr;
    for (std::size_t i = 0; i < phnum; ++i) {
        GElf_Phdr phdr;
        if (gelf_getphdr(elf, static_cast<int>(i), &phdr) && phdr.p_type == PT_LOAD)
            table->segments_.push_back({phdr.p_offset, phdr.p_vaddr, phdr.p_filesz});
    }
    std::size_t shstrndx = 0;
    elf_getshdrstrndx(elf, &shstrndx);
    std::unordered_map<std::string, std::uint32_t> name_index;
    auto add_symbol = [&](const std::string& name, std::uint64_t start, std::uint64_t end) {
        auto [it, fresh] =
            name_index.try_emplace(name, static_cast<std::uint32_t>(table->names_.size()));
        if (fresh) table->names_.push_back(name);
        table->symbols_.push_back({start, end, it->second});
    };
    bool has_symtab = false;
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr shdr;
        if (!gelf_getshdr(scn, &shdr)) continue;
        if (shdr.sh_type == SHT_NOTE && table->build_id_.empty()) {
            Elf_Data* data = elf_getdata(scn, nullptr);
            std::size_t offset = 0, name_offset = 0, desc_offset = 0;
            GElf_Nhdr note;
            while (data &&
                   (offset = gelf_getnote(data, offset, &note, &name_offset, &desc_offset)) > 0) {
                const char* owner = static_cast<const char*>(data->d_buf) + name_offset;
                if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
                    std::memcmp(owner, "GNU", 4) == 0) {
                    table->build_id_ =
                        hex_bytes(static_cast<const unsigned char*>(data->d_buf) + desc_offset,
                                  note.n_descsz);
                    break;
                }
            }
            continue;
        }
        if (shdr.sh_type != SHT_SYMTAB && shdr.sh_type != SHT_DYNSYM) continue;
        if (shdr.sh_entsize == 0) continue;
        has_symtab |= shdr.sh_type == SHT_SYMTAB;
        Elf_Data* data = elf_getdata(scn, nullptr);
        if (!data) continue;
        const std::size_t count = shdr.sh_size / shdr.sh_entsize;
        for (std::size_t i = 0; i < count; ++i) {
            GElf_Sym sym;
            if (!gelf_getsym(data, static_cast<int>(i), &sym)) continue;
            const int type = GELF_ST_TYPE(sym.st_info);
            if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF ||
                sym.st_value == 0 || sym.st_size == 0)
                continue;  // no size: where it ends is a guess, and a guess can name wrongly
            const char* name = elf_strptr(elf, shdr.sh_link, sym.st_name);
            if (!name || !*name) continue;
            add_symbol(name, sym.st_value, sym.st_value + sym.st_size);
        }
    }
    // A stripped Go executable keeps the runtime's own function table.
    if (!has_symtab) {
        if (auto go = elf::read_go_functions(fd))
            for (const auto& function : go->functions)
                add_symbol(function.name, function.entry, function.end);
    }
    std::sort(table->symbols_.begin(), table->symbols_.end(), [](const Symbol& a, const Symbol& b) {
        return a.start != b.start ? a.start < b.start : a.end > b.end;
    });
    // .symtab repeats .dynsym's functions: one entry per address.
    table->symbols_.erase(
        std::unique(table->symbols_.begin(), table->symbols_.end(),
                    [](const Symbol& a, const Symbol& b) { return a.start == b.start; }),
        table->symbols_.end());
    return table;
}

const std::string* ElfSymbols::lookup(std::uint64_t vaddr) const {
    auto it = std::upper_bound(symbols_.begin(), symbols_.end(), vaddr,
                               [](std::uint64_t v, const Symbol& s) { return v < s.start; });
    // A few symbols back: a small one may sit inside a large one that covers the address.
    for (int back = 0; back < 4 && it != symbols_.begin(); ++back) {
        --it;
        if (vaddr < it->end) return &names_[it->name];
    }
    return nullptr;
}

std::optional<std::uint64_t> ElfSymbols::vaddr_of_offset(std::uint64_t offset) const {
    for (const Segment& s : segments_)
        if (offset >= s.offset && offset < s.offset + s.size) return offset - s.offset + s.vaddr;
    return std::nullopt;
}

void KernelSymbols::load(const std::string& path) {
    symbols_.clear();
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        // "ffffffff81000000 T _stext" or "ffffffffc0a01000 t fn\t[module]"
        char type = 0;
        char name[512] = {};
        char module[128] = {};
        unsigned long long address = 0;
        const int fields =
            std::sscanf(line.c_str(), "%llx %c %511s [%127[^]]]", &address, &type, name, module);
        if (fields < 3 || address == 0) continue;
        if (type != 't' && type != 'T' && type != 'w' && type != 'W') continue;
        symbols_.push_back({address, name, fields == 4 ? module : ""});
    }
    std::sort(symbols_.begin(), symbols_.end(),
              [](const Symbol& a, const Symbol& b) { return a.start < b.start; });
}

Frame KernelSymbols::lookup(std::uint64_t ip) const {
    Frame frame;
    frame.kernel = true;
    frame.module = "[kernel]";
    auto it = std::upper_bound(symbols_.begin(), symbols_.end(), ip,
                               [](std::uint64_t v, const Symbol& s) { return v < s.start; });
    if (it == symbols_.begin()) {
        frame.function = fmt::format("[kernel]+0x{:x}", ip);
        return frame;
    }
    --it;
    frame.function = it->name;
    if (!it->module.empty()) frame.module = "[" + it->module + "]";
    frame.known = true;
    return frame;
}

std::vector<Mapping> parse_maps(const std::string& text) {
    std::vector<Mapping> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        // start-end perms offset dev inode   path
        unsigned long long start = 0, end = 0, offset = 0, inode = 0;
        char perms[8] = {};
        char device[32] = {};
        int path_at = 0;
        if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %31s %llu %n", &start, &end, perms,
                        &offset, device, &inode, &path_at) < 6)
            continue;
        if (std::strchr(perms, 'x') == nullptr) continue;
        Mapping m{start, end, offset, inode, device, {}};
        if (path_at > 0 && static_cast<std::size_t>(path_at) < line.size())
            m.path = line.substr(static_cast<std::size_t>(path_at));
        out.push_back(std::move(m));
    }
    std::sort(out.begin(), out.end(),
              [](const Mapping& a, const Mapping& b) { return a.start < b.start; });
    return out;
}

std::size_t trustworthy_depth(const std::vector<Frame>& leaf_first) {
    std::size_t depth = 0;
    while (depth < leaf_first.size() && leaf_first[depth].mapped)
        ++depth;
    return depth;
}

Symbolizer::Symbolizer(std::string proc_root) : proc_root_(std::move(proc_root)) {}

void Symbolizer::remember_process(std::uint32_t tgid) {
    const std::string text = read_file(fmt::format("{}/{}/maps", proc_root_, tgid));
    if (text.empty()) return;  // gone: keep what we knew
    ProcessImage& image = processes_[tgid];
    image.mappings = parse_maps(text);
    image.symbols.clear();
    image.perf_map.clear();
    image.perf_map_read = false;
    image.read_at = std::chrono::steady_clock::now();
    // Symbol tables are read now, while /proc/PID/map_files still opens the files: the process
    // may exit before its stacks are named.
    for (const Mapping& m : image.mappings)
        image.symbols.push_back(symbols_for(tgid, m));
}

void Symbolizer::forget_process(std::uint32_t tgid) {
    processes_.erase(tgid);
}

std::shared_ptr<ElfSymbols> Symbolizer::symbols_for(std::uint32_t tgid, const Mapping& mapping) {
    if (mapping.path.empty() || mapping.path[0] == '[' || mapping.inode == 0) return nullptr;
    const std::string file_key = mapping.device + ":" + std::to_string(mapping.inode);
    if (auto it = by_file_.find(file_key); it != by_file_.end()) return it->second;
    // map_files opens the very file mapped, deleted or in another mount namespace; the path
    // under the process's root is the fallback where map_files is refused.
    util::UniqueFd fd(::open(
        fmt::format("{}/{}/map_files/{:x}-{:x}", proc_root_, tgid, mapping.start, mapping.end)
            .c_str(),
        O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        std::string path = mapping.path;
        if (path.ends_with(kDeletedSuffix)) path.resize(path.size() - kDeletedSuffix.size());
        fd.reset(::open(fmt::format("{}/{}/root{}", proc_root_, tgid, path).c_str(),
                        O_RDONLY | O_CLOEXEC));
    }
    std::shared_ptr<ElfSymbols> symbols = fd.valid() ? ElfSymbols::load(fd.get()) : nullptr;
    if (symbols && !symbols->build_id().empty()) {
        auto [it, fresh] = by_build_id_.try_emplace(symbols->build_id(), symbols);
        symbols = it->second;
    }
    if (fd.valid()) by_file_[file_key] = symbols;  // a failed open may succeed later
    return symbols;
}

void Symbolizer::read_perf_map(std::uint32_t tgid, ProcessImage& image) {
    image.perf_map_read = true;
    // The runtime writes /tmp/perf-<its pid>.map in its own /tmp: seen through its root.
    std::ifstream in(fmt::format("{}/{}/root/tmp/perf-{}.map", proc_root_, tgid, tgid));
    if (!in) in.open(fmt::format("/tmp/perf-{}.map", tgid));
    std::string line;
    while (std::getline(in, line)) {
        unsigned long long start = 0, size = 0;
        int name_at = 0;
        if (std::sscanf(line.c_str(), "%llx %llx %n", &start, &size, &name_at) < 2 ||
            name_at <= 0 || static_cast<std::size_t>(name_at) >= line.size())
            continue;
        image.perf_map[start] = {size, line.substr(static_cast<std::size_t>(name_at))};
    }
}

Frame Symbolizer::user_frame(std::uint32_t tgid, ProcessImage& image, std::uint64_t ip) {
    Frame frame;
    auto it = std::upper_bound(image.mappings.begin(), image.mappings.end(), ip,
                               [](std::uint64_t v, const Mapping& m) { return v < m.start; });
    const Mapping* mapping = nullptr;
    std::size_t index = 0;
    if (it != image.mappings.begin() && ip < std::prev(it)->end) {
        mapping = &*std::prev(it);
        index = static_cast<std::size_t>(std::prev(it) - image.mappings.begin());
    }
    if (!mapping || mapping->path.empty() || mapping->path[0] == '[') {
        // Anonymous executable memory: JIT code, named by the runtime's perf map if it has one.
        if (!image.perf_map_read) read_perf_map(tgid, image);
        auto jit = image.perf_map.upper_bound(ip);
        if (jit != image.perf_map.begin()) {
            --jit;
            if (ip < jit->first + jit->second.first) {
                frame.function = jit->second.second;
                frame.module = "[jit]";
                frame.known = true;
                return frame;
            }
        }
        frame.mapped = mapping != nullptr;
        frame.module = mapping && !mapping->path.empty() ? mapping->path : "[anon]";
        frame.function = mapping && !mapping->path.empty()
                             ? fmt::format("{}+0x{:x}", mapping->path, ip - mapping->start)
                             : fmt::format("0x{:x}", ip);
        return frame;
    }
    frame.module = basename_of(mapping->path);
    if (frame.module.ends_with(kDeletedSuffix))
        frame.module.resize(frame.module.size() - kDeletedSuffix.size());
    const std::uint64_t file_offset = ip - mapping->start + mapping->offset;
    const auto& symbols = index < image.symbols.size() ? image.symbols[index] : nullptr;
    if (symbols) {
        if (auto vaddr = symbols->vaddr_of_offset(file_offset))
            if (const std::string* name = symbols->lookup(*vaddr)) {
                frame.function = demangle(*name);
                frame.known = true;
                return frame;
            }
    }
    frame.function = fmt::format("{}+0x{:x}", frame.module, file_offset);
    return frame;
}

std::vector<Frame> Symbolizer::user_frames(std::uint32_t tgid,
                                           const std::vector<std::uint64_t>& ips) {
    auto found = processes_.find(tgid);
    if (found == processes_.end()) {
        remember_process(tgid);
        found = processes_.find(tgid);
    }
    std::vector<Frame> frames;
    frames.reserve(ips.size());
    if (found == processes_.end()) {  // gone before we ever read it
        for (std::uint64_t ip : ips)
            frames.push_back({fmt::format("0x{:x}", ip), "[unknown]", false, false});
        return frames;
    }
    // Code mapped since the process was read (dlopen, a new JIT region): read its maps again,
    // at most once a second.
    const auto now = std::chrono::steady_clock::now();
    if (now - found->second.read_at > std::chrono::seconds(1) &&
        std::any_of(ips.begin(), ips.end(), [&](std::uint64_t ip) {
            const auto& maps = found->second.mappings;
            auto it =
                std::upper_bound(maps.begin(), maps.end(), ip,
                                 [](std::uint64_t v, const Mapping& m) { return v < m.start; });
            return it == maps.begin() || ip >= std::prev(it)->end;
        })) {
        remember_process(tgid);
        found = processes_.find(tgid);
        found->second.read_at = now;  // also when the process is gone: no retry storm
    }
    for (std::size_t i = 0; i < ips.size(); ++i) {
        // Callers' addresses are return addresses: one byte back is inside the call, in the
        // caller's function even when the call was its last instruction.
        const std::uint64_t ip = i == 0 ? ips[i] : ips[i] - 1;
        frames.push_back(user_frame(tgid, found->second, ip));
    }
    return frames;
}

std::vector<Frame> Symbolizer::kernel_frames(const std::vector<std::uint64_t>& ips) {
    if (!kernel_loaded_) {
        kernel_.load();
        kernel_loaded_ = true;
    }
    std::vector<Frame> frames;
    frames.reserve(ips.size());
    for (std::size_t i = 0; i < ips.size(); ++i)
        frames.push_back(kernel_.lookup(i == 0 ? ips[i] : ips[i] - 1));
    return frames;
}

}  // namespace loupe::profile
