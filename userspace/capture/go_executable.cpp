#include "capture/go_executable.h"

#include "elf/go_functions.h"

#include <capstone/capstone.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

namespace loupe::capture {
namespace {

// The itab of (*net.TCPConn, net.Conn): "go:itab." since Go 1.20, "go.itab." before.
constexpr std::string_view kTcpConnItab = "go:itab.*net.TCPConn,net.Conn";
constexpr std::string_view kTcpConnItabOld = "go.itab.*net.TCPConn,net.Conn";

// Closes what elf_begin opened.
struct ElfFile {
    int fd = -1;
    Elf* elf = nullptr;
    explicit ElfFile(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
        if (fd >= 0 && elf_version(EV_CURRENT) != EV_NONE)
            elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    }
    ~ElfFile() {
        if (elf) elf_end(elf);
        if (fd >= 0) ::close(fd);
    }
    ElfFile(const ElfFile&) = delete;
    ElfFile& operator=(const ElfFile&) = delete;
};

struct Section {
    Elf_Scn* scn = nullptr;
    GElf_Shdr header{};
};

std::optional<Section> find_section(Elf* elf, std::string_view name) {
    std::size_t names = 0;
    if (elf_getshdrstrndx(elf, &names) != 0) return std::nullopt;
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
        Section s{scn, {}};
        if (!gelf_getshdr(scn, &s.header)) continue;
        const char* n = elf_strptr(elf, names, s.header.sh_name);
        if (n && name == n) return s;
    }
    return std::nullopt;
}

// `size` bytes at virtual address `address`, from the section that holds them (not .bss).
std::optional<std::string_view> bytes_at(Elf* elf, std::uint64_t address, std::uint64_t size) {
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr h;
        if (!gelf_getshdr(scn, &h) || h.sh_type == SHT_NOBITS || !(h.sh_flags & SHF_ALLOC) ||
            address < h.sh_addr || address - h.sh_addr + size > h.sh_size)
            continue;
        Elf_Data* data = elf_getdata(scn, nullptr);
        if (!data || !data->d_buf || address - h.sh_addr + size > data->d_size) return std::nullopt;
        return std::string_view(static_cast<const char*>(data->d_buf) + (address - h.sh_addr),
                                size);
    }
    return std::nullopt;
}

// The file offset of virtual address `address` (a uprobe's offset is a file offset).
std::optional<std::uint64_t> file_offset_of(Elf* elf, std::uint64_t address) {
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr h;
        if (gelf_getshdr(scn, &h) && h.sh_type != SHT_NOBITS && (h.sh_flags & SHF_EXECINSTR) &&
            address >= h.sh_addr && address < h.sh_addr + h.sh_size)
            return h.sh_offset + (address - h.sh_addr);
    }
    return std::nullopt;
}

std::uint64_t read_uint(std::string_view bytes, std::size_t size, bool big_endian) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < size && i < bytes.size(); ++i) {
        const auto b = static_cast<unsigned char>(bytes[big_endian ? i : size - 1 - i]);
        v = (v << 8) | b;
    }
    return v;
}

// The Go version recorded in .go.buildinfo: "\xff Go buildinf:", pointer size, flags; Go 1.18+
// (flag 2) stores the version inline (a varint length, then the bytes) at offset 32, earlier
// releases a pointer to a Go string header at offset 16.
std::string go_version_of(Elf* elf) {
    const auto section = find_section(elf, ".go.buildinfo");
    if (!section) return "";
    Elf_Data* data = elf_getdata(section->scn, nullptr);
    if (!data || !data->d_buf || data->d_size < 32) return "";
    const std::string_view info(static_cast<const char*>(data->d_buf), data->d_size);
    if (!info.starts_with("\xff Go buildinf:")) return "";
    const std::size_t pointer = static_cast<unsigned char>(info[14]);
    const auto flags = static_cast<unsigned char>(info[15]);
    if (flags & 2) {
        std::uint64_t length = 0;
        std::size_t at = 32;
        for (int shift = 0; at < info.size() && shift < 64; shift += 7) {
            const auto b = static_cast<unsigned char>(info[at++]);
            length |= static_cast<std::uint64_t>(b & 0x7f) << shift;
            if (!(b & 0x80)) break;
        }
        if (length > 64 || at + length > info.size()) return "";
        return std::string(info.substr(at, length));
    }
    if (pointer != 8 && pointer != 4) return "";
    const bool big_endian = flags & 1;
    const auto header = bytes_at(elf, read_uint(info.substr(16), pointer, big_endian), 2 * pointer);
    if (!header) return "";
    const std::uint64_t length = read_uint(header->substr(pointer), pointer, big_endian);
    if (length > 64) return "";
    const auto text = bytes_at(elf, read_uint(*header, pointer, big_endian), length);
    return text ? std::string(*text) : "";
}

// Fills `function`'s file offsets: its first instruction's and every RET's, from a linear
// disassembly of its `size` bytes (Go's amd64 code holds no data between instructions). A
// function that does not decode to its last byte is refused: a uprobe placed inside an
// instruction would corrupt the program.
Result<bool> find_returns(Elf* elf, GoProbedFunction& function, std::uint64_t size) {
    const auto offset = file_offset_of(elf, function.address);
    const auto code = bytes_at(elf, function.address, size);
    if (!offset || !code || size == 0)
        return Error{function.name + ": its code is not in an executable section"};
    function.file_offset = *offset;
    csh handle = 0;
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle) != CS_ERR_OK)
        return Error{"capstone cannot disassemble x86-64"};
    cs_insn* insns = nullptr;
    const std::size_t count = cs_disasm(handle, reinterpret_cast<const std::uint8_t*>(code->data()),
                                        code->size(), function.address, 0, &insns);
    std::uint64_t decoded = 0;
    for (std::size_t i = 0; i < count; ++i) {
        if (insns[i].id == X86_INS_RET) function.ret_offsets.push_back(*offset + decoded);
        decoded += insns[i].size;
    }
    if (count) cs_free(insns, count);
    cs_close(&handle);
    if (decoded != size)
        return Error{function.name + ": disassembly stopped at byte " + std::to_string(decoded) +
                     " of " + std::to_string(size)};
    if (function.ret_offsets.empty()) return Error{function.name + ": no RET instruction found"};
    return true;
}

}  // namespace

bool is_go_executable(const std::string& path) {
    ElfFile file(path);
    if (!file.elf || elf_kind(file.elf) != ELF_K_ELF) return false;
    return find_section(file.elf, ".go.buildinfo") || find_section(file.elf, ".gopclntab");
}

std::optional<int> go_minor_version(const std::string& go_version) {
    if (!go_version.starts_with("go1.")) return std::nullopt;
    int minor = 0;
    std::size_t at = 4;
    for (; at < go_version.size() && go_version[at] >= '0' && go_version[at] <= '9'; ++at)
        minor = minor * 10 + (go_version[at] - '0');
    if (at == 4 || minor > 1000) return std::nullopt;
    return minor;
}

Result<GoTlsTarget> read_go_tls_target(const std::string& path) {
    ElfFile file(path);
    if (!file.elf || elf_kind(file.elf) != ELF_K_ELF) return Error{"not an ELF file"};
    GElf_Ehdr ehdr;
    if (!gelf_getehdr(file.elf, &ehdr) || ehdr.e_machine != EM_X86_64)
        return Error{"not an x86-64 executable (Go TLS capture is amd64 only)"};
    GoTlsTarget target;
    target.go_version = go_version_of(file.elf);
    if (const auto minor = go_minor_version(target.go_version); minor && *minor < 17)
        return Error{target.go_version +
                     ": Go before 1.17 passes arguments on the stack, which is not supported"};
    target.read.name = kGoProbedFunctions[0];
    target.write.name = kGoProbedFunctions[1];
    std::uint64_t read_size = 0, write_size = 0;
    if (const auto symtab = find_section(file.elf, ".symtab");
        symtab && symtab->header.sh_entsize) {
        target.symbol_table = true;
        Elf_Data* data = elf_getdata(symtab->scn, nullptr);
        const std::size_t count = data ? symtab->header.sh_size / symtab->header.sh_entsize : 0;
        for (std::size_t i = 0; i < count; ++i) {
            GElf_Sym symbol;
            if (!gelf_getsym(data, static_cast<int>(i), &symbol) || symbol.st_shndx == SHN_UNDEF)
                continue;
            const char* name = elf_strptr(file.elf, symtab->header.sh_link, symbol.st_name);
            if (!name) continue;
            const std::string_view n(name);
            if (n == target.read.name) {
                target.read.address = symbol.st_value;
                read_size = symbol.st_size;
            } else if (n == target.write.name) {
                target.write.address = symbol.st_value;
                write_size = symbol.st_size;
            } else if (n == kTcpConnItab || n == kTcpConnItabOld) {
                target.tcp_conn_itab = symbol.st_value;
            }
        }
    } else {
        // Stripped: the runtime's own function table names them (entry and end: the size).
        auto functions = elf::read_go_functions(file.fd);
        if (!functions) return Error{"stripped, and its .gopclntab: " + functions.error()};
        for (GoProbedFunction* function : {&target.read, &target.write}) {
            if (const elf::GoFunction* found = functions->find(function->name)) {
                function->address = found->entry;
                (function == &target.read ? read_size : write_size) = found->end - found->entry;
            }
        }
    }
    if (!target.read.address || !target.write.address)
        return Error{"no crypto/tls.(*Conn).Read and Write in it (no TLS, or not linked in)"};
    if (auto r = find_returns(file.elf, target.read, read_size); !r) return Error{r.error()};
    if (auto r = find_returns(file.elf, target.write, write_size); !r) return Error{r.error()};
    return target;
}

}  // namespace loupe::capture
