#include "profile/dwarf_unwinder.h"

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include <fmt/format.h>

#include "profile/symbolizer.h"
#include "profiler_abi.h"
#include "util/read_file.h"
#include "util/unique_fd.h"

namespace loupe::profile {

namespace {

constexpr std::size_t kMaxFrames = LOUPE_PROFILE_STACK_DEPTH;
// A session whose maps are older than this is read again when an ip falls outside every file
// (the process loaded code since: dlopen, a JIT).
constexpr std::chrono::seconds kMapsRefresh{1};

struct DwflDeleter {
    void operator()(Dwfl* dwfl) const noexcept { dwfl_end(dwfl); }
};
using DwflPtr = std::unique_ptr<Dwfl, DwflDeleter>;
struct ElfDeleter {
    void operator()(Elf* elf) const noexcept { elf_end(elf); }
};
using ElfPtr = std::unique_ptr<Elf, ElfDeleter>;

// CFI comes from the files' own .eh_frame: no separate debug file is looked for (its path on the
// host would not be the container's, and the search costs a stat per file).
int no_debuginfo(Dwfl_Module*, void**, const char*, Dwarf_Addr, const char*, const char*, GElf_Word,
                 char**) {
    return -1;
}

const Dwfl_Callbacks kCallbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = no_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = nullptr,
};

// The load bias of a file mapped at `start` from file offset `offset`: the address of its virtual
// address 0. Nullopt when no loadable segment holds that offset.
std::optional<std::uint64_t> load_bias(int fd, std::uint64_t start, std::uint64_t offset) {
    ElfPtr elf(elf_begin(fd, ELF_C_READ_MMAP, nullptr));
    if (!elf || elf_kind(elf.get()) != ELF_K_ELF) return std::nullopt;
    std::size_t count = 0;
    if (elf_getphdrnum(elf.get(), &count) != 0) return std::nullopt;
    for (std::size_t i = 0; i < count; ++i) {
        GElf_Phdr phdr;
        if (!gelf_getphdr(elf.get(), static_cast<int>(i), &phdr) || phdr.p_type != PT_LOAD)
            continue;
        const std::uint64_t first_page = phdr.p_offset & ~std::uint64_t{4095};
        if (offset < first_page || offset >= phdr.p_offset + phdr.p_filesz) continue;
        return start - (phdr.p_vaddr - phdr.p_offset + offset);
    }
    return std::nullopt;
}

}  // namespace

struct DwarfUnwinder::Session {
    DwflPtr dwfl;
    const capture::DwarfSample* sample = nullptr;  // the one being unwound
    std::chrono::steady_clock::time_point read_at;
    std::list<std::uint32_t>::iterator recent;

    static bool get_thread(Dwfl*, pid_t, void* dwfl_arg, void** thread_arg) {
        *thread_arg = dwfl_arg;
        return true;
    }
    static pid_t next_thread(Dwfl*, void*, void**) {
        return 0;  // threads are only asked for by id, the sampled one
    }
    // Memory is the copied stack and nothing else: a read outside it fails, and unwinding stops
    // there (the process's live memory has changed since the sample).
    static bool memory_read(Dwfl*, Dwarf_Addr addr, Dwarf_Word* result, void* dwfl_arg) {
        const auto* sample = static_cast<Session*>(dwfl_arg)->sample;
        const std::uint64_t sp = sample->regs[LOUPE_PROFILE_DWARF_REG_SP];
        if (addr < sp || addr - sp + sizeof(Dwarf_Word) > sample->stack.size()) return false;
        std::memcpy(result, sample->stack.data() + (addr - sp), sizeof(Dwarf_Word));
        return true;
    }
    static bool set_initial_registers(Dwfl_Thread* thread, void* thread_arg) {
        const auto* sample = static_cast<Session*>(thread_arg)->sample;
        Dwarf_Word regs[LOUPE_PROFILE_DWARF_REGS];
        std::copy(sample->regs.begin(), sample->regs.end(), regs);
        if (!dwfl_thread_state_registers(thread, 0, LOUPE_PROFILE_DWARF_REGS, regs)) return false;
        dwfl_thread_state_register_pc(thread, regs[LOUPE_PROFILE_DWARF_REG_IP]);
        return true;
    }
    static const Dwfl_Thread_Callbacks kThreadCallbacks;
};

const Dwfl_Thread_Callbacks DwarfUnwinder::Session::kThreadCallbacks = {
    .next_thread = next_thread,
    .get_thread = get_thread,
    .memory_read = memory_read,
    .set_initial_registers = set_initial_registers,
    .detach = nullptr,
    .thread_detach = nullptr,
};

DwarfUnwinder::DwarfUnwinder(std::string proc_root, std::size_t max_processes)
    : proc_root_(std::move(proc_root)), max_processes_(std::max<std::size_t>(max_processes, 1)) {
    elf_version(EV_CURRENT);
}

DwarfUnwinder::~DwarfUnwinder() = default;

std::unique_ptr<DwarfUnwinder::Session> DwarfUnwinder::open_session(std::uint32_t tgid) const {
    const auto maps = util::read_file(fmt::format("{}/{}/maps", proc_root_, tgid));
    if (!maps) return nullptr;
    auto session = std::make_unique<Session>();
    session->dwfl.reset(dwfl_begin(&kCallbacks));
    if (!session->dwfl) return nullptr;
    session->read_at = std::chrono::steady_clock::now();
    Dwfl* dwfl = session->dwfl.get();
    dwfl_report_begin(dwfl);
    std::set<std::pair<std::string, std::uint64_t>> reported;  // device, inode
    for (const Mapping& m : parse_maps(*maps)) {
        if (m.path.empty() || m.path[0] == '[' || m.inode == 0) continue;  // anonymous, vdso
        if (!reported.emplace(m.device, m.inode).second) continue;
        // map_files opens the very file mapped, deleted or in another mount namespace.
        util::UniqueFd fd(::open(
            fmt::format("{}/{}/map_files/{:x}-{:x}", proc_root_, tgid, m.start, m.end).c_str(),
            O_RDONLY | O_CLOEXEC));
        if (!fd.valid())
            fd.reset(::open(fmt::format("{}/{}/root{}", proc_root_, tgid, m.path).c_str(),
                            O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) continue;
        const auto bias = load_bias(fd.get(), m.start, m.offset);
        if (!bias) continue;
        const std::string name = m.path.substr(m.path.rfind('/') + 1);
        // On success libdw owns the descriptor.
        if (dwfl_report_elf(dwfl, name.c_str(), m.path.c_str(), fd.get(), *bias, true))
            (void)fd.release();
    }
    if (dwfl_report_end(dwfl, nullptr, nullptr) != 0) return nullptr;
    if (!dwfl_attach_state(dwfl, nullptr, static_cast<pid_t>(tgid), &Session::kThreadCallbacks,
                           session.get()))
        return nullptr;
    return session;
}

DwarfUnwinder::Session* DwarfUnwinder::session_for(std::uint32_t tgid) {
    if (auto it = sessions_.find(tgid); it != sessions_.end()) {
        recent_.splice(recent_.begin(), recent_, it->second->recent);
        return it->second.get();
    }
    std::unique_ptr<Session> session = open_session(tgid);
    if (!session) return nullptr;
    if (sessions_.size() >= max_processes_) {
        sessions_.erase(recent_.back());
        recent_.pop_back();
    }
    recent_.push_front(tgid);
    session->recent = recent_.begin();
    return sessions_.emplace(tgid, std::move(session)).first->second.get();
}

void DwarfUnwinder::remember_process(std::uint32_t tgid) {
    session_for(tgid);
}

void DwarfUnwinder::forget_process(std::uint32_t tgid) {
    auto it = sessions_.find(tgid);
    if (it == sessions_.end()) return;
    recent_.erase(it->second->recent);
    sessions_.erase(it);
}

void DwarfUnwinder::forget_exited() {
    std::vector<std::uint32_t> gone;
    for (const auto& [tgid, session] : sessions_)
        if (::access(fmt::format("{}/{}", proc_root_, tgid).c_str(), F_OK) != 0)
            gone.push_back(tgid);
    for (std::uint32_t tgid : gone)
        forget_process(tgid);
}

std::vector<std::uint64_t> DwarfUnwinder::unwind(const capture::DwarfSample& sample) {
    const std::uint64_t ip = sample.regs[LOUPE_PROFILE_DWARF_REG_IP];
    std::vector<std::uint64_t> ips;
    for (int attempt = 0; attempt < 2; ++attempt) {
        Session* session = session_for(sample.tgid);
        if (!session) {
            last_stop_ = fmt::format("no libdw session for process {}", sample.tgid);
            return {ip};
        }
        ips.clear();
        session->sample = &sample;
        auto on_frame = [](Dwfl_Frame* frame, void* arg) -> int {
            auto* out = static_cast<std::vector<std::uint64_t>*>(arg);
            Dwarf_Addr pc = 0;
            bool activation = false;
            if (!dwfl_frame_pc(frame, &pc, &activation) || pc == 0) return DWARF_CB_ABORT;
            out->push_back(pc);
            return out->size() >= kMaxFrames ? DWARF_CB_ABORT : DWARF_CB_OK;
        };
        // Unwinding ends with an error at the outermost frame or where the copy or the CFI
        // ends: the frames found until then are the stack.
        const int status = dwfl_getthread_frames(session->dwfl.get(),
                                                 static_cast<pid_t>(sample.tid), on_frame, &ips);
        session->sample = nullptr;
        if (ips.size() > 1) break;
        last_stop_ = fmt::format(
            "{} ({} stack bytes, status {}, ip {:#x} {})",
            status != 0 ? dwfl_errmsg(-1) : "outermost frame", sample.stack.size(), status, ip,
            dwfl_addrmodule(session->dwfl.get(), ip) ? "in a file" : "in none");
        // No caller found: the maps may predate the code (read while the process was still
        // exec'ing or loading libraries, or before a dlopen). Read again, at most once a second.
        if (std::chrono::steady_clock::now() - session->read_at < kMapsRefresh) break;
        forget_process(sample.tgid);
    }
    if (ips.empty()) ips.push_back(ip);
    return ips;
}

std::vector<capture::StackCount> DwarfUnwinder::unwind_and_count(
    const std::vector<capture::DwarfSample>& samples) {
    std::map<std::tuple<std::uint32_t, std::vector<std::uint64_t>, std::vector<std::uint64_t>>,
             std::uint64_t>
        counts;
    for (const capture::DwarfSample& sample : samples)
        ++counts[{sample.tgid, unwind(sample), sample.kernel_ips}];
    std::vector<capture::StackCount> out;
    out.reserve(counts.size());
    for (auto& [key, count] : counts) {
        capture::StackCount s;
        s.tgid = std::get<0>(key);
        s.user_ips = std::get<1>(key);
        s.kernel_ips = std::get<2>(key);
        s.count = count;
        out.push_back(std::move(s));
    }
    return out;
}

}  // namespace loupe::profile
