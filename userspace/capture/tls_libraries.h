// The TLS libraries of the traced processes, and the uprobes of socket_capture.bpf.c attached to
// them: each libssl.so* file a process maps (found in /proc/PID/maps, opened through
// /proc/PID/root so that a container's own copy is found) gets the OpenSSL uprobes once, for
// every process (an uprobe lives on the file's inode: processes that map it later, or dlopen it,
// are traced at once). So does an executable with OpenSSL linked in statically (its symbol table
// defines SSL_read and SSL_write). A file stays attached while some scanned process maps it.
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
};

// One library file and what is attached to it, for the API and `loupe doctor`.
struct TlsLibraryStatus {
    std::string library;               // "openssl"
    std::string path;                  // as the first process that mapped it names it
    std::vector<std::string> uprobes;  // functions probed ("SSL_read", "SSL_read (return)"...)
    std::size_t processes = 0;         // scanned processes that map it
    std::string error;                 // why some or all uprobes could not attach
};

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
        std::string path;
        std::vector<BpfLinkPtr> links;
        std::vector<std::string> uprobes;
        std::string error;
        std::set<std::uint32_t> pids;  // the refcount: processes that map it
    };
    friend std::map<std::string, std::size_t> find_tls_libraries();
    // The libssl files process `pid` maps: the file, and its path as opened from the host
    // (through /proc/PID/root).
    static std::vector<std::pair<FileId, std::string>> libraries_of(std::uint32_t pid);
    // Process `pid`'s executable (/proc/PID/exe) when OpenSSL is linked into it.
    std::optional<std::pair<FileId, std::string>> static_openssl_of(std::uint32_t pid);
    void attach(Library& library, const std::string& host_path);

    TlsPrograms programs_;
    mutable std::mutex mutex_;
    std::map<FileId, Library> libraries_;
    std::set<std::uint32_t> scanned_;
    // Executables whose symbols were read and hold no OpenSSL: each is read once (bounded: the
    // set starts over when full).
    static constexpr std::size_t kMaxPlainExecutables = 4096;
    std::set<FileId> plain_executables_;
};

}  // namespace loupe::capture
