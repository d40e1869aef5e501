// The cost of naming sampled stacks (issue 25): loading a file's symbol tables (cold, once per
// file and build-id), naming user frames once the tables are cached (warm, every stack of every
// drain), a whole process's first symbolization, and the kernel's /proc/kallsyms. The process
// symbolized is this benchmark's own: loupe_core linked in (as in the loupe binary, RelWithDebInfo
// with .symtab), libstdc++, libc, libelf... Run: build/tools/bench/loupe_benchmarks
// --benchmark_filter='Elf|Symbol|Kernel|Demangle' (docs/BENCHMARKS.md).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "profile/symbolizer.h"

namespace {

using loupe::profile::ElfSymbols;
using loupe::profile::Frame;
using loupe::profile::KernelSymbols;
using loupe::profile::Symbolizer;

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Files whose tables are loaded: a stripped C server (.dynsym only: nginx exports its functions
// for its modules), the C library, libstdc++, this binary, and the loupe binary next to it
// (build/loupe: RelWithDebInfo, .symtab of all of loupe_core's C++).
const std::vector<std::string>& elf_files() {
    static const std::vector<std::string> files = [] {
        std::vector<std::string> out = {"/usr/sbin/nginx", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                                        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                                        "/proc/self/exe"};
        char self[4096] = {};
        const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
        std::string path(self, n > 0 ? static_cast<std::size_t>(n) : 0);
        // build/tools/bench/loupe_benchmarks -> build/loupe
        for (int up = 0; up < 3 && !path.empty(); ++up)
            path.resize(path.rfind('/') == std::string::npos ? 0 : path.rfind('/'));
        out.push_back(path + "/loupe");
        return out;
    }();
    return files;
}

void BM_ElfSymbolsLoad(benchmark::State& state) {
    const std::string& path = elf_files()[static_cast<std::size_t>(state.range(0))];
    state.SetLabel(path);
    std::size_t symbols = 0;
    for (auto _ : state) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            state.SkipWithError("cannot open the file");
            return;
        }
        auto table = ElfSymbols::load(fd);
        ::close(fd);
        if (!table) {
            state.SkipWithError("not an ELF file");
            return;
        }
        symbols = table->size();
        benchmark::DoNotOptimize(table);
    }
    state.counters["symbols"] = static_cast<double>(symbols);
}
BENCHMARK(BM_ElfSymbolsLoad)->DenseRange(0, 4)->Unit(benchmark::kMillisecond);

// Addresses spread over the bytes of this process's executable file mappings (so mostly in the
// largest: this binary's text), as a sampled stack's return addresses are.
std::vector<std::uint64_t> code_addresses(std::size_t n) {
    std::vector<loupe::profile::Mapping> code;
    std::uint64_t total = 0;
    for (const auto& m : loupe::profile::parse_maps(read_text("/proc/self/maps")))
        if (!m.path.empty() && m.path[0] == '/') {
            code.push_back(m);
            total += m.end - m.start;
        }
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<std::uint64_t> byte(0, total - 1);
    std::vector<std::uint64_t> out;
    out.reserve(n);
    while (out.size() < n) {
        std::uint64_t at = byte(rng);
        for (const auto& m : code) {
            if (at < m.end - m.start) {
                out.push_back(m.start + at);
                break;
            }
            at -= m.end - m.start;
        }
    }
    return out;
}

// A warm symbolizer: tables loaded, stacks of state.range(0) frames named per iteration.
void BM_SymbolizeUserFramesWarm(benchmark::State& state) {
    const auto depth = static_cast<std::size_t>(state.range(0));
    const auto pool = code_addresses(1 << 14);
    const auto tgid = static_cast<std::uint32_t>(::getpid());
    Symbolizer symbolizer;
    symbolizer.remember_process(tgid);
    std::vector<std::uint64_t> stack(depth);
    std::size_t next = 0, named = 0, frames = 0;
    for (auto _ : state) {
        for (auto& ip : stack)
            ip = pool[next++ & (pool.size() - 1)];
        const std::vector<Frame> out = symbolizer.user_frames(tgid, stack);
        for (const Frame& f : out)
            named += f.known;
        frames += out.size();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(frames));  // items: frames
    state.counters["named_share"] =
        frames ? static_cast<double>(named) / static_cast<double>(frames) : 0.0;
}
BENCHMARK(BM_SymbolizeUserFramesWarm)->Arg(1)->Arg(16)->Arg(64);

// The first stack of a process: /proc/PID/maps read and every executable file's tables loaded
// (this process maps ~10: the files' pages are in the page cache), then 16 frames named.
void BM_SymbolizeProcessCold(benchmark::State& state) {
    const auto stack = code_addresses(16);
    const auto tgid = static_cast<std::uint32_t>(::getpid());
    std::size_t files = 0;
    for (auto _ : state) {
        Symbolizer symbolizer;
        benchmark::DoNotOptimize(symbolizer.user_frames(tgid, stack));
        files = symbolizer.cached_files();
    }
    state.counters["files"] = static_cast<double>(files);
}
BENCHMARK(BM_SymbolizeProcessCold)->Unit(benchmark::kMillisecond);

void BM_KernelSymbolsLoad(benchmark::State& state) {
    std::size_t symbols = 0;
    for (auto _ : state) {
        KernelSymbols kernel;
        kernel.load();
        symbols = kernel.size();
    }
    state.counters["symbols"] = static_cast<double>(symbols);
}
BENCHMARK(BM_KernelSymbolsLoad)->Unit(benchmark::kMillisecond);

// Kernel frames named once /proc/kallsyms is loaded: addresses just inside its text symbols
// (zeros when not root: kallsyms hides the addresses, and the benchmark says so).
void BM_SymbolizeKernelFramesWarm(benchmark::State& state) {
    std::vector<std::uint64_t> pool;
    std::ifstream in("/proc/kallsyms");
    std::string line;
    while (std::getline(in, line) && pool.size() < (1 << 14)) {
        const std::uint64_t address = std::stoull(line.substr(0, line.find(' ')), nullptr, 16);
        if (address != 0 && line.size() > 17 && (line[17] == 't' || line[17] == 'T'))
            pool.push_back(address + 16);
    }
    if (pool.size() < (1 << 14)) {
        state.SkipWithError("too few kernel addresses in /proc/kallsyms (not root?)");
        return;
    }
    std::shuffle(pool.begin(), pool.end(), std::mt19937_64(3));
    Symbolizer symbolizer;
    std::vector<std::uint64_t> stack(16);
    std::size_t next = 0, frames = 0;
    symbolizer.kernel_frames(stack);  // loads kallsyms
    for (auto _ : state) {
        for (auto& ip : stack)
            ip = pool[next++ & (pool.size() - 1)];
        frames += symbolizer.kernel_frames(stack).size();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(frames));
}
BENCHMARK(BM_SymbolizeKernelFramesWarm);

// Part of every named C++ frame: the Itanium demangler, run per frame (not cached).
void BM_Demangle(benchmark::State& state) {
    const std::string mangled = "_ZN5loupe7profile10Symbolizer11user_framesEjRKSt6vectorImSaImEE";
    for (auto _ : state)
        benchmark::DoNotOptimize(loupe::profile::demangle(mangled));
}
BENCHMARK(BM_Demangle);

}  // namespace
