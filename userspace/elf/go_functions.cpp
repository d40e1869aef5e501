#include "elf/go_functions.h"

#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string_view>

#include <fmt/format.h>

namespace loupe::elf {
namespace {

// The table's magic number names its layout (the Go release that introduced it).
constexpr std::uint32_t kMagic12 = 0xfffffffb;   // Go 1.2 to 1.15
constexpr std::uint32_t kMagic116 = 0xfffffffa;  // Go 1.16 and 1.17
constexpr std::uint32_t kMagic118 = 0xfffffff0;  // Go 1.18 and 1.19
constexpr std::uint32_t kMagic120 = 0xfffffff1;  // Go 1.20 and later

// A Go function name longer than this is taken for a corrupt table, not a name.
constexpr std::size_t kMaxNameBytes = 4096;

// Little-endian reads that fail rather than run off the table: every offset in the table comes
// from the file, and a crafted executable must give an error, not a crash.
class TableReader {
  public:
    explicit TableReader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

    bool u32(std::uint64_t offset, std::uint32_t& out) const { return read(offset, 4, out); }
    bool u64(std::uint64_t offset, std::uint64_t& out) const { return read(offset, 8, out); }

    // The NUL-terminated string at `offset`, or nullopt.
    std::optional<std::string_view> c_string(std::uint64_t offset) const {
        if (offset >= bytes_.size()) return std::nullopt;
        const auto* start = reinterpret_cast<const char*>(bytes_.data() + offset);
        const std::size_t room = std::min<std::size_t>(bytes_.size() - offset, kMaxNameBytes);
        const void* end = std::memchr(start, '\0', room);
        if (!end || end == start) return std::nullopt;
        return std::string_view(start, static_cast<const char*>(end) - start);
    }

    std::size_t size() const { return bytes_.size(); }

  private:
    template <typename T>
    bool read(std::uint64_t offset, std::size_t width, T& out) const {
        if (offset > bytes_.size() || bytes_.size() - offset < width) return false;
        T value = 0;
        for (std::size_t i = 0; i < width; ++i)
            value |= static_cast<T>(bytes_[offset + i]) << (8 * i);
        out = value;
        return true;
    }

    std::span<const std::uint8_t> bytes_;
};

// Where the parts of the table are, whatever its layout.
struct TableLayout {
    std::string go_version;
    std::uint64_t function_count = 0;
    std::uint64_t text_start = 0;      // added to entry offsets (1.18+)
    std::uint64_t function_names = 0;  // base of name offsets
    std::uint64_t function_table = 0;  // the functab: (entry, offset of _func) pairs
    std::uint64_t function_data = 0;   // base of the _func offsets
    bool relative_entries = false;     // 32-bit entries relative to text_start (1.18+)
};

Result<TableLayout> read_layout(const TableReader& table, std::uint64_t text_address) {
    std::uint32_t magic = 0;
    if (!table.u32(0, magic)) return Error{".gopclntab is shorter than its header"};
    std::uint32_t shape = 0;  // pad, pad, instruction quantum, pointer size
    if (!table.u32(4, shape)) return Error{".gopclntab is shorter than its header"};
    if ((shape & 0xffff) != 0 || (shape >> 24) != 8)
        return Error{"not a 64-bit .gopclntab (pointer size or padding unexpected)"};

    TableLayout layout;
    std::uint64_t field[8] = {};
    auto header_word = [&](int index) { return table.u64(8 + 8 * index, field[index]); };
    switch (magic) {
        case kMagic12: {
            layout.go_version = "1.2";
            if (!header_word(0)) return Error{".gopclntab is shorter than its header"};
            layout.function_count = field[0];
            layout.function_table = 16;
            layout.function_data = 0;
            layout.function_names = 0;
            break;
        }
        case kMagic116: {
            layout.go_version = "1.16";
            for (int i = 0; i < 7; ++i)
                if (!header_word(i)) return Error{".gopclntab is shorter than its header"};
            // nfunc, nfiles, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
            layout.function_count = field[0];
            layout.function_names = field[2];
            layout.function_table = field[6];
            layout.function_data = field[6];
            break;
        }
        case kMagic118:
        case kMagic120: {
            layout.go_version = magic == kMagic118 ? "1.18" : "1.20";
            for (int i = 0; i < 8; ++i)
                if (!header_word(i)) return Error{".gopclntab is shorter than its header"};
            // nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset,
            // pclnOffset
            layout.function_count = field[0];
            layout.text_start = field[2] != 0 ? field[2] : text_address;
            layout.function_names = field[3];
            layout.function_table = field[7];
            layout.function_data = field[7];
            layout.relative_entries = true;
            break;
        }
        default:
            return Error{fmt::format(".gopclntab magic {:#x} is not a known Go table", magic)};
    }
    const std::uint64_t entry_bytes = layout.relative_entries ? 8 : 16;
    if (layout.function_count == 0 || layout.function_table >= table.size() ||
        layout.function_count > (table.size() - layout.function_table) / entry_bytes)
        return Error{fmt::format(".gopclntab claims {} functions, more than it can hold",
                                 layout.function_count)};
    return layout;
}

}  // namespace

const GoFunction* GoFunctions::find(std::uint64_t address) const {
    auto it = std::upper_bound(functions.begin(), functions.end(), address,
                               [](std::uint64_t a, const GoFunction& f) { return a < f.entry; });
    if (it == functions.begin()) return nullptr;
    --it;
    return address < it->end ? &*it : nullptr;
}

const GoFunction* GoFunctions::find(const std::string& name) const {
    for (const auto& function : functions)
        if (function.name == name) return &function;
    return nullptr;
}

Result<GoFunctions> parse_gopclntab(std::span<const std::uint8_t> bytes,
                                    std::uint64_t text_address) {
    const TableReader table(bytes);
    auto layout = read_layout(table, text_address);
    if (!layout) return Error{layout.error()};

    // The functab holds function_count + 1 entries: the last one's entry is the end of the text,
    // where the last function ends.
    auto entry_at = [&](std::uint64_t index, std::uint64_t& entry, std::uint64_t& data) {
        if (layout->relative_entries) {
            std::uint32_t offset = 0, data_offset = 0;
            if (!table.u32(layout->function_table + 8 * index, offset) ||
                !table.u32(layout->function_table + 8 * index + 4, data_offset))
                return false;
            entry = layout->text_start + offset;
            data = data_offset;
            return true;
        }
        return table.u64(layout->function_table + 16 * index, entry) &&
               table.u64(layout->function_table + 16 * index + 8, data);
    };

    GoFunctions result;
    result.go_version = layout->go_version;
    result.functions.reserve(layout->function_count);
    std::uint64_t entry = 0, data = 0;
    if (!entry_at(0, entry, data)) return Error{".gopclntab's function table is cut short"};
    for (std::uint64_t i = 0; i < layout->function_count; ++i) {
        std::uint64_t next_entry = 0, next_data = 0;
        if (!entry_at(i + 1, next_entry, next_data))
            return Error{".gopclntab's function table is cut short"};
        if (next_entry < entry)
            return Error{
                fmt::format(".gopclntab's function {} starts before function {}", i + 1, i)};
        // _func begins with the entry (32-bit offset from 1.18, else a pointer), then the name's
        // 32-bit offset.
        const std::uint64_t name_field =
            layout->function_data + data + (layout->relative_entries ? 4 : 8);
        std::uint32_t name_offset = 0;
        if (data >= table.size() || !table.u32(name_field, name_offset))
            return Error{fmt::format(".gopclntab's function {} lies outside the table", i)};
        auto name = table.c_string(layout->function_names + name_offset);
        if (!name) return Error{fmt::format(".gopclntab's function {} has no readable name", i)};
        if (next_entry > entry) result.functions.push_back({std::string(*name), entry, next_entry});
        entry = next_entry;
        data = next_data;
    }
    return result;
}

Result<GoFunctions> read_go_functions(int fd) {
    if (elf_version(EV_CURRENT) == EV_NONE) return Error{"libelf is unusable"};
    Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    if (!elf) return Error{"not an ELF file"};
    struct ElfCloser {
        Elf* elf;
        ~ElfCloser() { elf_end(elf); }
    } closer{elf};
    if (elf_kind(elf) != ELF_K_ELF || gelf_getclass(elf) != ELFCLASS64)
        return Error{"not a 64-bit ELF file"};
    std::size_t names_index = 0;
    if (elf_getshdrstrndx(elf, &names_index) != 0)
        return Error{"the ELF file has no section names"};

    std::span<const std::uint8_t> table;
    std::uint64_t text_address = 0;
    for (Elf_Scn* section = elf_nextscn(elf, nullptr); section;
         section = elf_nextscn(elf, section)) {
        GElf_Shdr header;
        if (!gelf_getshdr(section, &header)) continue;
        const char* name = elf_strptr(elf, names_index, header.sh_name);
        if (!name) continue;
        if (std::strcmp(name, ".text") == 0) text_address = header.sh_addr;
        if (std::strcmp(name, ".gopclntab") != 0 || header.sh_type == SHT_NOBITS) continue;
        Elf_Data* data = elf_getdata(section, nullptr);
        if (!data || !data->d_buf) return Error{".gopclntab is unreadable"};
        table = {static_cast<const std::uint8_t*>(data->d_buf), data->d_size};
    }
    if (table.empty()) return Error{"no .gopclntab section: not a Go executable"};
    return parse_gopclntab(table, text_address);
}

}  // namespace loupe::elf
