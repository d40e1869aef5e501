// What the Go TLS uprobes need of a Go executable: its Go version, the file offsets of
// crypto/tls.(*Conn).Read and Write and of every RET instruction in them (found by disassembling
// the functions with capstone: a Go function is probed at each RET, never with a uretprobe, which
// crashes Go programs when a goroutine's stack moves), and the address of the itab that marks a
// net.Conn holding a *net.TCPConn.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace loupe::capture {

struct GoProbedFunction {
    std::string name;                        // "crypto/tls.(*Conn).Read"
    std::uint64_t address = 0;               // virtual address of its first instruction
    std::uint64_t file_offset = 0;           // of its first instruction: where a uprobe goes
    std::vector<std::uint64_t> ret_offsets;  // file offsets of its RET instructions
};

struct GoTlsTarget {
    std::string go_version;     // "go1.19.8", from .go.buildinfo ("" when unreadable)
    bool symbol_table = false;  // .symtab present (false: stripped; functions from .gopclntab)
    GoProbedFunction read;
    GoProbedFunction write;
    // Virtual address of go:itab.*net.TCPConn,net.Conn (.symtab only).
    std::optional<std::uint64_t> tcp_conn_itab;
};

// The functions Go TLS capture probes, in order.
inline constexpr const char* kGoProbedFunctions[] = {"crypto/tls.(*Conn).Read",
                                                     "crypto/tls.(*Conn).Write"};

// Whether the ELF file at `path` is a Go executable (it has a .go.buildinfo or .gopclntab
// section). False for files that cannot be read.
bool is_go_executable(const std::string& path);

// "go1.19.8" -> 19; nullopt when the string is not a Go release's.
std::optional<int> go_minor_version(const std::string& go_version);

// Reads what the uprobes need from the Go executable at `path`. An error says why the file
// cannot be probed: not an x86-64 Go executable, a Go older than 1.17 (stack-based calling
// convention), no crypto/tls in it, or a function that does not disassemble cleanly.
Result<GoTlsTarget> read_go_tls_target(const std::string& path);

}  // namespace loupe::capture
