// DWARF unwinding of a stack copy, as the kernel's DWARF mode delivers it: this test's own process
// takes its registers (getcontext) and copies its stack's top bytes three calls deep, then
// libdw unwinds the copy. Built -O2, the functions below keep no frame pointer (GCC's default),
// so only the CFI can name their callers.
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "capture/profile_capture.h"
#include "profile/dwarf_unwinder.h"
#include "profile/symbolizer.h"

namespace {

constexpr std::size_t kCopyBytes = 16384;  // as the kernel copies (LOUPE_PROFILE_DWARF_STACK_BYTES)

// Copies the test's own live stack as the kernel would, byte by byte and uninstrumented: under
// AddressSanitizer the bytes between locals are poisoned red zones, which a copy may not read.
__attribute__((no_sanitize("address"))) void copy_stack(const std::uint8_t* from, std::size_t n,
                                                        std::vector<std::uint8_t>& to) {
    to.resize(n);
    const volatile std::uint8_t* source = from;
    for (std::size_t i = 0; i < n; ++i)
        to[i] = source[i];
}

// A sample of the calling thread at this point: its registers in DWARF numbering and the stack
// above its stack pointer, at most kCopyBytes or `limit`.
__attribute__((noinline)) loupe::capture::DwarfSample take_sample(std::size_t limit) {
    ucontext_t context;
    getcontext(&context);
    const greg_t* g = context.uc_mcontext.gregs;
    loupe::capture::DwarfSample sample;
    sample.tgid = static_cast<std::uint32_t>(::getpid());
    sample.tid = static_cast<std::uint32_t>(::gettid());
    sample.regs = {static_cast<std::uint64_t>(g[REG_RAX]), static_cast<std::uint64_t>(g[REG_RDX]),
                   static_cast<std::uint64_t>(g[REG_RCX]), static_cast<std::uint64_t>(g[REG_RBX]),
                   static_cast<std::uint64_t>(g[REG_RSI]), static_cast<std::uint64_t>(g[REG_RDI]),
                   static_cast<std::uint64_t>(g[REG_RBP]), static_cast<std::uint64_t>(g[REG_RSP]),
                   static_cast<std::uint64_t>(g[REG_R8]),  static_cast<std::uint64_t>(g[REG_R9]),
                   static_cast<std::uint64_t>(g[REG_R10]), static_cast<std::uint64_t>(g[REG_R11]),
                   static_cast<std::uint64_t>(g[REG_R12]), static_cast<std::uint64_t>(g[REG_R13]),
                   static_cast<std::uint64_t>(g[REG_R14]), static_cast<std::uint64_t>(g[REG_R15]),
                   static_cast<std::uint64_t>(g[REG_RIP])};
    // Like the kernel: up to the end of the stack's mapping at most.
    const auto sp = static_cast<std::uint64_t>(g[REG_RSP]);
    std::uint64_t end = sp;
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);) {
        unsigned long long first = 0, last = 0;
        if (std::sscanf(line.c_str(), "%llx-%llx", &first, &last) == 2 && first <= sp && sp < last)
            end = last;
    }
    copy_stack(reinterpret_cast<const std::uint8_t*>(sp),
               std::min<std::uint64_t>({limit, kCopyBytes, end - sp}), sample.stack);
    return sample;
}

// The chain the test looks for; `volatile` keeps the calls from being folded away.
volatile std::size_t g_depth_guard = 0;
extern "C" __attribute__((noinline)) loupe::capture::DwarfSample loupe_dwarf_inner(
    std::size_t limit) {
    auto sample = take_sample(limit);
    g_depth_guard = g_depth_guard + 1;
    return sample;
}
extern "C" __attribute__((noinline)) loupe::capture::DwarfSample loupe_dwarf_middle(
    std::size_t limit) {
    auto sample = loupe_dwarf_inner(limit);
    g_depth_guard = g_depth_guard + 1;
    return sample;
}
extern "C" __attribute__((noinline)) loupe::capture::DwarfSample loupe_dwarf_outer(
    std::size_t limit) {
    auto sample = loupe_dwarf_middle(limit);
    g_depth_guard = g_depth_guard + 1;
    return sample;
}

std::vector<std::string> names(loupe::profile::Symbolizer& symbolizer, std::uint32_t tgid,
                               const std::vector<std::uint64_t>& ips) {
    std::vector<std::string> out;
    for (const auto& frame : symbolizer.user_frames(tgid, ips))
        out.push_back(frame.function);
    return out;
}

TEST(DwarfUnwinder, UnwindsACopiedStackThroughCallersWithoutFramePointers) {
    const auto sample = loupe_dwarf_outer(kCopyBytes);
    loupe::profile::DwarfUnwinder unwinder;
    const std::vector<std::uint64_t> ips = unwinder.unwind(sample);
    loupe::profile::Symbolizer symbolizer;
    symbolizer.remember_process(sample.tgid);
    const auto frames = names(symbolizer, sample.tgid, ips);
    auto at = [&](const std::string& name) {
        return std::find(frames.begin(), frames.end(), name) - frames.begin();
    };
    const auto size = static_cast<std::ptrdiff_t>(frames.size());
    ASSERT_LT(at("loupe_dwarf_inner"), size) << testing::PrintToString(frames);
    ASSERT_LT(at("loupe_dwarf_middle"), size) << testing::PrintToString(frames);
    ASSERT_LT(at("loupe_dwarf_outer"), size) << testing::PrintToString(frames);
    // Leaf first: inner, then its caller, then that one's.
    EXPECT_EQ(at("loupe_dwarf_middle"), at("loupe_dwarf_inner") + 1);
    EXPECT_EQ(at("loupe_dwarf_outer"), at("loupe_dwarf_middle") + 1);
    // Beyond the test function: gtest's frames, down to main.
    EXPECT_LT(at("main"), size) << testing::PrintToString(frames);
    EXPECT_EQ(unwinder.sessions(), 1u);
}

TEST(DwarfUnwinder, QualityCountsFramesUpToTheFirstThatIsNotCode) {
    // What frame-pointer unwinding yields through code without frame pointers: the leaf, then
    // "return addresses" read from a register holding data (here a stack address and ASCII).
    const auto sample = loupe_dwarf_outer(kCopyBytes);
    loupe::profile::DwarfUnwinder unwinder;
    const std::vector<std::uint64_t> good = unwinder.unwind(sample);
    loupe::profile::Symbolizer symbolizer;
    symbolizer.remember_process(sample.tgid);
    const auto good_frames = symbolizer.user_frames(sample.tgid, good);
    EXPECT_EQ(loupe::profile::trustworthy_depth(good_frames), good_frames.size());
    EXPECT_GT(loupe::profile::trustworthy_depth(good_frames), loupe::profile::kShallowStackFrames);
    const std::vector<std::uint64_t> astray = {good.front(), sample.regs[7] + 64,
                                               0x69666f72702d656full, good[1]};
    const auto astray_frames = symbolizer.user_frames(sample.tgid, astray);
    EXPECT_EQ(loupe::profile::trustworthy_depth(astray_frames), 1u);
}

TEST(DwarfUnwinder, StopsWhereTheCopyEnds) {
    // Only the first few bytes: the unwinder cannot read the caller's return address beyond them
    // and must stop there, not read this process's live memory.
    const auto sample = loupe_dwarf_outer(16);
    loupe::profile::DwarfUnwinder unwinder;
    const std::vector<std::uint64_t> ips = unwinder.unwind(sample);
    ASSERT_FALSE(ips.empty());
    EXPECT_EQ(ips.front(), sample.regs[16]);
    EXPECT_LE(ips.size(), 3u);
}

TEST(DwarfUnwinder, UnknownProcessGivesTheSampledIpOnly) {
    loupe::capture::DwarfSample sample;
    sample.tgid = sample.tid = 0x3ffffff;  // above pid_max: no such process
    sample.regs[16] = 0x401000;
    sample.regs[7] = 0x7ffc0000;
    loupe::profile::DwarfUnwinder unwinder;
    EXPECT_EQ(unwinder.unwind(sample), std::vector<std::uint64_t>{0x401000});
    EXPECT_EQ(unwinder.sessions(), 0u);
}

TEST(DwarfUnwinder, CountsIdenticalStacksAndBoundsSessions) {
    const auto sample = loupe_dwarf_outer(kCopyBytes);
    loupe::profile::DwarfUnwinder unwinder("/proc", 1);
    const auto counted = unwinder.unwind_and_count({sample, sample, sample});
    ASSERT_EQ(counted.size(), 1u);
    EXPECT_EQ(counted[0].count, 3u);
    EXPECT_EQ(counted[0].tgid, sample.tgid);
    EXPECT_GE(counted[0].user_ips.size(), 4u);
    unwinder.forget_exited();  // this process lives on
    EXPECT_EQ(unwinder.sessions(), 1u);
    unwinder.forget_process(sample.tgid);
    EXPECT_EQ(unwinder.sessions(), 0u);
}

}  // namespace
