// Symbolization and output formats of CPU profiles (no kernel: the symbolizer reads this test's
// own process through /proc).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "agent/agent_config.h"
#include "cli/profile/profile_command.h"
#include "cli/top/snapshot.h"
#include "profile/profile.h"
#include "profile/symbolizer.h"

namespace {

extern "C" __attribute__((noinline)) int loupe_profile_test_marker(int x) {
    return x * 3 + 1;
}

namespace sample_ns {
__attribute__((noinline)) int templated_marker(int x) {
    return x * 5 + 2;
}
}  // namespace sample_ns

using loupe::profile::Frame;

TEST(ProfileSymbolizer, NamesFunctionsOfItsOwnProcess) {
    loupe::profile::Symbolizer symbolizer;
    const auto pid = static_cast<std::uint32_t>(::getpid());
    const auto marker = reinterpret_cast<std::uint64_t>(&loupe_profile_test_marker);
    const auto cxx = reinterpret_cast<std::uint64_t>(&sample_ns::templated_marker);
    // Leaf first: the first address is used as is, the others as return addresses (minus one).
    const auto frames = symbolizer.user_frames(pid, {marker + 1, cxx + 2});
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].function, "loupe_profile_test_marker");
    EXPECT_TRUE(frames[0].known);
    EXPECT_EQ(frames[1].function, "(anonymous namespace)::sample_ns::templated_marker(int)");
    EXPECT_EQ(frames[0].module, "loupe_unit_tests");
}

TEST(ProfileSymbolizer, UnknownAddressesAreNotNamed) {
    loupe::profile::Symbolizer symbolizer;
    const auto pid = static_cast<std::uint32_t>(::getpid());
    const auto frames = symbolizer.user_frames(pid, {0x10});
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_FALSE(frames[0].known);
    EXPECT_EQ(frames[0].function, "0x10");
}

TEST(ProfileSymbolizer, ParsesMaps) {
    const auto maps = loupe::profile::parse_maps(
        "55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1234 /usr/bin/app\n"
        "55d0c0a21000-55d0c0b00000 r-xp 00021000 fd:01 1234 /usr/bin/app\n"
        "7f0000000000-7f0000001000 r-xp 00000000 00:00 0 \n"
        "7f0000002000-7f0000003000 r-xp 00001000 fd:01 99 /tmp/lib x.so (deleted)\n");
    ASSERT_EQ(maps.size(), 3u);  // executable mappings only
    EXPECT_EQ(maps[0].start, 0x55d0c0a21000u);
    EXPECT_EQ(maps[0].offset, 0x21000u);
    EXPECT_EQ(maps[0].inode, 1234u);
    EXPECT_EQ(maps[0].path, "/usr/bin/app");
    EXPECT_EQ(maps[1].path, "");
    EXPECT_EQ(maps[2].path, "/tmp/lib x.so (deleted)");
}

TEST(ProfileSymbolizer, Demangles) {
    EXPECT_EQ(loupe::profile::demangle("_ZN3foo3barEv"), "foo::bar()");
    EXPECT_EQ(loupe::profile::demangle("main"), "main");
    EXPECT_EQ(loupe::profile::demangle("_Znot-a-name"), "_Znot-a-name");
}

TEST(ProfileSymbolizer, KernelSymbolsFromKallsymsText) {
    const std::string path = ::testing::TempDir() + "/kallsyms";
    std::ofstream(path) << "ffffffff81000000 T _stext\n"
                           "ffffffff81001000 t do_thing\n"
                           "ffffffff81002000 D some_data\n"
                           "ffffffffc0001000 t mod_fn\t[mymod]\n";
    loupe::profile::KernelSymbols kernel;
    kernel.load(path);
    EXPECT_EQ(kernel.lookup(0xffffffff81001010).function, "do_thing");
    EXPECT_EQ(kernel.lookup(0xffffffffc0001004).module, "[mymod]");
    EXPECT_EQ(kernel.lookup(0xffffffffc0001004).function, "mod_fn");
    EXPECT_FALSE(kernel.lookup(0x1000).known);
}

loupe::profile::Profile sample_profile() {
    loupe::profile::Profile p;
    const Frame main_frame{"main", "app", false, true};
    const Frame hot{"hot;fn", "app", false, true};
    const Frame sys{"ksys_read", "[kernel]", true, true};
    p.add({main_frame, hot}, 3);
    p.add({main_frame, hot, sys}, 1);
    p.add({main_frame}, 1);
    return p;
}

TEST(ProfileFormats, Folded) {
    std::ostringstream out;
    loupe::profile::write_folded(sample_profile(), out);
    EXPECT_EQ(out.str(), "main 1\nmain;hot:fn 3\nmain;hot:fn;ksys_read_[k] 1\n");
}

TEST(ProfileFormats, TopFunctions) {
    const auto top = loupe::profile::top_functions(sample_profile(), 10);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0].function, "hot;fn");
    EXPECT_EQ(top[0].self, 3u);
    EXPECT_EQ(top[0].total, 4u);
    EXPECT_EQ(top[1].function, "main");  // ties on self broken by total: main has all 5
    EXPECT_EQ(top[1].self, 1u);
    EXPECT_EQ(top[1].total, 5u);
    EXPECT_EQ(top[2].function, "ksys_read [k]");
    EXPECT_EQ(top[2].total, 1u);
}

TEST(ProfileFormats, SvgEscapesNames) {
    loupe::profile::Profile p;
    p.add({Frame{"operator<<(std::ostream&, \"x\")", "app", false, true}}, 2);
    std::ostringstream out;
    loupe::profile::write_flame_graph_svg(p, "t & t", out);
    const std::string svg = out.str();
    EXPECT_NE(svg.find("operator&lt;&lt;(std::ostream&amp;, &quot;x&quot;)"), std::string::npos);
    EXPECT_EQ(svg.find("operator<<"), std::string::npos);
    EXPECT_NE(svg.find("t &amp; t"), std::string::npos);
}

TEST(ProfileFormats, PprofStartsWithSampleTypes) {
    const std::string encoded = loupe::profile::encode_pprof(sample_profile());
    ASSERT_GT(encoded.size(), 4u);
    EXPECT_EQ(static_cast<unsigned char>(encoded[0]), (1 << 3) | 2);  // sample_type, bytes
    EXPECT_NE(encoded.find("ksys_read [k]"), std::string::npos);
    EXPECT_NE(encoded.find("nanoseconds"), std::string::npos);
}

TEST(ProfileCommand, ParsesDurations) {
    using loupe::profile_cli::parse_duration_seconds;
    EXPECT_EQ(parse_duration_seconds("10s"), 10.0);
    EXPECT_EQ(parse_duration_seconds("500ms"), 0.5);
    EXPECT_EQ(parse_duration_seconds("2m"), 120.0);
    EXPECT_EQ(parse_duration_seconds("3"), 3.0);
    EXPECT_FALSE(parse_duration_seconds("0s"));
    EXPECT_FALSE(parse_duration_seconds("-1s"));
    EXPECT_FALSE(parse_duration_seconds("10 parsecs"));
    EXPECT_FALSE(parse_duration_seconds(""));
}

TEST(ProfileCommand, FormatFollowsTheExtension) {
    using loupe::profile_cli::output_format;
    using loupe::profile_cli::OutputFormat;
    EXPECT_EQ(output_format("cpu.pb.gz"), OutputFormat::kPprof);
    EXPECT_EQ(output_format("cpu.folded"), OutputFormat::kFolded);
    EXPECT_EQ(output_format("cpu.svg"), OutputFormat::kSvg);
    EXPECT_EQ(output_format(""), OutputFormat::kTop);
    EXPECT_FALSE(output_format("cpu.txt"));
}

TEST(ProfileTop, ParsesHotFunctions) {
    const auto rows = loupe::top::parse_hot_functions(nlohmann::json::parse(
        R"([{"function":"burn","module":"app","self_share":0.75,"total_share":0.8},
            {"function":7}, "junk"])"));
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].function, "burn");
    EXPECT_EQ(rows[0].module, "app");
    EXPECT_DOUBLE_EQ(rows[0].self_share, 0.75);
    EXPECT_DOUBLE_EQ(rows[0].total_share, 0.8);
    EXPECT_EQ(rows[1].function, "");  // a bad field is left empty, the row kept
}

TEST(ProfileAgentConfig, ProfileFrequencyFromFileAndChecks) {
    const std::string path = ::testing::TempDir() + "/loupe_profile_config.yaml";
    std::ofstream(path) << "profile_frequency: 49\n";
    loupe::agent::AgentConfig config;
    EXPECT_EQ(config.profile_frequency, 19u);  // on by default
    EXPECT_FALSE(loupe::agent::load_config_file(path, config));
    EXPECT_EQ(config.profile_frequency, 49u);
    std::ofstream(path) << "profile_frequency: 5000\n";
    const auto error = loupe::agent::load_config_file(path, config);
    ASSERT_TRUE(error);
    EXPECT_NE(error->find("profile_frequency"), std::string::npos) << *error;
    EXPECT_FALSE(loupe::agent::check_profile_frequency("0"));  // off
    EXPECT_FALSE(loupe::agent::check_profile_frequency("1000"));
    EXPECT_TRUE(loupe::agent::check_profile_frequency("1001"));
    EXPECT_TRUE(loupe::agent::check_profile_frequency("-1"));
    std::remove(path.c_str());
}

TEST(ProfileAgentConfig, ProfileDwarfFromFile) {
    const std::string path = ::testing::TempDir() + "/loupe_profile_dwarf.yaml";
    loupe::agent::AgentConfig config;
    EXPECT_TRUE(config.profile_dwarf.empty());  // frame pointers unless asked
    std::ofstream(path) << "profile_dwarf: [checkout, nginx]\n";
    EXPECT_FALSE(loupe::agent::load_config_file(path, config));
    EXPECT_EQ(config.profile_dwarf, (std::vector<std::string>{"checkout", "nginx"}));
    std::ofstream(path) << "profile_dwarf: checkout\n";
    EXPECT_FALSE(loupe::agent::load_config_file(path, config));
    EXPECT_EQ(config.profile_dwarf, (std::vector<std::string>{"checkout"}));
    std::ofstream(path) << "profile_dwarf: {a: b}\n";
    const auto error = loupe::agent::load_config_file(path, config);
    ASSERT_TRUE(error);
    EXPECT_NE(error->find("profile_dwarf"), std::string::npos) << *error;
    std::remove(path.c_str());
}

TEST(ProfileCommand, RefusesAnUnknownUnwindMode) {
    loupe::profile_cli::ProfileOptions options;
    options.pids = {static_cast<std::uint32_t>(::getpid())};
    options.unwind = "lbr";
    const auto problem = loupe::profile_cli::options_problem(options);
    ASSERT_TRUE(problem);
    EXPECT_NE(problem->find("--unwind"), std::string::npos) << *problem;
    options.unwind = "dwarf";
    EXPECT_FALSE(loupe::profile_cli::options_problem(options));
}

TEST(ProfileFormats, BoundedProfileKeepsKnownStacksOnly) {
    loupe::profile::Profile p;
    const Frame a{"a", "m", false, true}, b{"b", "m", false, true};
    EXPECT_TRUE(p.add_bounded({a}, 2, 1));
    EXPECT_FALSE(p.add_bounded({a, b}, 5, 1));  // a second distinct stack: over the cap
    EXPECT_TRUE(p.add_bounded({a}, 1, 1));      // a known one still counts
    EXPECT_EQ(p.total_samples(), 3u);
    EXPECT_EQ(p.stacks().size(), 1u);
    loupe::profile::Profile merged;
    merged.merge(p);
    merged.merge(p);
    EXPECT_EQ(merged.total_samples(), 6u);
}

}  // namespace
