#include "cli/profile/profile_command.h"

#include <csignal>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "capture/profile_capture.h"
#include "cli/top/agent_client.h"
#include "profile/dwarf_unwinder.h"
#include "profile/profile.h"
#include "profile/symbolizer.h"
#include "resources/procfs.h"
#include "util/read_file.h"

namespace loupe::profile_cli {

namespace {

constexpr unsigned kMaxFrequencyHz = 10000;
constexpr std::uint64_t kKernelThreadFlag = 0x00200000;  // PF_KTHREAD

std::atomic<bool> g_interrupted{false};

void on_interrupt(int) {
    g_interrupted = true;
}

// The process of a pid (a thread id names its process), or nullopt when there is none.
std::optional<std::uint32_t> tgid_of(std::uint32_t pid) {
    const auto status = util::read_file(fmt::format("/proc/{}/status", pid));
    if (!status) return std::nullopt;
    std::istringstream lines(*status);
    std::string line;
    while (std::getline(lines, line))
        if (line.rfind("Tgid:", 0) == 0)
            return static_cast<std::uint32_t>(std::stoul(line.substr(5)));
    return std::nullopt;
}

bool is_kernel_thread(std::uint32_t pid) {
    const auto stat = util::read_file(fmt::format("/proc/{}/stat", pid));
    if (!stat) return false;
    // Field 9 (flags) counts from after the parenthesised name, which may hold spaces.
    const auto close = stat->rfind(')');
    if (close == std::string::npos) return false;
    std::istringstream fields(stat->substr(close + 2));
    std::string field;
    for (int i = 3; i <= 9 && fields >> field; ++i)
        if (i == 9) return (std::stoull(field) & kKernelThreadFlag) != 0;
    return false;
}

// Running, or at least not a zombie: an exited process keeps its /proc entry until its parent
// reaps it, which may be long after.
bool alive(std::uint32_t tgid) {
    const auto stat = util::read_file(fmt::format("/proc/{}/stat", tgid));
    if (!stat) return false;
    const auto close = stat->rfind(')');
    if (close == std::string::npos || close + 2 >= stat->size()) return false;
    const char state = (*stat)[close + 2];
    return state != 'Z' && state != 'X';
}

std::vector<std::uint32_t> processes_named(const std::vector<std::string>& comms) {
    std::vector<std::uint32_t> out;
    for (const auto& p : resources::ProcFs().processes())
        if (std::find(comms.begin(), comms.end(), p.comm) != comms.end()) out.push_back(p.pid);
    return out;
}

std::string output_problem(const std::string& path) {
    std::ofstream probe(path, std::ios::binary | std::ios::trunc);
    if (!probe) return fmt::format("--output: cannot write '{}'", path);
    return {};
}

}  // namespace

std::optional<double> parse_duration_seconds(const std::string& text) {
    if (text.empty()) return std::nullopt;
    std::size_t used = 0;
    double value = 0;
    try {
        value = std::stod(text, &used);
    } catch (...) {
        return std::nullopt;
    }
    const std::string unit = text.substr(used);
    double scale = 0;
    if (unit.empty() || unit == "s")
        scale = 1;
    else if (unit == "ms")
        scale = 1e-3;
    else if (unit == "m")
        scale = 60;
    else if (unit == "h")
        scale = 3600;
    else
        return std::nullopt;
    const double seconds = value * scale;
    if (!std::isfinite(seconds) || seconds <= 0) return std::nullopt;
    return seconds;
}

std::optional<OutputFormat> output_format(const std::string& path) {
    if (path.empty()) return OutputFormat::kTop;
    if (path.ends_with(".pb.gz") || path.ends_with(".pprof")) return OutputFormat::kPprof;
    if (path.ends_with(".folded")) return OutputFormat::kFolded;
    if (path.ends_with(".svg")) return OutputFormat::kSvg;
    return std::nullopt;
}

std::optional<std::string> options_problem(const ProfileOptions& options) {
    if (options.pids.empty() && options.comms.empty() && options.service.empty())
        return "say which processes to profile: --pid N, --comm NAME or --service NAME";
    if (options.frequency_hz == 0) return "--frequency must be at least 1 Hz, got 0";
    if (options.unwind != "fp" && options.unwind != "dwarf")
        return fmt::format("--unwind: expected fp or dwarf, got '{}'", options.unwind);
    const unsigned kernel_max = capture::max_sample_rate();
    if (kernel_max > 0 && kernel_max < kMaxFrequencyHz && options.frequency_hz > kernel_max)
        return fmt::format(
            "--frequency {} Hz is above the kernel's limit, {} Hz "
            "(sysctl kernel.perf_event_max_sample_rate); 99 is usual",
            options.frequency_hz, kernel_max);
    if (options.frequency_hz > kMaxFrequencyHz)
        return fmt::format(
            "--frequency {} Hz is too high: at most {} Hz; 99 is usual, 19 for "
            "always-on",
            options.frequency_hz, kMaxFrequencyHz);
    const auto seconds = parse_duration_seconds(options.duration);
    if (!seconds)
        return fmt::format(
            "--duration: expected a positive duration such as 10s, 500ms or 2m, "
            "got '{}'",
            options.duration);
    if (*seconds > 3600) return "--duration: at most 1h";
    if (!output_format(options.output))
        return fmt::format(
            "--output: unknown format of '{}': name it *.pb.gz (pprof), *.folded "
            "or *.svg (flame graph)",
            options.output);
    for (std::uint32_t pid : options.pids) {
        if (pid == 0) return "--pid 0 is the idle task, not a process";
        if (!tgid_of(pid)) return fmt::format("--pid {}: no such process", pid);
        if (is_kernel_thread(pid))
            return fmt::format(
                "--pid {}: a kernel thread, which has no user stack to profile "
                "(its kernel time shows in the stacks of the processes it serves)",
                pid);
    }
    return std::nullopt;
}

int run_profile(const ProfileOptions& given, std::ostream& out, std::ostream& err) {
    ProfileOptions options = given;
    if (!options.service.empty()) {
        // The agent knows which processes make up a service (names, containers, pods).
        top::AgentClient agent(options.agent_url);
        std::string error;
        const auto processes = agent.processes(options.service, error);
        if (!processes || processes->empty()) {
            err << "loupe profile: --service " << options.service << ": "
                << (error.find("answered 404") != std::string::npos
                        ? "the agent at " + options.agent_url + " knows no live process of it"
                        : error)
                << '\n';
            return 2;
        }
        for (const auto& p : *processes)
            options.pids.push_back(p.pid);
    }
    if (auto problem = options_problem(options)) {
        err << "loupe profile: " << *problem << '\n';
        return 2;
    }
    const OutputFormat format = *output_format(options.output);
    if (!options.output.empty())
        if (auto problem = output_problem(options.output); !problem.empty()) {
            err << "loupe profile: " << problem << '\n';
            return 2;
        }
    const double seconds = *parse_duration_seconds(options.duration);

    capture::ProfileCaptureOptions capture_options;
    capture_options.frequency_hz = options.frequency_hz;
    capture_options.filter_tgids = true;
    capture_options.select_comms = options.comms;
    const bool dwarf = options.unwind == "dwarf";
    capture_options.dwarf_all = dwarf;
    // ~8 KiB a sample at 99 Hz on a few busy CPUs, read every 50 ms: room for seconds of samples.
    if (dwarf) capture_options.dwarf_ring_bytes = 16u << 20;
    std::string error;
    auto sampler = capture::ProfileCapture::start(capture_options, error);
    if (!sampler) {
        err << "loupe profile: " << error << '\n';
        return 1;
    }

    profile::Symbolizer symbolizer;
    profile::DwarfUnwinder unwinder;
    std::set<std::uint32_t> selected;
    for (std::uint32_t pid : options.pids)
        selected.insert(*tgid_of(pid));
    auto select_named = [&] {
        if (options.comms.empty()) return false;
        bool changed = false;
        for (std::uint32_t tgid : processes_named(options.comms))
            changed |= selected.insert(tgid).second;
        return changed;
    };
    select_named();
    auto remember = [&](std::uint32_t tgid) {
        symbolizer.remember_process(tgid);
        if (dwarf) unwinder.remember_process(tgid);
    };
    for (std::uint32_t tgid : selected)
        remember(tgid);
    sampler->set_traced_tgids({selected.begin(), selected.end()});
    if (selected.empty())
        err << "loupe profile: no process named "
            << fmt::format("{}", fmt::join(options.comms, ", "))
            << " yet: profiling those that start\n";

    profile::Profile result;
    result.frequency_hz = options.frequency_hz;
    const auto started = std::chrono::steady_clock::now();
    result.start_unix_ns =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    std::uint64_t samples_without_stack = 0;
    // Unwind quality: samples whose user stack has at most 2 frames of code (unwinding stopped
    // early or went astray, typically at code built without frame pointers), among those with a
    // user stack.
    std::uint64_t user_stacked = 0, shallow = 0;
    auto collect = [&] {
        std::vector<capture::StackCount> stacks = sampler->drain();
        if (dwarf) {
            // New processes (--comm) first: their files are read before their samples unwind.
            const std::vector<capture::DwarfSample> samples = sampler->take_dwarf_samples();
            for (const capture::DwarfSample& sample : samples)
                if (selected.insert(sample.tgid).second) remember(sample.tgid);
            for (capture::StackCount& s : unwinder.unwind_and_count(samples))
                stacks.push_back(std::move(s));
        }
        for (const capture::StackCount& s : stacks) {
            if (!selected.count(s.tgid)) {  // selected by the kernel at exec or fork (--comm)
                selected.insert(s.tgid);
                remember(s.tgid);
            }
            if (s.user_ips.empty() && s.kernel_ips.empty()) {
                samples_without_stack += s.count;
                continue;
            }
            std::vector<profile::Frame> frames = symbolizer.user_frames(s.tgid, s.user_ips);
            if (!frames.empty()) {
                user_stacked += s.count;
                if (profile::trustworthy_depth(frames) <= profile::kShallowStackFrames)
                    shallow += s.count;
            }
            std::reverse(frames.begin(), frames.end());
            std::vector<profile::Frame> kernel = symbolizer.kernel_frames(s.kernel_ips);
            frames.insert(frames.end(), kernel.rbegin(), kernel.rend());
            result.add(frames, s.count);
        }
    };

    struct sigaction action {};
    action.sa_handler = on_interrupt;
    struct sigaction previous_int {
    }, previous_term{};
    sigaction(SIGINT, &action, &previous_int);
    sigaction(SIGTERM, &action, &previous_term);
    g_interrupted = false;
    const auto deadline = started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                        std::chrono::duration<double>(seconds));
    std::string ended_early;
    while (!g_interrupted && std::chrono::steady_clock::now() < deadline) {
        const auto next =
            std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(1));
        while (!g_interrupted && std::chrono::steady_clock::now() < next) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            if (dwarf) sampler->poll_dwarf_samples();  // keeps room in the ring buffer
        }
        collect();
        if (select_named()) {
            for (std::uint32_t tgid : selected)
                remember(tgid);
            sampler->set_traced_tgids({selected.begin(), selected.end()});
        }
        if (options.comms.empty() && std::none_of(selected.begin(), selected.end(), alive)) {
            ended_early = "every profiled process exited";
            break;
        }
    }
    collect();
    sigaction(SIGINT, &previous_int, nullptr);
    sigaction(SIGTERM, &previous_term, nullptr);
    result.duration_ns =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now() - started)
                                       .count());
    const capture::ProfileCounters counters = sampler->counters();
    sampler.reset();
    if (!ended_early.empty())
        err << fmt::format("loupe profile: {} after {:.1f} s; writing what was sampled\n",
                           ended_early, static_cast<double>(result.duration_ns) / 1e9);
    const std::uint64_t lost =
        counters.lost_counts_full + counters.lost_dwarf_ring + samples_without_stack;
    if (lost > 0 || counters.lost_user_stacks > 0)
        err << fmt::format("loupe profile: {} samples dropped, {} without their user stack\n", lost,
                           counters.lost_user_stacks);
    if (counters.lost_dwarf_copy > 0)
        err << fmt::format(
            "loupe profile: {} DWARF samples copied only the stack pointer's page (the whole "
            "copy faulted): their stacks end where that page does\n",
            counters.lost_dwarf_copy);
    if (user_stacked > 0)
        err << fmt::format(
            "loupe profile: unwind quality ({}): {:.1f}% of user stacks have 2 frames or "
            "fewer ({} of {})\n",
            dwarf ? "dwarf" : "frame pointers",
            100.0 * static_cast<double>(shallow) / static_cast<double>(user_stacked), shallow,
            user_stacked);
    if (dwarf && user_stacked > 0 && shallow * 2 > user_stacked && !unwinder.last_stop().empty())
        err << "loupe profile: DWARF unwinding found no caller: " << unwinder.last_stop() << '\n';
    if (result.total_samples() == 0)
        err << "loupe profile: no samples: the processes did not run on a CPU meanwhile\n";

    switch (format) {
        case OutputFormat::kTop:
            profile::write_top(result, options.top, out);
            break;
        case OutputFormat::kPprof:
            if (auto problem = profile::write_pprof(result, options.output); !problem.empty()) {
                err << "loupe profile: " << problem << '\n';
                return 1;
            }
            break;
        case OutputFormat::kFolded:
        case OutputFormat::kSvg: {
            std::ofstream file(options.output, std::ios::binary | std::ios::trunc);
            if (format == OutputFormat::kFolded)
                profile::write_folded(result, file);
            else
                profile::write_flame_graph_svg(
                    result,
                    fmt::format("CPU flame graph: {} samples at {} Hz", result.total_samples(),
                                result.frequency_hz),
                    file);
            if (!file.flush()) {
                err << "loupe profile: cannot write " << options.output << '\n';
                return 1;
            }
            break;
        }
    }
    if (format != OutputFormat::kTop)
        err << fmt::format("loupe profile: {} samples written to {}\n", result.total_samples(),
                           options.output);
    return 0;
}

}  // namespace loupe::profile_cli
