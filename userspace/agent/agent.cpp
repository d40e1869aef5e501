#include "agent/agent.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include <httplib.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "api/routes.h"
#include "capture/hook_set.h"
#include "export/otlp/otlp_metrics_text.h"
#include "export/prometheus_exporter.h"
#include "util/read_file.h"
#include "util/terminal_text.h"
#include "util/url.h"
#include "util/version.h"

namespace loupe::agent {
namespace {

std::chrono::nanoseconds monotonic_now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // the clock of bpf_ktime_get_ns
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

double resident_memory_bytes() {
    std::ifstream statm("/proc/self/statm");
    long pages_total = 0, pages_resident = 0;
    statm >> pages_total >> pages_resident;
    return static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

std::string read_comm(std::uint32_t tgid) {
    std::ifstream in("/proc/" + std::to_string(tgid) + "/comm");
    std::string comm;
    std::getline(in, comm);
    return comm.empty() ? "unknown" : comm;
}

std::vector<std::uint32_t> pids_of(const std::vector<resources::ProcessSample>& processes) {
    std::vector<std::uint32_t> pids;
    pids.reserve(processes.size());
    for (const auto& p : processes)
        pids.push_back(p.pid);
    return pids;
}

}  // namespace

Agent::Agent(AgentConfig config)
    : config_(std::move(config)),
      series_budget_(config_.max_series),
      store_(
          aggregate::StoreLimits{
              config_.max_series, config_.max_routes_per_service, std::chrono::minutes(15),
              !otlp::metrics_url(config_.otlp).empty() && config_.otlp.exponential_histograms},
          &series_budget_),
      slow_log_(config_.slow_log),
      slow_writer_(config_.slow_log_output),
      tracker_(
          pipeline::Selection{config_.pids, config_.comms, config_.ports}, config_.max_connections,
          [this](const protocols::Request& request, const pipeline::ConnectionTracker::Origin& at) {
              const aggregate::RequestContext context{service_key(at.tgid, std::string(at.service)),
                                                      at.server_address, at.server_port};
              const std::uint64_t series = store_.record(request, context, drain_clock_);
              if (slow_log_.is_slow(request)) record_slow(request, context);
              if (joiner_)
                  joiner_->add(request, at, context.service,
                               static_cast<std::uint64_t>(drain_clock_.count()), series);
          },
          [](std::uint32_t tgid) { return read_comm(tgid); }),
      identities_(attribution::ServiceIdentities::read_proc_cgroup, 20'000,
                  std::make_shared<attribution::CgroupLimitReader>()),
      resource_tracker_(
          [this](std::uint32_t pid, const std::string& comm) { return service_key(pid, comm); },
          5000,
          [this](const std::string& service) {
              const auto limits = identities_.limits_of(service);
              return resources::ResourceLimits{limits.cpu_cores, limits.memory_bytes};
          },
          std::chrono::minutes(15), &series_budget_),
      alert_engine_(alerts::effective_rules(config_.alerting)),
      notifier_(std::make_unique<alerts::Notifier>(alerts::Notifier::Options{
          config_.alerting.alertmanager_url, config_.alerting.webhook_url})) {
    // A new HTTP series or a new live service may take the place of a service whose processes
    // all exited: the services departed longest ago go first.
    series_budget_.set_reclaimer(
        [this](std::size_t samples) { return resource_tracker_.evict_departed(samples); });
}

void Agent::record_slow(const protocols::Request& request,
                        const aggregate::RequestContext& context) {
    const std::string service(context.service);
    const auto line =
        slow_log_.record(request, service, context.server_address, context.server_port,
                         identities_.labels_of(service), drain_clock_);
    if (!line || !slow_writer_.enabled() || slow_writer_.write(*line)) return;
    slow_log_.count_write_error();
    // Said once a minute at most: the counter says how many.
    if (slow_write_warned_.count() == 0 ||
        drain_clock_ - slow_write_warned_ > std::chrono::minutes(1)) {
        slow_write_warned_ = drain_clock_;
        spdlog::warn("slow-operation log: cannot write: {}", slow_writer_.last_error());
    }
}

void Agent::note_exemplars(const std::vector<otlp::Span>& spans) {
    // Only when the metrics carry them: exemplars name series, which only metrics export.
    if (!otlp_metrics_) return;
    for (const otlp::Span& span : spans) {
        if (span.series_id == 0) continue;
        otlp::Exemplar& e = exemplars_[span.series_id];
        e.trace_id = span.trace_id;
        e.span_id = span.span_id;
        e.seconds = static_cast<double>(span.end_unix_ns - span.start_unix_ns) / 1e9;
        e.time_unix_ns = span.end_unix_ns;
    }
}

std::shared_ptr<const otlp::Attributes> Agent::otlp_resource(const std::string& service) {
    std::lock_guard lock(mutex_);
    return otlp_resource_locked(service);
}

std::shared_ptr<const otlp::Attributes> Agent::otlp_resource_locked(const std::string& service) {
    if (auto it = otlp_resources_.find(service); it != otlp_resources_.end()) return it->second;
    auto attributes = std::make_shared<otlp::Attributes>();
    auto add = [&](std::string key, std::string value) {
        for (const auto& [k, _] : *attributes)
            if (k == key) return;  // the process's own attribution wins over configured ones
        attributes->emplace_back(std::move(key), std::move(value));
    };
    if (const attribution::Labels* labels = identities_.labels_of(service)) {
        for (const auto& [name, value] : *labels) {
            if (value.empty()) continue;
            std::string key = name;
            std::replace(key.begin(), key.end(), '_', '.');
            if (name == "service_name") key = "service.name";
            if (name == "container_id") key = "container.id";
            add(key, value);
        }
    } else {
        add("service.name", service);
    }
    for (const auto& [k, v] : config_.otlp.resource_attributes)
        add(k, v);
    if (otlp_resources_.size() > 10'000) otlp_resources_.clear();  // identities come and go
    otlp_resources_.emplace(service, attributes);
    return attributes;
}

void Agent::start_otlp() {
    const std::string traces = otlp::traces_url(config_.otlp);
    const std::string metrics = otlp::metrics_url(config_.otlp);
    if (traces.empty() && metrics.empty()) return;
    unix_offset_ns_ = otlp::measure_unix_offset();
    otlp_metrics_ = !metrics.empty();
    if (!traces.empty()) {
        otlp::JoinerOptions options;
        options.sampling_ratio = config_.otlp.sampling_ratio;
        options.always_keep_over_ns = static_cast<std::uint64_t>(
            std::chrono::nanoseconds(config_.otlp.always_keep_over).count());
        std::lock_guard lock(mutex_);
        joiner_ = std::make_unique<otlp::TraceJoiner>(options, unix_offset_ns_);
    }
    otlp::ExporterOptions options;
    options.traces_url = traces;
    options.metrics_url = metrics;
    options.headers = config_.otlp.headers;
    options.gzip = config_.otlp.gzip;
    options.ca_cert_path = config_.otlp.certificate;
    if (!options.ca_cert_path.empty() && ::access(options.ca_cert_path.c_str(), R_OK) != 0)
        spdlog::error("otlp: cannot read the CA certificate file {}: {}; https exports will fail",
                      options.ca_cert_path, std::strerror(errno));
    options.max_queued_spans = config_.otlp.max_queued_spans;
    options.metrics_interval = config_.otlp.metrics_interval;
    options.timeout = config_.otlp.timeout;
    otlp::EncoderContext context;
    context.resource_of = [this](const std::string& service) { return otlp_resource(service); };
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) == 0) context.host_name = host;
    context.scope_version = kVersion;
    // Counting began when the agent started: every export's start time.
    const auto start_unix =
        static_cast<std::uint64_t>(static_cast<std::int64_t>(started_.count()) + unix_offset_ns_);
    auto metrics_context = context;
    otlp_ =
        std::make_unique<otlp::OtlpExporter>(options, context, [this, metrics_context, start_unix] {
            std::size_t points = 0;
            std::lock_guard lock(mutex_);
            const auto now_unix = static_cast<std::uint64_t>(
                static_cast<std::int64_t>(now().count()) + unix_offset_ns_);
            otlp::EncoderContext locked = metrics_context;  // mutex_ is held: no second lock
            locked.resource_of = [this](const std::string& service) {
                return otlp_resource_locked(service);
            };
            otlp::MetricsInput input;
            input.series = &store_.series();
            input.form = config_.otlp.exponential_histograms ? otlp::HistogramForm::kExponential
                                                             : otlp::HistogramForm::kExplicit;
            input.exemplars = &exemplars_;
            if (resources_sampled_) {
                input.services = &resource_tracker_.services();
                input.node_cpus = node_tracker_.node().cpus;
            }
            std::string body = otlp::encode_metrics(input, locked, start_unix, now_unix, &points);
            return std::make_pair(std::move(body), points);
        });
    spdlog::info("otlp: exporting{}{}",
                 traces.empty() ? "" : " traces to " + util::split_url(traces).first,
                 metrics.empty() ? "" : " metrics to " + util::split_url(metrics).first);
}

const std::string& Agent::service_name(const std::string& comm) const {
    const auto it = config_.service_names.find(comm);
    return it == config_.service_names.end() ? comm : it->second;
}

const std::string& Agent::service_key(std::uint32_t pid, const std::string& comm) {
    return identities_.key_for(pid, service_name(comm));
}

void Agent::start_pod_metadata() {
    const auto& k8s = config_.kubernetes;
    const char* in_cluster = std::getenv("KUBERNETES_SERVICE_HOST");
    if (k8s.mode == "off" || (k8s.mode == "auto" && !(in_cluster && *in_cluster))) return;
    node_name_ = k8s.node_name;
    if (node_name_.empty())
        if (const char* env = std::getenv("NODE_NAME"); env && *env) node_name_ = env;
    if (node_name_.empty()) {
        char host[256] = {};
        if (::gethostname(host, sizeof(host) - 1) == 0) node_name_ = host;
    }
    attribution::PodMetadataOptions options;
    options.pods_url = k8s.pods_url.empty()
                           ? attribution::PodMetadataClient::in_cluster_pods_url(node_name_)
                           : k8s.pods_url;
    options.token_file = k8s.token_file;
    options.ca_file = k8s.ca_file;
    options.refresh_interval =
        std::chrono::seconds(std::max<std::uint32_t>(1, k8s.refresh_seconds));
    if (options.pods_url.empty()) {
        // Capture goes on: processes in containers are still told apart by container id.
        spdlog::warn(
            "kubernetes: no pod list URL (not in a cluster and no --k8s-pods-url); pods are "
            "attributed by container id only");
        return;
    }
    spdlog::info("kubernetes: node {}, pods from {}", node_name_, options.pods_url);
    pod_metadata_ = std::make_unique<attribution::PodMetadataClient>(
        options, [this](std::shared_ptr<const attribution::PodDirectory> pods) {
            std::lock_guard lock(mutex_);
            identities_.set_pods(std::move(pods), node_name_);
        });
}

void Agent::attribute_alerts(std::vector<alerts::Alert>& alerts) const {
    for (auto& alert : alerts) {
        const attribution::Labels* labels = identities_.labels_of(alert.service);
        if (!labels) continue;
        for (const auto& [name, value] : *labels)
            alert.labels[name] = value;
    }
}

Agent::~Agent() {
    stop();
    // start() may have failed half-way: no thread may outlive the object.
    request_stop();
    if (endpoint_) endpoint_->close();
}

std::chrono::nanoseconds Agent::now() const {
    return monotonic_now();
}

bool Agent::start_capture() {
    capture::CaptureOptions options;
    options.ring_buffer_bytes = config_.ring_buffer_bytes;
    // --pid and --comm narrow capture in the kernel (traced_tgids, refreshed every second from
    // /proc, and by the kernel at each exec and fork of a process named by --comm); --port is
    // applied in user space.
    options.filter_tgids = filtering_processes();
    options.select_comms = kernel_selected_comms();
    options.disabled_hooks = config_.disabled_hooks;
    if (resource_capture_) options.process_stats_maps = resource_capture_->process_stats_maps();
    capture_ = capture::SocketCapture::start(
        options, [this](std::span<const std::uint8_t> record) { tracker_.on_record(record); },
        capture_error_);
    if (!capture_) {
        spdlog::error("socket capture unavailable: {}", capture_error_);
        return false;
    }
    spdlog::info("socket capture attached to {} tracepoints", capture_->attached_hooks().size());
    return true;
}

void Agent::start_profiler() {
    if (config_.profile_frequency == 0) {
        profiler_error_ = "off (--profile-frequency 0)";
        return;
    }
    profile::ContinuousProfilerOptions options;
    options.frequency_hz = config_.profile_frequency;
    options.filter_tgids = filtering_processes();
    options.select_comms = kernel_selected_comms();
    options.dwarf_services = config_.profile_dwarf;
    profiler_ = profile::ContinuousProfiler::start(
        options,
        [this](std::uint32_t tgid) -> std::string {
            const auto comm = util::read_file(fmt::format("/proc/{}/comm", tgid));
            if (!comm) return {};
            std::string name = *comm;
            while (!name.empty() && name.back() == '\n')
                name.pop_back();
            std::lock_guard lock(mutex_);
            if (!selected_process(tgid, name)) return {};
            return service_key(tgid, name);  // copied under the lock
        },
        profiler_error_);
    if (!profiler_) {
        spdlog::warn("CPU profiling unavailable: {}", profiler_error_);
        return;
    }
    spdlog::info("CPU profiling at {} Hz", config_.profile_frequency);
    if (!config_.profile_dwarf.empty())
        spdlog::info("CPU profiling: DWARF unwinding for {}",
                     fmt::join(config_.profile_dwarf, ", "));
}

api::ProfileReply Agent::service_profile(const std::string& service, int seconds,
                                         const std::string& format) {
    auto error = [](int status, const std::string& message) {
        return api::ProfileReply{status, "application/json",
                                 nlohmann::json{{"error", message}}.dump()};
    };
    if (!profiler_) return error(404, "CPU profiling is " + profiler_error_);
    const auto profile = profiler_->profile(service, std::chrono::seconds(seconds));
    if (!profile)
        return error(
            404, "no CPU samples of this service in the last " + std::to_string(seconds) + " s");
    if (format == "top") {  // the hottest functions, for loupe top's drill-down
        const double total = static_cast<double>(profile->total_samples());
        nlohmann::json rows = nlohmann::json::array();
        for (const auto& f : profile::top_functions(*profile, 20))
            rows.push_back({{"function", f.function},
                            {"module", f.module},
                            {"self_share", static_cast<double>(f.self) / total},
                            {"total_share", static_cast<double>(f.total) / total}});
        return {200, "application/json",
                nlohmann::json{{"service", service},
                               {"seconds", seconds},
                               {"samples", profile->total_samples()},
                               {"frequency_hz", profile->frequency_hz},
                               {"functions", rows}}
                    .dump()};
    }
    if (format == "folded") {
        std::ostringstream out;
        profile::write_folded(*profile, out);
        return {200, "text/plain; charset=utf-8", out.str()};
    }
    if (format == "svg") {
        std::ostringstream out;
        profile::write_flame_graph_svg(
            *profile,
            fmt::format("{}: CPU, last {} s, {} samples at {} Hz", service, seconds,
                        profile->total_samples(), profile->frequency_hz),
            out);
        return {200, "image/svg+xml", out.str()};
    }
    std::string body = profile::pprof_gzipped(*profile);
    if (body.empty()) return error(500, "cannot compress the profile");
    return {200, "application/octet-stream", std::move(body)};
}

std::optional<exporter::ProfileCounters> Agent::profile_counters() const {
    if (!profiler_) return std::nullopt;
    const auto c = profiler_->counters();
    return exporter::ProfileCounters{
        c.samples,           c.lost_kernel,         c.lost_stack,     c.dropped_bounds,
        c.lost_dwarf_ring,   c.lost_dwarf_copy,     c.user_stacks_fp, c.shallow_stacks_fp,
        c.user_stacks_dwarf, c.shallow_stacks_dwarf};
}

void Agent::trace_only(const std::vector<std::uint32_t>& pids) {
    if (resource_capture_) resource_capture_->set_traced_tgids(pids);
    if (profiler_) profiler_->set_traced_tgids(pids);
    std::lock_guard lock(mutex_);
    if (capture_) capture_->set_traced_tgids(pids);
}

std::vector<resources::ProcessSample> Agent::selected_processes() const {
    auto processes = procfs_.processes();
    std::erase_if(processes, [this](const resources::ProcessSample& p) {
        return !selected_process(p.pid, p.comm);
    });
    return processes;
}

bool Agent::selected_process(std::uint32_t pid, const std::string& comm) const {
    auto contains = [](const auto& v, const auto& x) {
        return std::find(v.begin(), v.end(), x) != v.end();
    };
    return (config_.pids.empty() || contains(config_.pids, pid)) &&
           (config_.comms.empty() || contains(config_.comms, comm));
}

void Agent::start_resources() {
    resource_capture_ = capture::ResourceCapture::start(
        [this](const loupe_proc_exit_event& exit) {
            if (selected_process(exit.tgid,
                                 std::string(exit.comm, strnlen(exit.comm, sizeof(exit.comm)))))
                resource_tracker_.on_exit(exit);
        },
        filtering_processes(), kernel_selected_comms(), config_.disabled_hooks, resource_error_);
    if (!resource_capture_) {
        // /proc still gives CPU, memory and disk bytes: degrade, do not stop.
        spdlog::warn(
            "kernel resource hooks unavailable ({}); CPU, memory and disk bytes still come from "
            "/proc",
            resource_error_);
        return;
    }
    spdlog::info("resource hooks attached: {}", resource_capture_->attached_hooks().size());
}

// A name in --disable-hooks that matched no hook of either object is most likely a typo, or a hook
// an older loupe had (sched_wakeup, syscalls/sys_exit_accept4): say so rather than ignore it.
void Agent::warn_unknown_disabled_hooks() const {
    for (const auto& name : config_.disabled_hooks) {
        if (name == "tls") continue;  // the TLS uprobes, all of them (SocketCapture)
        auto matches = [&](const std::vector<std::string>& hooks) {
            return std::any_of(hooks.begin(), hooks.end(), [&](const std::string& hook) {
                return capture::hook_named(name, hook);
            });
        };
        if ((capture_ && matches(capture_->disabled_hooks())) ||
            (resource_capture_ && matches(resource_capture_->disabled_hooks())))
            continue;
        spdlog::warn("--disable-hooks: no hook named {} (names as /api/v1/agent lists them)", name);
    }
}

void Agent::resource_loop() {
    // /proc is read once a second: CPU time, RSS and I/O bytes are exact there and cheap to read
    // at this rate; the kernel maps add what /proc cannot tell (latencies, TCP, socket bytes).
    while (running_) {
        const auto processes = selected_processes();
        const auto pids = pids_of(processes);
        // New processes with a selected name are traced within a second of appearing.
        if (filtering_processes()) trace_only(pids);
        // The TLS libraries of new processes; every process's every 5 s, for libraries loaded
        // later (dlopen: Python's ssl module). A library already probed needs no scan: its
        // uprobes serve every process that maps it, from the moment it does.
        if (capture_) capture_->scan_tls_libraries(pids, ++tls_scans_ % 5 == 0);
        const auto node = procfs_.node();
        std::unordered_map<std::uint32_t, loupe_proc_stats> kernel;
        std::unordered_map<std::uint32_t, std::uint64_t> active;
        capture::NodeKernelCounters counters;
        std::size_t entries = 0;
        if (resource_capture_) {
            kernel = resource_capture_->proc_stats();
            active = resource_capture_->active_connections();
            counters = resource_capture_->node_counters();
            entries = kernel.size();
        }
        {
            std::lock_guard lock(mutex_);
            // Exits after the /proc scan: a process is then either live in the scan or exited.
            if (resource_capture_) resource_capture_->poll_exits();
            resource_tracker_.on_sample(processes, kernel, active, now());
            // After the exits of this round: they still needed the identity of their pid.
            identities_.retain(pids);
            if (identities_.take_unknown_containers() && pod_metadata_)
                pod_metadata_->request_refresh();
            node_tracker_.on_sample(node, counters.tcp_retransmits, now());
            history_.record(resource_tracker_.services(), node_tracker_.node(), now());
            kernel_counters_ = counters;
            proc_stats_entries_ = entries;
            resources_sampled_ = true;
        }
        // The exit ring holds ~400 exits (512 KiB; each carries the process's histograms): read
        // once a second, it overflowed when 1,000 processes exited within 0.9 s. Read ten times
        // a second, it keeps up with ~4,000 exits a second. An exit read between two samples
        // ends its process's live entry, and the next /proc scan skips its pid.
        for (int slice = 0; slice < 10 && running_; ++slice) {
            pause(std::chrono::milliseconds(100));
            if (!resource_capture_) continue;
            std::lock_guard lock(mutex_);
            resource_capture_->poll_exits();
        }
    }
}

void Agent::alert_loop() {
    while (running_) {
        const auto interval = config_.alerting.evaluation_interval;
        std::vector<alerts::Transition> transitions;
        std::vector<alerts::Alert> to_send;
        const auto wall = alerts::WallClock::now();
        const auto steady = std::chrono::steady_clock::now();
        {
            std::lock_guard lock(mutex_);
            if (resources_sampled_) {
                const AgentSignals signals(store_, resource_tracker_.services(),
                                           node_tracker_.node(), history_, now());
                transitions = alert_engine_.evaluate(signals, wall);
            }
            // Re-send firing alerts so that Alertmanager keeps them (their endsAt moves ahead).
            for (const auto& a : alert_engine_.active()) {
                if (a.state != alerts::AlertState::kFiring) continue;
                auto& last = last_sent_[{a.rule, a.service}];
                if (steady - last >= config_.alerting.resend_interval) {
                    last = steady;
                    to_send.push_back(a);
                }
            }
        }
        for (const auto& t : transitions) {
            // Service names are any bytes a process chose: no escape sequence reaches a log
            // someone tails on a terminal.
            spdlog::info("{}", util::terminal_safe(alerts::describe(t)));
            if (t.from == alerts::AlertState::kFiring && t.to == alerts::AlertState::kInactive) {
                to_send.push_back(t.alert);  // resolved: endsAt = now
                std::lock_guard lock(mutex_);
                last_sent_.erase({t.alert.rule, t.alert.service});
            }
        }
        if (!to_send.empty()) {
            {
                std::lock_guard lock(mutex_);
                attribute_alerts(to_send);
            }
            notifier_->enqueue(
                alerts::alertmanager_payload(to_send, wall, 4 * config_.alerting.resend_interval,
                                             "http://" + config_.listen + "/api/v1/alerts"));
        }
        pause(std::chrono::duration_cast<std::chrono::milliseconds>(interval));
    }
}

void Agent::reload() {
    if (config_.config_path.empty()) {
        spdlog::info("SIGHUP: no config file to reload");
        return;
    }
    AgentConfig fresh;
    if (auto error = load_config_file(config_.config_path, fresh)) {
        spdlog::error("SIGHUP: config not reloaded, keeping the current alert rules: {}", *error);
        return;
    }
    std::lock_guard lock(mutex_);
    config_.alerting.rules = fresh.alerting.rules;
    config_.alerting.default_rules = fresh.alerting.default_rules;
    alert_engine_.replace_rules(alerts::effective_rules(config_.alerting));
    spdlog::info("SIGHUP: reloaded {} alert rules from {}", alert_engine_.rules().size(),
                 config_.config_path);
}

void Agent::set_hooks_paused(bool paused) {
    std::lock_guard lock(mutex_);
    if (paused == hooks_paused_) return;
    if (capture_) capture_->set_paused(paused);
    if (resource_capture_) resource_capture_->set_paused(paused);
    if (profiler_) profiler_->set_paused(paused);
    hooks_paused_ = paused;
    if (paused) {
        spdlog::warn(
            "SIGUSR1: kernel hooks detached but process exits and TCP state changes; requests, "
            "socket bytes, disk, run-queue, retransmits, resets and CPU profiles stop until "
            "SIGUSR2");
    } else {
        spdlog::info("SIGUSR2: kernel hooks attached again: {} socket capture, {} resource",
                     capture_ ? capture_->attached_hooks().size() : 0,
                     resource_capture_ ? resource_capture_->attached_hooks().size() : 0);
    }
}

void Agent::consume_loop() {
    // Wake-ups are batched in the kernel: it wakes this thread each time a CPU sent an eighth of
    // its ring, and the timeout drains whatever is there at least every 100 ms: under load, one
    // drain per eighth of a ring of events; idle, ten a second (a fixed 10 ms drain cost the
    // agent 0.9 % of a core doing nothing, this 0.4 %; see docs/BENCHMARKS.md).
    constexpr int kMaxDrainIntervalMs = 100;
    auto last_expiry = now();
    while (running_) {
        if (!capture_) {
            pause(std::chrono::milliseconds(kMaxDrainIntervalMs));
            continue;
        }
        capture_->wait(kMaxDrainIntervalMs);
        if (!batch_timer_refused_ && capture_->batch_timer_error() != 0) {
            batch_timer_refused_ = true;
            spdlog::warn(
                "the kernel refused the per-CPU timers that send socket event batches ({}): every "
                "event is sent on its own from now on, which costs the traced services more CPU",
                std::strerror(-capture_->batch_timer_error()));
        }
        // The rings are emptied without the lock (only this thread touches them): a scrape or the
        // resource sampler holding it, preempted on a saturated node, must not let them fill.
        const std::int64_t collected = capture_->collect();
        {
            std::lock_guard lock(mutex_);
            if (collected >= 0) {
                drain_clock_ = std::chrono::nanoseconds(collected);
                capture_->release(static_cast<std::uint64_t>(collected));
            }
            tracker_.end_drain();
            if (joiner_) {
                joiner_->release(static_cast<std::uint64_t>(drain_clock_.count()), released_spans_);
                note_exemplars(released_spans_);
            }
        }
        if (otlp_) otlp_->enqueue(released_spans_);  // outside the lock: the queue has its own
        if (now() - last_expiry > std::chrono::seconds(10)) {
            {
                std::lock_guard lock(mutex_);
                store_.expire_idle(now());
                // Identities live as long as a series, a service or an alert names them.
                std::unordered_set<std::string> in_use;
                std::unordered_set<std::uint64_t> series_ids;
                for (const auto& [key, series] : store_.series()) {
                    in_use.insert(key.service);
                    if (!exemplars_.empty()) series_ids.insert(series.id);
                }
                // The exemplars of expired series go with them.
                std::erase_if(exemplars_,
                              [&](const auto& e) { return !series_ids.contains(e.first); });
                for (const auto& [service, _] : resource_tracker_.services())
                    in_use.insert(service);
                for (const auto& alert : alert_engine_.active())
                    in_use.insert(alert.service);
                identities_.retain_keys(in_use);
            }
            // Expired series, services and identities leave free chunks all over the heap:
            // hand the pages back, so that RSS falls after a storm of names or paths is over.
            // Outside the lock: it walks the heap.
            ::malloc_trim(0);
            last_expiry = now();
        }
    }
    if (capture_) {
        std::lock_guard lock(mutex_);
        drain_clock_ = now();
        capture_->flush();
        tracker_.end_all_closed();
        if (joiner_) joiner_->release(0, released_spans_, true);
    }
    if (otlp_) otlp_->enqueue(released_spans_);
}

std::string Agent::metrics_text() {
    std::lock_guard lock(mutex_);
    const auto at = now();
    const exporter::MetricsView view{
        store_,
        tracker_.counters(),
        tracker_.live_connections(),
        capture_ ? capture_->drops() : capture::DropCounters{},
        at,
        std::chrono::duration<double>(at - started_).count(),
        resident_memory_bytes(),
        resources_sampled_ ? &resource_tracker_.services() : nullptr,
        resources_sampled_ ? &node_tracker_.node() : nullptr,
        kernel_counters_,
        proc_stats_entries_,
        &alert_engine_,
        notifier_->counters(),
        &identities_,
        pod_metadata_ ? std::optional(pod_metadata_->status()) : std::nullopt,
        hooks_paused_,
        last_metrics_bytes_,
        &series_budget_,
        resource_tracker_.services_dropped(),
        resource_tracker_.services_evicted(),
        resource_tracker_.services_refused(),
        &slow_log_,

        capture_ ? capture_->tls_counters() : capture::TlsCounters{},
        profile_counters()};
    std::string text = exporter::render_prometheus(view);
    if (otlp_)
        text += otlp::render_otlp_metrics(otlp_->counters(),
                                          joiner_ ? joiner_->counters() : otlp::JoinerCounters{},
                                          joiner_ ? joiner_->held() : 0);
    last_metrics_bytes_ = text.size();
    return text;
}

void Agent::read(const std::function<void(const api::StateView&)>& fn) {
    std::lock_guard lock(mutex_);
    const api::StateView view{store_,
                              resource_tracker_,
                              resources_sampled_,
                              node_tracker_.node(),
                              alert_engine_,
                              identities_,
                              now(),
                              started_,
                              &slow_log_};
    fn(view);
}

api::Readiness Agent::readiness() {
    api::Readiness r;
    r.ready = ready_ && running_;
    r.started_up = started_up_;
    r.shutting_down = !running_;
    std::lock_guard lock(mutex_);
    r.capture = capture_ ? "attached" : "unavailable: " + capture_error_;
    return r;
}

double Agent::uptime_seconds() {
    return std::chrono::duration<double>(now() - started_).count();
}

nlohmann::json Agent::agent_status() {
    nlohmann::json body = {
        {"version", kVersion},
        {"uptime_seconds", std::chrono::duration<double>(now() - started_).count()},
        {"listen", config_.listen}};
    const HttpEndpointCounters http = endpoint_->counters();
    body["http_endpoint"] = {{"connections_open", endpoint_->open_connections()},
                             {"max_connections", endpoint_->max_connections()},
                             {"connections_accepted", http.connections_accepted},
                             {"connections_evicted", http.connections_evicted},
                             {"connections_refused", http.connections_refused},
                             {"requests", http.requests},
                             {"requests_rejected", http.requests_rejected},
                             {"requests_overloaded", http.requests_overloaded},
                             {"request_timeouts", http.request_timeouts},
                             {"idle_timeouts", http.idle_timeouts},
                             {"write_timeouts", http.write_timeouts},
                             {"output_overflows", http.output_overflows}};
    {
        std::lock_guard lock(mutex_);
        const auto& c = tracker_.counters();
        body["events_total"] = c.events;
        body["exchanges_total"] = c.exchanges;
        body["connections_tracked"] = tracker_.live_connections();
        body["series"] = store_.series().size();
        body["alerts_firing"] = alert_engine_.firing_count();
        body["alerts_pending"] = alert_engine_.pending_count();
        if (capture_) {
            const auto d = capture_->drops();
            body["kernel_drops"] = {{"ringbuf_full", d.ringbuf_full},
                                    {"unsupported_syscall", d.unsupported_syscall},
                                    {"conn_table_full", d.conn_table_full},
                                    {"nested", d.nested},
                                    {"copy_fault", d.copy_fault},
                                    {"recursion_miss", d.recursion_misses}};
            const int timer_error = capture_->batch_timer_error();
            body["event_batches"] = timer_error == 0
                                        ? std::string("per-CPU, sent by timer")
                                        : "off: the kernel refused the batch timers (" +
                                              std::string(std::strerror(-timer_error)) + ")";
            body["hooks_attached"] = capture_->attached_hooks();
            body["hooks_missing"] = capture_->missing_hooks();
            nlohmann::json libraries = nlohmann::json::array();
            std::size_t uprobes = 0;
            for (const auto& lib : capture_->tls_libraries()) {
                uprobes += lib.uprobes.size();
                libraries.push_back({{"library", lib.library},
                                     {"path", lib.path},
                                     {"processes", lib.processes},
                                     {"uprobes", lib.uprobes},
                                     {"error", lib.error}});
                if (lib.library == "go") libraries.back()["go_version"] = lib.version;
            }
            const auto tls = capture_->tls_counters();
            body["tls"] = {{"enabled", capture_->tls_error().empty()},
                           {"error", capture_->tls_error()},
                           {"libraries", libraries},
                           {"uprobes_attached", uprobes},
                           {"connections",
                            {{"openssl", tls.openssl_connections},
                             {"go", tls.go_connections},
                             {"unknown", tls.unknown_connections}}},
                           {"untied_calls", tls.untied_calls},
                           {"bio_ties", tls.bio_ties},
                           {"go_unreadable_calls", tls.go_unreadable_calls}};
        }
        if (resource_capture_) {
            body["resource_hooks_attached"] = resource_capture_->attached_hooks();
            body["resource_hooks_missing"] = resource_capture_->missing_hooks();
        }
        body["hooks_disabled"] = config_.disabled_hooks;
        body["hooks_paused"] = hooks_paused_;
        body["cpu_profiling"] =
            profiler_
                ? nlohmann::json{{"frequency_hz", profiler_->frequency_hz()}, {"status", "on"}}
                : nlohmann::json{{"status", profiler_error_}};
    }
    std::lock_guard lock(features_mutex_);
    if (features_) {
        nlohmann::json features = nlohmann::json::object();
        for (const auto& f : features_->features)
            features[f.id] = f.available;
        body["kernel_features"] = features;
    }
    return body;
}

bool Agent::start() {
    started_ = now();
    // A scrape's text (megabytes on a busy node) and the buffers of the HTTP server's threads
    // come from mmap and go back to the system when freed: glibc otherwise raises its mmap
    // threshold after the first such free and serves the next ones from the heap, which then
    // keeps the peak. Two arenas: one per server thread would each keep their own peak.
    ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    ::mallopt(M_ARENA_MAX, 2);
    // A slow-log file that cannot be opened would otherwise be found out at the first slow
    // operation, maybe days later.
    if (std::string problem; !slow_writer_.open(problem)) {
        spdlog::error("slow-operation log: cannot open the file: {}", problem);
        return false;
    }
    std::string host;
    int port = 0;
    if (!parse_listen(config_.listen, host, port)) {
        spdlog::error("invalid --listen '{}': expected HOST:PORT", config_.listen);
        return false;
    }
    endpoint_ = std::make_unique<HttpEndpoint>();
    api::register_routes(endpoint_->routes(), *this);
    std::string error;
    if (!endpoint_->open(host, port, error)) {
        spdlog::error("{}", error);
        endpoint_.reset();
        return false;
    }
    // Port 0 (`loupe top` running capture in-process): the one the kernel picked.
    if (port == 0)
        config_.listen = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                         std::to_string(endpoint_->port());
    endpoint_->start();
    spdlog::info("loupe agent {} listening on http://{}", kVersion, config_.listen);

    start_pod_metadata();
    start_otlp();
    start_resources();  // first: the socket capture's programs share its per-process maps
    const bool capturing = start_capture();
    start_profiler();
    // Before ready: the selected processes are traced from the first request a client can make
    // once it saw the agent ready (the resource loop's first scan comes later).
    if (filtering_processes()) trace_only(pids_of(selected_processes()));
    // Before ready too: the TLS libraries of the processes running now are probed.
    if (capture_) capture_->scan_tls_libraries(pids_of(selected_processes()), true);
    warn_unknown_disabled_hooks();
    ready_ = capturing;
    started_up_ = true;
    consumer_ = std::thread([this] { consume_loop(); });
    resource_thread_ = std::thread([this] { resource_loop(); });
    alert_thread_ = std::thread([this] { alert_loop(); });
    features_thread_ = std::thread([this] {
        auto report = std::make_unique<doctor::KernelReport>(doctor::probe_kernel_features());
        {
            std::lock_guard lock(features_mutex_);
            features_ = std::move(report);
        }
        // Loading programs parses the kernel's BTF (tens of MB, freed right after); hand the
        // freed heap back so the agent's RSS reflects what it really keeps.
        ::malloc_trim(0);
    });
    return true;
}

void Agent::pause(std::chrono::milliseconds duration) {
    std::unique_lock lock(stop_mutex_);
    stop_cv_.wait_for(lock, duration, [this] { return !running_; });
}

// Under stop_mutex_, so that a thread between its check of running_ and its wait cannot miss it.
bool Agent::request_stop() {
    bool was_running = false;
    {
        std::lock_guard lock(stop_mutex_);
        was_running = running_.exchange(false);
    }
    stop_cv_.notify_all();
    return was_running;
}

void Agent::stop() {
    if (!endpoint_ || !request_stop()) return;
    ready_ = false;
    if (consumer_.joinable()) consumer_.join();
    if (resource_thread_.joinable()) resource_thread_.join();
    if (alert_thread_.joinable()) alert_thread_.join();
    if (features_thread_.joinable()) features_thread_.join();
    pod_metadata_.reset();
    otlp_.reset();      // a last export of what is queued
    profiler_.reset();  // its thread asks the agent's state for service names
    {
        std::lock_guard lock(mutex_);
        capture_.reset();  // detach before the server goes: scrapes during shutdown see 503 ready
        resource_capture_.reset();
    }
    endpoint_->close();
    spdlog::info("loupe agent stopped");
}

int Agent::run() {
    // Signals are taken synchronously by this thread; every thread started later inherits the
    // mask, so none of them is interrupted by SIGTERM/SIGINT.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    if (!start()) return 2;
    int signal_number = 0;
    while (sigwait(&signals, &signal_number) == 0 && signal_number != SIGTERM &&
           signal_number != SIGINT) {
        if (signal_number == SIGHUP)
            reload();
        else
            set_hooks_paused(signal_number == SIGUSR1);
    }
    spdlog::info("received {}, shutting down", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
    stop();
    return 0;
}

}  // namespace loupe::agent
