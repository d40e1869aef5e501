#include "doctor/kernel_features.h"

#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "capture/bpf_handles.h"
#include "capture/tracefs.h"
#include "doctor_probes.skel.h"
#include "loupe_abi.h"
#include "util/logging.h"

// The uprobe probe attaches here. extern "C" and noinline so the symbol exists under a plain name
// and a call really executes its first instruction.
extern "C" __attribute__((noinline, used)) int loupe_doctor_uprobe_target(int x) {
    asm volatile("" ::: "memory");
    return x + 1;
}

namespace loupe::doctor {
namespace {

using capture::BpfLinkPtr;
using capture::UniqueFd;
using DoctorSkel = capture::SkeletonPtr<doctor_probes, &doctor_probes__destroy>;

// A kernel function that getppid() runs, for the kprobe and fentry probes. Which of these names
// exists depends on the architecture and on inlining, so the first one in the kernel's BTF wins.
std::string getppid_kernel_function() {
    static const char* const kCandidates[] = {"__x64_sys_getppid", "__arm64_sys_getppid",
                                              "__do_sys_getppid", "__se_sys_getppid"};
    btf* vmlinux = btf__load_vmlinux_btf();
    if (!vmlinux) return kCandidates[0];
    std::string found = kCandidates[0];
    for (const char* name : kCandidates)
        if (btf__find_by_name_kind(vmlinux, name, BTF_KIND_FUNC) > 0) {
            found = name;
            break;
        }
    btf__free(vmlinux);
    return found;
}

std::string errno_text(int err) {
    err = err < 0 ? -err : err;
    return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

void trigger_syscall() {
    for (int i = 0; i < 3; ++i)
        ::syscall(SYS_getppid);
}

struct ProbeResult {
    bool ok = false;
    std::string detail;
};

// Opens the doctor skeleton with only `program` enabled, lets `prepare` adjust it before load,
// attaches it with `attach`, runs `trigger`, lets `inspect` look at the still-attached skeleton and
// reports whether hits[probe] moved.
ProbeResult run_program_probe(const char* program_name, loupe_doctor_probe probe,
                              const std::function<int(doctor_probes&, bpf_program*)>& prepare,
                              const std::function<BpfLinkPtr(doctor_probes&, bpf_program*)>& attach,
                              const std::function<void()>& trigger,
                              const std::function<void(doctor_probes&)>& inspect = nullptr) {
    util::QuietLibbpf quiet;
    DoctorSkel skel(doctor_probes__open());
    if (!skel) return {false, "cannot open BPF object: " + errno_text(errno)};
    bpf_program* selected = nullptr;
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel->obj) {
        const bool wanted = std::strcmp(bpf_program__name(prog), program_name) == 0;
        bpf_program__set_autoload(prog, wanted);
        if (wanted) selected = prog;
    }
    if (!selected) return {false, std::string("program ") + program_name + " missing from object"};
    skel->rodata->target_tgid = static_cast<__u32>(::getpid());
    if (prepare) {
        if (int err = prepare(*skel, selected); err != 0)
            return {false, "prepare: " + errno_text(err)};
    }
    if (int err = doctor_probes__load(skel.get()); err != 0)
        return {false, "load refused: " + errno_text(err)};
    errno = 0;
    BpfLinkPtr link = attach(*skel, selected);
    if (!link) return {false, "attach refused: " + errno_text(errno ? errno : EINVAL)};
    trigger();
    if (inspect) inspect(*skel);
    const __u64 hits = __atomic_load_n(&skel->bss->hits[probe], __ATOMIC_RELAXED);
    if (hits == 0) return {false, "attached but the program never ran"};
    return {true, "loaded, attached, ran " + std::to_string(hits) + " time(s)"};
}

BpfLinkPtr attach_default(doctor_probes&, bpf_program* prog) {
    return BpfLinkPtr(bpf_program__attach(prog));
}

FeatureReport make(const char* id, const char* title, bool essential, const char* impact,
                   bool degrades = false) {
    FeatureReport r;
    r.id = id;
    r.title = title;
    r.essential = essential;
    r.degrades = degrades;
    r.impact = impact;
    return r;
}

FeatureReport probe_bpf_syscall() {
    auto r =
        make("bpf", "BPF programs (bpf syscall)", true,
             "everything: loupe captures nothing without BPF (needs root or CAP_BPF+CAP_PERFMON)");
    const int ret = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_TRACEPOINT, nullptr);
    r.available = ret == 1;
    r.detail = r.available
                   ? "tracing programs can be loaded"
                   : (ret < 0 ? errno_text(ret) : std::string("program type not supported"));
    return r;
}

FeatureReport probe_btf() {
    auto r = make("btf", "kernel BTF (/sys/kernel/btf/vmlinux)", true,
                  "CO-RE programs cannot be relocated for this kernel; tp_btf is impossible");
    btf* vmlinux = btf__load_vmlinux_btf();
    if (!vmlinux) {
        r.detail = "cannot load vmlinux BTF: " + errno_text(errno);
        return r;
    }
    r.available = true;
    r.detail = std::to_string(btf__type_cnt(vmlinux)) + " types";
    btf__free(vmlinux);
    return r;
}

FeatureReport probe_tracefs(const capture::TracefsStatus& tracefs) {
    auto r = make("tracefs", "tracefs", false,
                  "tracepoints cannot be attached (raw_tp and tp_btf still work)");
    r.available = tracefs.available;
    r.detail = tracefs.available ? tracefs.path + (tracefs.mounted_by_us ? " (mounted by loupe)"
                                                                         : " (already mounted)")
                                 : tracefs.error;
    return r;
}

// Drains the doctor's ring buffer and counts the tracepoint's records in it.
int drain_doctor_events(doctor_probes& skel) {
    int delivered = 0;
    auto on_event = [](void* ctx, void* data, size_t size) -> int {
        if (size >= sizeof(loupe_doctor_event) &&
            static_cast<const loupe_doctor_event*>(data)->probe == LOUPE_PROBE_TRACEPOINT)
            ++*static_cast<int*>(ctx);
        return 0;
    };
    capture::RingBufferPtr ring(
        ring_buffer__new(bpf_map__fd(skel.maps.doctor_events), on_event, &delivered, nullptr));
    if (ring) ring_buffer__poll(ring.get(), 100);
    return delivered;
}

// The tracepoint probe also emits one ring-buffer record per hit, so one run answers both.
std::pair<FeatureReport, FeatureReport> probe_tracepoint_and_ring_buffer(
    const capture::TracefsStatus& tracefs) {
    auto tp = make("tracepoint", "tracepoints (syscalls:*)", false,
                   "none today: loupe's hooks are typed tracepoints (tp_btf)");
    auto ring = make("ringbuf", "BPF ring buffer", true,
                     "everything: events cannot reach user space without it (kernel >= 5.8)");
    {
        util::QuietLibbpf quiet;
        if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr) != 1) {
            ring.detail = "map type not supported";
            tp.detail = "not tried: the probe program needs a ring buffer";
            return {tp, ring};
        }
    }
    ring.available = true;
    ring.detail = "map type supported; delivery not verified (tracepoint probe did not run)";
    if (!tracefs.available) {
        tp.detail = "tracefs unavailable: " + tracefs.error;
        return {tp, ring};
    }
    int delivered = 0;
    const auto res = run_program_probe(
        "probe_tracepoint", LOUPE_PROBE_TRACEPOINT, nullptr, attach_default, trigger_syscall,
        [&](doctor_probes& skel) { delivered = drain_doctor_events(skel); });
    tp.available = res.ok;
    tp.detail = "syscalls:sys_enter_getppid " + res.detail;
    if (res.ok) {
        ring.available = delivered > 0;
        ring.detail = delivered > 0 ? std::to_string(delivered) + " record(s) delivered end to end"
                                    : "the tracepoint ran but no record reached user space";
    }
    return {tp, ring};
}

FeatureReport probe_raw_tp() {
    auto r = make("raw_tp", "raw tracepoints (raw_tp)", false,
                  "none today: loupe's hooks are typed tracepoints (tp_btf)");
    const auto res = run_program_probe("probe_raw_tp", LOUPE_PROBE_RAW_TP, nullptr, attach_default,
                                       trigger_syscall);
    r.available = res.ok;
    r.detail = "sys_enter " + res.detail;
    return r;
}

FeatureReport probe_tp_btf() {
    auto r = make("tp_btf", "BTF-typed tracepoints (tp_btf)", true,
                  "everything but /proc figures: every hook of loupe (the socket tracepoints "
                  "below, the scheduler, block and TCP hooks) is a typed tracepoint");
    const auto res = run_program_probe("probe_tp_btf", LOUPE_PROBE_TP_BTF, nullptr, attach_default,
                                       trigger_syscall);
    r.available = res.ok;
    r.detail = "sys_enter " + res.detail;
    return r;
}

FeatureReport probe_uprobe() {
    auto r = make("uprobe", "uprobes / uretprobes", false,
                  "user-space function hooks: TLS (OpenSSL) plaintext and language runtimes");
    char exe[4096];
    const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        r.detail = "cannot resolve /proc/self/exe: " + errno_text(errno);
        return r;
    }
    exe[n] = '\0';
    const std::string binary(exe);
    auto attach = [&binary](doctor_probes&, bpf_program* prog) {
        LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = "loupe_doctor_uprobe_target");
        return BpfLinkPtr(
            bpf_program__attach_uprobe_opts(prog, ::getpid(), binary.c_str(), 0, &opts));
    };
    auto trigger = [] {
        volatile int sink = 0;
        for (int i = 0; i < 3; ++i)
            sink = loupe_doctor_uprobe_target(sink);
    };
    const auto res =
        run_program_probe("probe_uprobe", LOUPE_PROBE_UPROBE, nullptr, attach, trigger);
    r.available = res.ok;
    r.detail = res.detail;
    return r;
}

FeatureReport probe_kprobe() {
    auto r = make("kprobe", "kprobes / kretprobes", false,
                  "nothing: loupe is built on tracepoints and does not need kprobes");
    const std::string target = getppid_kernel_function();
    auto attach = [&target](doctor_probes&, bpf_program* prog) {
        return BpfLinkPtr(bpf_program__attach_kprobe(prog, false, target.c_str()));
    };
    const auto res =
        run_program_probe("probe_kprobe", LOUPE_PROBE_KPROBE, nullptr, attach, trigger_syscall);
    r.available = res.ok;
    r.detail = target + ": " + res.detail;
    if (!res.ok && ::access("/sys/bus/event_source/devices/kprobe", F_OK) != 0)
        r.detail += "; no kprobe PMU (kernel built without CONFIG_KPROBES?)";
    return r;
}

FeatureReport probe_fentry() {
    auto r = make("fentry", "fentry / fexit (BPF trampolines)", false,
                  "nothing: loupe does not need fentry/fexit");
    const std::string target = getppid_kernel_function();
    auto prepare = [&target](doctor_probes&, bpf_program* prog) {
        return bpf_program__set_attach_target(prog, 0, target.c_str());
    };
    const auto res = run_program_probe("probe_fentry", LOUPE_PROBE_FENTRY, prepare, attach_default,
                                       trigger_syscall);
    r.available = res.ok;
    r.detail = target + ": " + res.detail;
    return r;
}

// One TCP exchange over loopback inside this process: connect() (SYN_SENT), a write and a read on
// each side, then close. Errors are ignored: a probe that did not run reports it.
void loopback_tcp_exchange() {
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (!listener.valid() || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener.get(), 1) != 0 ||
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        return;
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!client.valid() ||
        ::connect(client.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
        return;
    UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!server.valid()) return;
    char byte = 'x';
    for (int fd : {client.get(), server.get()}) {
        if (::send(fd, &byte, 1, MSG_NOSIGNAL) != 1) return;
    }
    for (int fd : {server.get(), client.get()}) {
        if (::recv(fd, &byte, 1, 0) != 1) return;
    }
}

// A socket tracepoint of the socket capture, probed as loupe attaches it (tp_btf), fired by a
// loopback exchange of this process.
FeatureReport probe_socket_tracepoint(const char* id, const char* program, loupe_doctor_probe probe,
                                      const char* impact) {
    auto r = make(id, (std::string("tracepoint sock:") + id).c_str(), false, impact, true);
    const auto res =
        run_program_probe(program, probe, nullptr, attach_default, loopback_tcp_exchange);
    r.available = res.ok;
    r.detail = "loopback TCP exchange: " + res.detail;
    if (!res.ok) {
        // Say whether the kernel has the tracepoint at all, or refused a program on it.
        btf* vmlinux = btf__load_vmlinux_btf();
        const std::string type = std::string("btf_trace_") + id;
        if (vmlinux && btf__find_by_name_kind(vmlinux, type.c_str(), BTF_KIND_TYPEDEF) < 0)
            r.detail += "; this kernel has no such tracepoint";
        btf__free(vmlinux);
    }
    return r;
}

int perf_event_open(perf_event_attr* attr, pid_t pid, int cpu) {
    return static_cast<int>(
        ::syscall(SYS_perf_event_open, attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC));
}

bool hardware_counters_available() {
    perf_event_attr attr{};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_HARDWARE;
    attr.config = PERF_COUNT_HW_CPU_CYCLES;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    UniqueFd fd(perf_event_open(&attr, 0, -1));
    return fd.valid();
}

FeatureReport probe_perf_event() {
    auto r = make("perf_event", "perf events (CPU sampling)", false,
                  "CPU profiling of services (stack sampling)");
    perf_event_attr attr{};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.sample_period = 100'000;  // one sample per 100 us of CPU
    UniqueFd fd(perf_event_open(&attr, 0, -1));
    if (!fd.valid()) {
        r.detail = "perf_event_open(cpu-clock): " + errno_text(errno);
        return r;
    }
    auto attach = [&fd](doctor_probes&, bpf_program* prog) {
        return BpfLinkPtr(bpf_program__attach_perf_event(prog, fd.get()));
    };
    auto spin = [] {
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
        volatile std::uint64_t x = 0;
        while (std::chrono::steady_clock::now() < until)
            x = x + 1;
    };
    const auto res =
        run_program_probe("probe_perf_event", LOUPE_PROBE_PERF_EVENT, nullptr, attach, spin);
    r.available = res.ok;
    r.detail = "software cpu-clock " + res.detail +
               (hardware_counters_available() ? "; hardware counters available"
                                              : "; no hardware counters (software clock only)");
    return r;
}

FeatureReport probe_cgroup_v2() {
    auto r = make(
        "cgroup_v2", "cgroup v2", false,
        "attribution of processes to containers via cgroup v2 ids (v1 paths are used instead)");
    std::ifstream mountinfo("/proc/self/mountinfo");
    std::string line;
    std::vector<std::string> mounts;
    while (std::getline(mountinfo, line)) {
        // Fields: ... mount_point ... - fstype source options
        const auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        std::istringstream tail(line.substr(dash + 3));
        std::string fstype;
        tail >> fstype;
        if (fstype != "cgroup2") continue;
        std::istringstream head(line.substr(0, dash));
        std::string field, mount_point;
        for (int i = 0; i < 5 && head >> field; ++i)
            if (i == 4) mount_point = field;
        mounts.push_back(mount_point);
    }
    r.available = !mounts.empty();
    if (!r.available) {
        r.detail = "no cgroup2 mount found";
        return r;
    }
    const bool unified_only =
        std::find(mounts.begin(), mounts.end(), "/sys/fs/cgroup") != mounts.end();
    r.detail = "mounted at " + mounts.front() +
               (unified_only ? " (unified hierarchy)" : " (hybrid with v1 controllers)");
    return r;
}

// The run-queue histogram reads the scheduler's own per-thread statistics (sched_info), which the
// kernel keeps only with CONFIG_SCHED_INFO; /proc/PID/schedstat shows them (and is absent, or
// all zeros, without them). This process has run, so a kept pcount is at least 1.
FeatureReport probe_sched_info() {
    auto r = make("sched_info", "scheduler statistics (sched_info)", false,
                  "loupe_process_runqueue_latency_seconds stays empty", true);
    std::ifstream schedstat("/proc/self/schedstat");
    std::uint64_t run_ns = 0, wait_ns = 0, runs = 0;
    if (!(schedstat >> run_ns >> wait_ns >> runs)) {
        r.detail = "no /proc/self/schedstat (kernel without CONFIG_SCHED_INFO)";
        return r;
    }
    r.available = runs > 0;
    r.detail = r.available ? "kept: this process got a CPU " + std::to_string(runs) + " time(s)"
                           : "/proc/self/schedstat is all zeros: the kernel does not keep it";
    return r;
}

}  // namespace

std::vector<const FeatureReport*> KernelReport::degraded() const {
    std::vector<const FeatureReport*> out;
    for (const auto& f : features)
        if (f.degrades && !f.available) out.push_back(&f);
    return out;
}

const FeatureReport* KernelReport::find(const std::string& id) const {
    for (const auto& f : features)
        if (f.id == id) return &f;
    return nullptr;
}

bool KernelReport::available(const std::string& id) const {
    const FeatureReport* f = find(id);
    return f && f->available;
}

bool KernelReport::usable() const {
    const bool essentials =
        std::all_of(features.begin(), features.end(),
                    [](const FeatureReport& f) { return !f.essential || f.available; });
    return essentials;
}

KernelReport probe_kernel_features() {
    KernelReport report;
    utsname uts{};
    if (::uname(&uts) == 0) report.kernel_release = uts.release;

    report.features.push_back(probe_bpf_syscall());
    report.features.push_back(probe_btf());
    const auto tracefs = capture::ensure_tracefs();
    report.features.push_back(probe_tracefs(tracefs));
    auto [tracepoint, ring_buffer] = probe_tracepoint_and_ring_buffer(tracefs);
    report.features.push_back(std::move(ring_buffer));
    report.features.push_back(std::move(tracepoint));
    report.features.push_back(probe_raw_tp());
    report.features.push_back(probe_tp_btf());
    report.features.push_back(probe_socket_tracepoint(
        "sock_send_length", "probe_sock_send_length", LOUPE_PROBE_SOCK_SEND_LENGTH,
        "HTTP metrics (requests and responses are read at socket writes and reads), per-process "
        "socket bytes sent, TCP RTT samples"));
    report.features.push_back(probe_socket_tracepoint(
        "sock_recv_length", "probe_sock_recv_length", LOUPE_PROBE_SOCK_RECV_LENGTH,
        "HTTP metrics (requests and responses are read at socket writes and reads), per-process "
        "socket bytes received, TCP RTT samples"));
    report.features.push_back(probe_socket_tracepoint(
        "inet_sock_set_state", "probe_inet_sock_set_state", LOUPE_PROBE_INET_SOCK_SET_STATE,
        "connection roles and closes: HTTP client/server sides, responses delimited by a close "
        "and requests never answered; TCP connections opened/accepted/closed/failed, active "
        "connections and their durations"));
    report.features.push_back(probe_uprobe());
    report.features.push_back(probe_kprobe());
    report.features.push_back(probe_fentry());
    report.features.push_back(probe_perf_event());
    report.features.push_back(probe_cgroup_v2());
    report.features.push_back(probe_sched_info());
    return report;
}

}  // namespace loupe::doctor
