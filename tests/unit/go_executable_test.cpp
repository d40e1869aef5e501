// What the Go TLS uprobes read of a Go executable (capture/go_executable.h), against real builds
// of tests/e2e/tls/gotls.go: the normal build (.symtab) and its stripped twin (.gopclntab) give
// the same functions, entry offsets and RET offsets, and every RET offset holds a RET (0xc3).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "capture/go_executable.h"

namespace {

using loupe::capture::go_minor_version;
using loupe::capture::is_go_executable;
using loupe::capture::read_go_tls_target;

TEST(GoExecutable, MinorVersion) {
    EXPECT_EQ(go_minor_version("go1.19.8"), 19);
    EXPECT_EQ(go_minor_version("go1.22rc1"), 22);
    EXPECT_EQ(go_minor_version("go1.9"), 9);
    EXPECT_FALSE(go_minor_version("devel +abc"));
    EXPECT_FALSE(go_minor_version("go1."));
    EXPECT_FALSE(go_minor_version(""));
}

TEST(GoExecutable, NotGoIsAnError) {
    EXPECT_FALSE(is_go_executable("/proc/self/exe"));
    EXPECT_FALSE(is_go_executable("/nonexistent"));
    auto target = read_go_tls_target("/proc/self/exe");
    ASSERT_FALSE(target);
    EXPECT_FALSE(target.error().empty());
}

TEST(GoExecutable, FindsReadWriteAndEveryRetInBothBuilds) {
    if (std::system("command -v go >/dev/null 2>&1") != 0) GTEST_SKIP() << "no go toolchain";
    const auto dir =
        std::filesystem::temp_directory_path() / ("loupe-gotls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string source = std::string(LOUPE_FIXTURES_DIR) + "/../e2e/tls/gotls.go";
    const std::string cache = " GOCACHE=" + (dir / "cache").string() + " CGO_ENABLED=0";
    const std::string build = "cd " + dir.string() + " &&" + cache + " go build -o gotls " +
                              source + " &&" + cache +
                              " go build -ldflags='-s -w' -o gotls-stripped " + source;
    ASSERT_EQ(std::system(build.c_str()), 0) << build;
    const std::string full = (dir / "gotls").string(), stripped = (dir / "gotls-stripped").string();
    ASSERT_TRUE(is_go_executable(full));
    ASSERT_TRUE(is_go_executable(stripped));

    auto a = read_go_tls_target(full);
    ASSERT_TRUE(a) << a.error();
    auto b = read_go_tls_target(stripped);
    ASSERT_TRUE(b) << b.error();
    EXPECT_TRUE(a->symbol_table);
    EXPECT_FALSE(b->symbol_table);
    EXPECT_TRUE(a->tcp_conn_itab);
    EXPECT_FALSE(b->tcp_conn_itab);
    EXPECT_TRUE(a->go_version.starts_with("go1.")) << a->go_version;
    EXPECT_EQ(a->go_version, b->go_version);

    std::ifstream in(full, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto* pair : {&a->read, &a->write}) {
        const auto& other = pair == &a->read ? b->read : b->write;
        EXPECT_EQ(pair->address, other.address) << pair->name;
        EXPECT_EQ(pair->file_offset, other.file_offset) << pair->name;
        EXPECT_EQ(pair->ret_offsets, other.ret_offsets) << pair->name;
        ASSERT_FALSE(pair->ret_offsets.empty()) << pair->name;
        for (const auto ret : pair->ret_offsets) {
            ASSERT_LT(ret, bytes.size());
            EXPECT_EQ(static_cast<unsigned char>(bytes[ret]), 0xc3) << pair->name << " +" << ret;
        }
    }
    std::filesystem::remove_all(dir);
}

}  // namespace
