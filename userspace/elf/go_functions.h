// The functions of a Go executable, read from its .gopclntab: the table the Go runtime itself
// uses for tracebacks, present even when the binary is stripped (-ldflags='-s -w' removes
// .symtab, never .gopclntab). Used to name Go frames in profiles and to find crypto/tls's
// functions for the Go TLS uprobes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "util/result.h"

namespace loupe::elf {

struct GoFunction {
    std::string name;     // as the runtime names it: "crypto/tls.(*Conn).Read", "main.main"
    std::uint64_t entry;  // virtual address of the first instruction, as in the ELF file
    std::uint64_t end;    // virtual address just past the function
};

struct GoFunctions {
    std::string go_version;             // the pclntab format's first Go release ("1.18", "1.20")
    std::vector<GoFunction> functions;  // sorted by entry, not overlapping
    // The function containing `address`, or nullptr.
    const GoFunction* find(std::uint64_t address) const;
    // The function of that exact name, or nullptr.
    const GoFunction* find(const std::string& name) const;
};

// Reads the .gopclntab of the ELF file open at `fd` (pclntab formats of Go 1.16 to 1.23 on
// 64-bit little-endian). The error says why there are no functions: the file is not ELF, has no
// .gopclntab (not Go), or has a table this reader does not know or finds inconsistent.
Result<GoFunctions> read_go_functions(int fd);

// The same, from the section's bytes: `text_address` is the .text section's address, used when
// the table's own textStart is 0 (a position-independent executable before relocation).
Result<GoFunctions> parse_gopclntab(std::span<const std::uint8_t> table,
                                    std::uint64_t text_address);

}  // namespace loupe::elf
