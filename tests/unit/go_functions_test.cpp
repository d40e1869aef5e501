#include "elf/go_functions.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "profile/symbolizer.h"
#include "util/unique_fd.h"

namespace {

using loupe::elf::parse_gopclntab;

// Builds a table in the layout of Go 1.18 and later (magic 0xfffffff0 or 0xfffffff1): header,
// function names, functab of (entry offset, _func offset) pairs, then the _func records.
struct Table118 {
    std::uint32_t magic = 0xfffffff0;
    std::uint64_t text_start = 0x401000;
    std::vector<std::pair<std::string, std::uint32_t>> functions;  // name, entry offset
    std::uint32_t text_end = 0;

    std::vector<std::uint8_t> bytes() const {
        std::vector<std::uint8_t> out;
        auto put = [&](std::uint64_t value, int width) {
            for (int i = 0; i < width; ++i)
                out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
        };
        const std::uint64_t header = 8 + 8 * 8;
        std::string names;
        std::vector<std::uint32_t> name_offsets;
        for (const auto& [name, entry] : functions) {
            name_offsets.push_back(static_cast<std::uint32_t>(names.size()));
            names += name + '\0';
        }
        const std::uint64_t pcln = header + names.size();
        put(magic, 4);
        put(0, 2);
        put(1, 1);  // instruction quantum
        put(8, 1);  // pointer size
        put(functions.size(), 8);
        put(0, 8);  // files
        put(text_start, 8);
        put(header, 8);  // function names
        put(0, 8);
        put(0, 8);
        put(0, 8);
        put(pcln, 8);
        out.insert(out.end(), names.begin(), names.end());
        const std::uint64_t funcs = 8 * (functions.size() + 1);
        for (std::size_t i = 0; i < functions.size(); ++i) {
            put(functions[i].second, 4);
            put(funcs + 8 * i, 4);
        }
        put(text_end, 4);
        put(0, 4);
        for (std::size_t i = 0; i < functions.size(); ++i) {
            put(functions[i].second, 4);
            put(name_offsets[i], 4);
        }
        return out;
    }
};

TEST(GoFunctions, ReadsTheGo118Layout) {
    Table118 table{.functions = {{"runtime.main", 0x0}, {"main.main", 0x40}, {"main.hot", 0x90}},
                   .text_end = 0x100};
    auto result = parse_gopclntab(table.bytes(), 0);
    ASSERT_TRUE(result) << result.error();
    EXPECT_EQ(result->go_version, "1.18");
    ASSERT_EQ(result->functions.size(), 3u);
    EXPECT_EQ(result->functions[1].name, "main.main");
    EXPECT_EQ(result->functions[1].entry, 0x401040u);
    EXPECT_EQ(result->functions[1].end, 0x401090u);
    EXPECT_EQ(result->find(0x4010ff)->name, "main.hot");
    EXPECT_EQ(result->find(0x401100), nullptr);
    EXPECT_EQ(result->find(0x400fff), nullptr);
    EXPECT_EQ(result->find(std::string("main.hot"))->entry, 0x401090u);
}

// The layout of Go 1.2 to 1.15 (magic 0xfffffffb): header, functab of 64-bit (entry, _func
// offset) pairs, _func records (entry, name offset), names; every offset from the table's start.
TEST(GoFunctions, ReadsTheGo12Layout) {
    std::vector<std::uint8_t> out;
    auto put = [&](std::uint64_t value, int width) {
        for (int i = 0; i < width; ++i)
            out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
    };
    const std::uint64_t functab = 16, funcs = functab + 16 * 3, names = funcs + 2 * 16;
    put(0xfffffffb, 4);
    put(0, 2);
    put(1, 1);
    put(8, 1);
    put(2, 8);
    put(0x401000, 8), put(funcs, 8);
    put(0x401020, 8), put(funcs + 16, 8);
    put(0x401050, 8), put(0, 8);
    put(0x401000, 8), put(names, 4), put(0, 4);
    put(0x401020, 8), put(names + 7, 4), put(0, 4);
    for (char c : std::string("main.a\0main.b\0", 14))
        out.push_back(static_cast<std::uint8_t>(c));
    auto result = parse_gopclntab(out, 0);
    ASSERT_TRUE(result) << result.error();
    EXPECT_EQ(result->go_version, "1.2");
    ASSERT_EQ(result->functions.size(), 2u);
    EXPECT_EQ(result->functions[0].name, "main.a");
    EXPECT_EQ(result->functions[1].name, "main.b");
    EXPECT_EQ(result->functions[1].entry, 0x401020u);
    EXPECT_EQ(result->functions[1].end, 0x401050u);
}

TEST(GoFunctions, APositionIndependentTableTakesTheTextSectionsAddress) {
    Table118 table{
        .magic = 0xfffffff1, .text_start = 0, .functions = {{"main.main", 0}}, .text_end = 0x20};
    auto result = parse_gopclntab(table.bytes(), 0x1000);
    ASSERT_TRUE(result) << result.error();
    EXPECT_EQ(result->go_version, "1.20");
    EXPECT_EQ(result->functions[0].entry, 0x1000u);
}

TEST(GoFunctions, BadTablesGiveAnErrorNotACrash) {
    Table118 table{.functions = {{"a", 0}, {"b", 0x10}}, .text_end = 0x20};
    const auto good = table.bytes();
    EXPECT_EQ(parse_gopclntab({}, 0).error(), ".gopclntab is shorter than its header");
    auto unknown = good;
    unknown[0] = 0x12;
    EXPECT_NE(parse_gopclntab(unknown, 0).error().find("not a known Go table"), std::string::npos);
    // Every truncation is an error, never a read past the end.
    for (std::size_t size = 0; size < good.size(); ++size)
        EXPECT_FALSE(parse_gopclntab({good.data(), size}, 0)) << size;
    // A function count the table cannot hold.
    auto huge = good;
    huge[15] = 0x7f;
    EXPECT_FALSE(parse_gopclntab(huge, 0));
    // Entries out of order.
    Table118 backwards{.functions = {{"a", 0x10}, {"b", 0}}, .text_end = 0x20};
    EXPECT_FALSE(parse_gopclntab(backwards.bytes(), 0));
}

TEST(GoFunctions, NotGoIsAnError) {
    loupe::util::UniqueFd self(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    auto result = loupe::elf::read_go_functions(self.get());
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error(), "no .gopclntab section: not a Go executable");
}

// A real Go executable: every function of .gopclntab is a function of the linker's .symtab, at
// the same address, with the same name (but for the linker's spelling, below); and the stripped
// build reads the same table.
TEST(GoFunctions, AgreesWithTheSymbolTableOfARealGoBinary) {
    if (std::system("command -v go >/dev/null 2>&1") != 0) GTEST_SKIP() << "no go toolchain";
    const auto dir =
        std::filesystem::temp_directory_path() / ("loupe-go-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string source = std::string(LOUPE_FIXTURES_DIR) + "/../e2e/profile/spin.go";
    const std::string build = "cd " + dir.string() + " && GOCACHE=" + (dir / "cache").string() +
                              " go build -o spin " + source +
                              " && GOCACHE=" + (dir / "cache").string() +
                              " go build -ldflags='-s -w' -o spin-stripped " + source;
    ASSERT_EQ(std::system(build.c_str()), 0) << build;

    loupe::util::UniqueFd full(::open((dir / "spin").c_str(), O_RDONLY | O_CLOEXEC));
    auto functions = loupe::elf::read_go_functions(full.get());
    ASSERT_TRUE(functions) << functions.error();
    auto symbols = loupe::profile::ElfSymbols::load(full.get());
    ASSERT_TRUE(symbols);
    std::size_t checked = 0;
    for (const auto& function : functions->functions) {
        const std::string* name = symbols->lookup(function.entry);
        ASSERT_TRUE(name) << function.name;
        // The linker's symbol table names assembly functions (Go's ABI0) with a suffix, and
        // spells out the array lengths that the runtime's table writes as "[...]".
        const std::string linker_name =
            std::regex_replace(*name, std::regex(R"(\[[0-9]+\])"), "[...]");
        EXPECT_TRUE(linker_name == function.name || linker_name == function.name + ".abi0")
            << *name << " against " << function.name;
        ++checked;
    }
    EXPECT_GT(checked, 1000u);
    EXPECT_TRUE(functions->find(std::string("main.spinHot")));

    loupe::util::UniqueFd stripped(::open((dir / "spin-stripped").c_str(), O_RDONLY | O_CLOEXEC));
    auto stripped_functions = loupe::elf::read_go_functions(stripped.get());
    ASSERT_TRUE(stripped_functions) << stripped_functions.error();
    EXPECT_EQ(stripped_functions->functions.size(), functions->functions.size());
    // The stripped build's symbolizer names Go frames from .gopclntab.
    auto stripped_symbols = loupe::profile::ElfSymbols::load(stripped.get());
    ASSERT_TRUE(stripped_symbols);
    const auto* hot = stripped_functions->find(std::string("main.spinHot"));
    ASSERT_TRUE(hot);
    const std::string* hot_name = stripped_symbols->lookup(hot->entry + 1);
    ASSERT_TRUE(hot_name);
    EXPECT_EQ(*hot_name, "main.spinHot");
    std::filesystem::remove_all(dir);
}

}  // namespace
