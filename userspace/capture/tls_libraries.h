// The TLS libraries of the traced processes, and the uprobes of socket_capture.bpf.c attached to
// them: each libssl.so* file a process maps (found in /proc/PID/maps, opened through
// /proc/PID/root so that a container's own copy is found) gets the OpenSSL uprobes once, for
// every process (an uprobe lives on the file's inode: processes that map it later, or dlopen it,
// are traced at once). So does an executable with OpenSSL linked in statically (its symbol table
// defines SSL_read and SSL_write). So does a Go executable (go_executable.h): uprobes at the entry
// and at every RET of crypto/tls.(*Conn).Read and Write. A file stays attached while some scanned
// process maps it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "capture/bpf_handles.h"

struct bpf_program;

namespace loupe::capture {

// The programs attached to each library (from the socket capture's object).
struct TlsPrograms {
    bpf_program* read_enter = nullptr;       // SSL_read
    bpf_program* write_enter = nullptr;      // SSL_write
    bpf_program* read_ex_enter = nullptr;    // SSL_read_ex
    bpf_program* write_ex_enter = nullptr;   // SSL_write_ex
    bpf_program* call_return = nullptr;      // every one of the four, at return
    bpf_program* free_enter = nullptr;       // SSL_free
    bpf_program* handshake_enter = nullptr;  // SSL_do_handshake (its return: call_return)
    bpf_program* go_read_enter = nullptr;    // crypto/tls.(*Conn).Read, entry
    bpf_program* go_write_enter = nullptr;   // crypto/tls.(*Conn).Write, entry
    bpf_program* go_return = nullptr;        // every RET of both
    // Maps whose entries are keyed by process ({tgid, ...}): the entries of processes that ended
    // are deleted (forget_dead_processes). -1: none.
    int sessions_map = -1;  // tls_sessions
    int go_calls_map = -1;  // go_calls
};

// One library file and what is attached to it, for the API and `loupe doctor`.
struct TlsLibraryStatus {
    std::string library;               // "openssl" or "go"
    std::string path;                  // as the first process that mapped it names it
    std::vector<std::string> uprobes;  // functions probed ("SSL_read", "SSL_read (return)"...)
    std::size_t processes = 0;         // scanned processes that map it
    std::string error;                 // why some or all uprobes could not attach
    std::string version;               // go: the Go release that built it ("go1.19.8")
};

// A Go executable that running processes run (for `loupe doctor`).
struct GoExecutable {
    std::string path;
    std::size_t processes = 0;
    std::string go_version;
    std::string error;  // why the agent could not probe it
};

// The Go executables of the running processes, each file once.
std::vector<GoExecutable> find_go_executables();

// The functions the agent probes in each OpenSSL library, in order.
inline constexpr const char* kOpenSslProbedFunctions[] = {
    "SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex", "SSL_do_handshake", "SSL_free"};

// The OpenSSL libraries the running processes map now (for `loupe doctor`): each file once, by
// the path its first process names it, with the number of processes that map it.
std::map<std::string, std::size_t> find_tls_libraries();

class TlsLibraries {
  public:
    explicit TlsLibraries(TlsPrograms programs) : programs_(programs) {}

    // Reads the maps of `pids` (all of them when `full`, else those not scanned before) and
    // attaches to the libraries not attached yet; forgets the processes not in `pids` and detaches
    // from the libraries no process maps any more (only on a full scan: a partial one does not
    // know).
    void scan(const std::vector<std::uint32_t>& pids, bool full);

    std::vector<TlsLibraryStatus> status() const;
    // Uprobes attached, over every library.
    std::size_t attached_uprobes() const;
    // Deletes the BPF map entries (TLS sessions, goroutines' calls) of processes that ended: a
    // process killed inside a TLS call, or before it freed its SSL objects, leaves them. Returns
    // how many went.
    std::size_t forget_dead_processes();

  private:
    struct FileId {
        dev_t device = 0;
        ino_t inode = 0;
        auto operator<=>(const FileId&) const = default;
    };
    struct Library {
        Library() = default;
        Library(const Library&) = delete;
        Library& operator=(const Library&) = delete;
        // Detaches in the reverse order of attach: entry uprobes before return ones.
        ~Library() {
            while (!links.empty())
                links.pop_back();
        }
        std::string kind = "openssl";  // or "go"
        std::string version;           // go: its Go release
        std::string path;
        std::vector<BpfLinkPtr> links;
        std::vector<std::string> uprobes;
        std::string error;
        std::set<std::uint32_t> pids;  // the refcount: processes that map it
    };
    friend std::map<std::string, std::size_t> find_tls_libraries();
    friend std::vector<GoExecutable> find_go_executables();
    // The libssl files process `pid` maps: the file, and its path as opened from the host
    // (through /proc/PID/root).
    static std::vector<std::pair<FileId, std::string>> libraries_of(std::uint32_t pid);
    // Process `pid`'s executable (/proc/PID/exe) when OpenSSL is linked into it, or it is a Go
    // executable: the file, its path, and "openssl" or "go".
    struct Executable {
        FileId id;
        std::string path;
        std::string kind;
    };
    std::optional<Executable> probed_executable_of(std::uint32_t pid);
    void attach(Library& library, const std::string& host_path);
    void attach_go(Library& library, const std::string& host_path);

    TlsPrograms programs_;
    mutable std::mutex mutex_;
    std::map<FileId, Library> libraries_;
    std::set<std::uint32_t> scanned_;
    // Executables whose symbols were read and hold no OpenSSL nor Go: each is read once (bounded:
    // the set starts over when full).
    static constexpr std::size_t kMaxPlainExecutables = 4096;
    std::set<FileId> plain_executables_;
};

}  // namespace loupe::capture
