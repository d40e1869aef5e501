#include "capture/tls_libraries.h"

#include <signal.h>

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "capture/go_executable.h"

namespace loupe::capture {
namespace {

// OpenSSL 1.1 and 3 (libssl.so.1.1, libssl.so.3), and a distribution's unversioned link. Not
// NSS's libssl3.so: another API.
bool is_openssl(std::string_view path) {
    const auto slash = path.rfind('/');
    const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
    return name.starts_with("libssl.so");
}

// Closes what elf_begin opened.
struct ElfFile {
    int fd = -1;
    Elf* elf = nullptr;
    explicit ElfFile(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
        if (fd >= 0) elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    }
    ~ElfFile() {
        if (elf) elf_end(elf);
        if (fd >= 0) ::close(fd);
    }
    ElfFile(const ElfFile&) = delete;
    ElfFile& operator=(const ElfFile&) = delete;
};

// Whether the ELF file at `path` defines functions SSL_read and SSL_write (in .symtab or
// .dynsym; an import of a shared libssl is undefined here). A stripped static build defines
// nothing readable: its TLS stays unseen.
bool defines_openssl(const std::string& path) {
    if (elf_version(EV_CURRENT) == EV_NONE) return false;
    ElfFile file(path);
    if (!file.elf || elf_kind(file.elf) != ELF_K_ELF) return false;
    bool read = false, write = false;
    for (Elf_Scn* section = elf_nextscn(file.elf, nullptr); section;
         section = elf_nextscn(file.elf, section)) {
        GElf_Shdr header;
        if (!gelf_getshdr(section, &header) ||
            (header.sh_type != SHT_SYMTAB && header.sh_type != SHT_DYNSYM) ||
            header.sh_entsize == 0)
            continue;
        Elf_Data* data = elf_getdata(section, nullptr);
        if (!data) continue;
        const std::size_t count = header.sh_size / header.sh_entsize;
        for (std::size_t i = 0; i < count; ++i) {
            GElf_Sym symbol;
            if (!gelf_getsym(data, static_cast<int>(i), &symbol) ||
                GELF_ST_TYPE(symbol.st_info) != STT_FUNC || symbol.st_shndx == SHN_UNDEF)
                continue;
            const char* name = elf_strptr(file.elf, header.sh_link, symbol.st_name);
            if (!name) continue;
            const std::string_view n(name);
            read = read || n == "SSL_read";
            write = write || n == "SSL_write";
            if (read && write) return true;
        }
    }
    return false;
}

}  // namespace

std::optional<TlsLibraries::Executable> TlsLibraries::probed_executable_of(std::uint32_t pid) {
    const std::string exe = "/proc/" + std::to_string(pid) + "/exe";
    struct stat st {};
    if (::stat(exe.c_str(), &st) != 0) return std::nullopt;  // a kernel thread, or gone
    const FileId id{st.st_dev, st.st_ino};
    if (const auto it = libraries_.find(id); it != libraries_.end())
        return Executable{id, exe, it->second.kind};
    if (plain_executables_.contains(id)) return std::nullopt;
    if (defines_openssl(exe)) return Executable{id, exe, "openssl"};
    if (is_go_executable(exe)) return Executable{id, exe, "go"};
    if (plain_executables_.size() >= kMaxPlainExecutables) plain_executables_.clear();
    plain_executables_.insert(id);
    return std::nullopt;
}

std::vector<std::pair<TlsLibraries::FileId, std::string>> TlsLibraries::libraries_of(
    std::uint32_t pid) {
    std::vector<std::pair<FileId, std::string>> found;
    const std::string proc = "/proc/" + std::to_string(pid);
    std::ifstream maps(proc + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
        // "start-end perms offset dev inode   path": only executable mappings of a libssl.
        const auto path_at = line.find('/');
        if (path_at == std::string::npos) continue;
        const std::string_view path = std::string_view(line).substr(path_at);
        if (!is_openssl(path) || path.ends_with(" (deleted)")) continue;
        const auto perms = line.find(' ');
        if (perms == std::string::npos || perms + 3 >= line.size() || line[perms + 3] != 'x')
            continue;
        // The file as this process sees it, from the host: its mount namespace's root.
        const std::string host_path = proc + "/root" + std::string(path);
        struct stat st {};
        if (::stat(host_path.c_str(), &st) != 0) continue;
        found.emplace_back(FileId{st.st_dev, st.st_ino}, host_path);
    }
    return found;
}

namespace {

// "/proc/PID/root/usr/lib/libssl.so.3" -> "/usr/lib/libssl.so.3".
std::string path_in_process(const std::string& host_path) {
    const auto root = host_path.find("/root/");
    return root == std::string::npos ? host_path : host_path.substr(root + 5);
}

// A library's path in its process, or an executable's ("/proc/PID/exe" -> "/usr/bin/app").
std::string display_path(const std::string& host_path) {
    if (!host_path.ends_with("/exe")) return path_in_process(host_path);
    std::error_code error;
    const auto target = std::filesystem::read_symlink(host_path, error);
    return error ? host_path : target.string();
}

}  // namespace

std::map<std::string, std::size_t> find_tls_libraries() {
    std::map<TlsLibraries::FileId, std::pair<std::string, std::size_t>> files;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        const std::string name = entry.path().filename();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        for (const auto& [id, host_path] :
             TlsLibraries::libraries_of(static_cast<std::uint32_t>(std::stoul(name)))) {
            auto& [path, processes] = files[id];
            if (path.empty()) path = path_in_process(host_path);
            ++processes;
        }
    }
    std::map<std::string, std::size_t> out;
    for (const auto& [id, file] : files)
        out[file.first] += file.second;
    return out;
}

std::vector<GoExecutable> find_go_executables() {
    std::map<TlsLibraries::FileId, GoExecutable> files;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        const std::string name = entry.path().filename();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        const std::string exe = "/proc/" + name + "/exe";
        struct stat st {};
        if (::stat(exe.c_str(), &st) != 0) continue;
        const TlsLibraries::FileId id{st.st_dev, st.st_ino};
        if (auto it = files.find(id); it != files.end()) {
            ++it->second.processes;
            continue;
        }
        if (!is_go_executable(exe)) continue;
        GoExecutable found{display_path(exe), 1, "", ""};
        if (auto target = read_go_tls_target(exe))
            found.go_version = target->go_version;
        else
            found.error = target.error();
        files.emplace(id, std::move(found));
    }
    std::vector<GoExecutable> out;
    for (auto& [id, file] : files)
        out.push_back(std::move(file));
    return out;
}

void TlsLibraries::attach(Library& library, const std::string& host_path) {
    struct Probe {
        bpf_program* program;
        const char* function;
        bool retprobe;
    };
    // Returns before entries (and entries detached first, ~Library): a call whose entry was seen
    // always has its return seen, so no thread is left in a call that ended (its next socket
    // I/O would be taken for that SSL*'s).
    const Probe probes[] = {
        {programs_.call_return, "SSL_read", true},
        {programs_.call_return, "SSL_write", true},
        {programs_.call_return, "SSL_read_ex", true},
        {programs_.call_return, "SSL_write_ex", true},
        {programs_.call_return, "SSL_do_handshake", true},
        {programs_.read_enter, "SSL_read", false},
        {programs_.write_enter, "SSL_write", false},
        {programs_.read_ex_enter, "SSL_read_ex", false},
        {programs_.write_ex_enter, "SSL_write_ex", false},
        {programs_.handshake_enter, "SSL_do_handshake", false},
        {programs_.free_enter, "SSL_free", false},
    };
    for (const Probe& probe : probes) {
        if (!probe.program) continue;
        LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = probe.retprobe, .func_name = probe.function);
        // pid -1: every process that maps the file, now or later.
        BpfLinkPtr link(
            bpf_program__attach_uprobe_opts(probe.program, -1, host_path.c_str(), 0, &opts));
        if (!link) {
            const int err = errno;
            // SSL_read_ex and SSL_write_ex are OpenSSL 1.1.1+ (and not in BoringSSL).
            if (library.error.empty())
                library.error = std::string(probe.function) + ": " + std::strerror(err);
            spdlog::debug("cannot attach a uprobe to {} in {}: {}", probe.function, host_path,
                          std::strerror(err));
            continue;
        }
        library.links.push_back(std::move(link));
        library.uprobes.push_back(std::string(probe.function) +
                                  (probe.retprobe ? " (return)" : ""));
    }
    if (library.links.empty())
        spdlog::warn(
            "TLS library {}: no uprobe could be attached ({}); its connections' plaintext is not "
            "seen",
            library.path, library.error);
    else
        spdlog::info("TLS library {}: {} uprobes attached", library.path, library.links.size());
}

void TlsLibraries::attach_go(Library& library, const std::string& host_path) {
    auto target = read_go_tls_target(host_path);
    if (!target) {
        library.error = target.error();
        spdlog::warn("Go executable {}: not probed: {}", library.path, library.error);
        return;
    }
    library.version = target->go_version;
    if (!programs_.go_read_enter || !programs_.go_write_enter || !programs_.go_return) {
        library.error = "the Go TLS programs are not loaded";
        return;
    }
    const auto minor = go_minor_version(target->go_version);
    if (!minor || *minor > 22)
        spdlog::warn(
            "Go executable {}: built by {}, not a release whose crypto/tls and net layouts loupe "
            "knows (1.17 to 1.22): probed with their layout, calls that do not match are skipped",
            library.path, target->go_version.empty() ? "an unknown Go" : target->go_version);
    // RETs before entries (as for OpenSSL): a call whose entry was seen has its RET seen.
    auto attach_one = [&](bpf_program* program, std::uint64_t offset, std::uint64_t cookie,
                          const std::string& what) {
        LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = cookie);
        // pid -1: every process that runs the file, now or later.
        BpfLinkPtr link(bpf_program__attach_uprobe_opts(program, -1, host_path.c_str(),
                                                        static_cast<std::size_t>(offset), &opts));
        if (!link) {
            const int err = errno;
            if (library.error.empty()) library.error = what + ": " + std::strerror(err);
            return false;
        }
        library.links.push_back(std::move(link));
        library.uprobes.push_back(what);
        return true;
    };
    bool complete = true;
    for (const GoProbedFunction* function : {&target->read, &target->write})
        for (const std::uint64_t ret : function->ret_offsets)
            complete &= attach_one(
                programs_.go_return, ret, 0,
                fmt::format("{} (RET +{:#x})", function->name, ret - function->file_offset));
    if (!complete) {
        // An entry without all its RETs would leave calls open: none of them then.
        spdlog::warn("Go executable {}: a RET uprobe could not attach ({}); not probed",
                     library.path, library.error);
        while (!library.links.empty())
            library.links.pop_back();
        library.uprobes.clear();
        return;
    }
    // The entry probes' cookie: where the itab of *net.TCPConn is, relative to the function
    // (the BPF program adds the probed address: right for a PIE loaded anywhere); 0 (no .symtab
    // or no such itab): the type is not checked, the fd must be a socket of the process.
    auto itab_cookie = [&](const GoProbedFunction& function) -> std::uint64_t {
        return target->tcp_conn_itab ? *target->tcp_conn_itab - function.address : 0;
    };
    attach_one(programs_.go_read_enter, target->read.file_offset, itab_cookie(target->read),
               target->read.name);
    attach_one(programs_.go_write_enter, target->write.file_offset, itab_cookie(target->write),
               target->write.name);
    spdlog::info("Go executable {} ({}): {} uprobes attached", library.path,
                 target->go_version.empty() ? "unknown Go" : target->go_version,
                 library.links.size());
}

std::size_t TlsLibraries::forget_dead_processes() {
    // Both maps' keys start {__u32 tgid; __u32 reserved; __u64 ...} (tls_session_key,
    // go_call_key).
    struct Key {
        std::uint32_t tgid;
        std::uint32_t reserved;
        std::uint64_t id;
    };
    std::size_t forgotten = 0;
    for (const int map : {programs_.sessions_map, programs_.go_calls_map}) {
        if (map < 0) continue;
        std::vector<Key> dead;
        std::map<std::uint32_t, bool> alive;
        Key key{}, next{};
        const Key* previous = nullptr;
        while (bpf_map_get_next_key(map, previous, &next) == 0) {
            auto [it, added] = alive.try_emplace(next.tgid, true);
            if (added)
                it->second = !(::kill(static_cast<pid_t>(next.tgid), 0) != 0 && errno == ESRCH);
            if (!it->second) dead.push_back(next);
            key = next;
            previous = &key;
        }
        for (const Key& k : dead)
            forgotten += bpf_map_delete_elem(map, &k) == 0;
    }
    return forgotten;
}

void TlsLibraries::scan(const std::vector<std::uint32_t>& pids, bool full) {
    std::lock_guard lock(mutex_);
    std::set<std::uint32_t> live(pids.begin(), pids.end());
    for (const std::uint32_t pid : pids) {
        if (!full && scanned_.contains(pid)) continue;
        std::vector<Executable> files;
        for (auto& [id, host_path] : libraries_of(pid))
            files.push_back({id, std::move(host_path), "openssl"});
        if (auto executable = probed_executable_of(pid)) files.push_back(std::move(*executable));
        for (const auto& file : files) {
            auto [it, added] = libraries_.try_emplace(file.id);
            Library& library = it->second;
            if (added) {
                library.kind = file.kind;
                library.path = display_path(file.path);
                if (file.kind == "go")
                    attach_go(library, file.path);
                else
                    attach(library, file.path);
            }
            library.pids.insert(pid);
        }
    }
    scanned_ = std::move(live);
    if (full) {
        if (const std::size_t n = forget_dead_processes())
            spdlog::debug("TLS: {} map entries of ended processes deleted", n);
    }
    for (auto it = libraries_.begin(); it != libraries_.end();) {
        std::erase_if(it->second.pids, [&](std::uint32_t pid) { return !scanned_.contains(pid); });
        if (full && it->second.pids.empty()) {
            spdlog::info("TLS library {}: no process maps it any more, uprobes detached",
                         it->second.path);
            it = libraries_.erase(it);
        } else {
            ++it;
        }
    }
}

std::vector<TlsLibraryStatus> TlsLibraries::status() const {
    std::lock_guard lock(mutex_);
    std::vector<TlsLibraryStatus> out;
    for (const auto& [id, library] : libraries_)
        out.push_back({library.kind, library.path, library.uprobes, library.pids.size(),
                       library.error, library.version});
    return out;
}

std::size_t TlsLibraries::attached_uprobes() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& [id, library] : libraries_)
        n += library.links.size();
    return n;
}

}  // namespace loupe::capture
