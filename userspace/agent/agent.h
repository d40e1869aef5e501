// `loupe agent`: capture -> parse -> aggregate, served over HTTP (/metrics, /health, /api/v1).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/agent_config.h"
#include "agent/alert_signals.h"
#include "api/routes.h"
#include "agent/http_endpoint.h"
#include "alerts/alert_engine.h"
#include "alerts/notifier.h"
#include "attribution/pod_metadata_client.h"
#include "attribution/service_identities.h"
#include "aggregate/request_metrics.h"
#include "aggregate/slow_operations.h"
#include "export/slow_log_file.h"
#include "capture/socket_capture.h"
#include "capture/resource_capture.h"
#include "doctor/kernel_features.h"
#include "export/otlp/otlp_exporter.h"
#include "export/otlp/trace_joiner.h"
#include "export/prometheus_exporter.h"
#include "pipeline/connection_tracker.h"
#include "profile/continuous_profiler.h"
#include "resources/procfs.h"
#include "resources/resource_tracker.h"

namespace loupe::agent {

class Agent final : private api::AgentSource {
  public:
    explicit Agent(AgentConfig config);
    ~Agent();
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    // Runs until SIGTERM/SIGINT; returns the process exit status.
    int run();
    // Starts serving and capturing in background threads (no signal handling); false when the
    // listen address is unusable. A port of 0 picks a free one: see listen_address().
    bool start();
    // Detaches the probes and stops every thread; idempotent.
    void stop();
    const std::string& listen_address() const { return config_.listen; }

  private:
    bool start_capture();
    void start_resources();
    void warn_unknown_disabled_hooks() const;
    // Sleeps `duration`, or less when the agent stops.
    void pause(std::chrono::milliseconds duration);
    bool request_stop();  // true: this call stopped it
    void consume_loop();
    void resource_loop();
    void alert_loop();
    // Re-reads the config file (SIGHUP): new alert rules, or the old ones kept when it is invalid.
    void reload();
    // SIGUSR1 detaches the kernel hooks, SIGUSR2 attaches them again: sheds loupe's cost on a
    // node in trouble without losing its state, and lets tools/bench/ measure its overhead in
    // alternating phases seconds apart (restarting the agent takes several seconds of CPU).
    void set_hooks_paused(bool paused);
    const std::string& service_name(const std::string& comm) const;
    // The identity key of a process (see attribution/service_identities.h); under mutex_. Valid
    // until the identities change (use it at once).
    const std::string& service_key(std::uint32_t pid, const std::string& comm);
    // Pod metadata from the API server or kubelet, when running in Kubernetes.
    void start_pod_metadata();
    // OTLP export, when an endpoint is configured: the trace joiner and the exporter's threads.
    void start_otlp();
    // The OTLP resource of a service key: its identity's labels under OTel's names.
    // Keeps each series' latest sampled span as its exemplar (mutex_ held).
    void note_exemplars(const std::vector<otlp::Span>& spans);
    std::shared_ptr<const otlp::Attributes> otlp_resource(const std::string& service);
    std::shared_ptr<const otlp::Attributes> otlp_resource_locked(const std::string& service);
    // Labels of firing/resolved alerts as the metrics carry them (service_name, k8s_*).
    void attribute_alerts(std::vector<alerts::Alert>& alerts) const;
    // --pid/--comm selection, for resources (HTTP applies --port too, in the tracker).
    bool selected_process(std::uint32_t pid, const std::string& comm) const;
    // The live processes of that selection (all when there is none), from one /proc scan: they
    // feed the kernel-side filters of both captures, resources and attribution alike.
    std::vector<resources::ProcessSample> selected_processes() const;
    bool filtering_processes() const { return !config_.pids.empty() || !config_.comms.empty(); }
    // The --comm names the kernel selects new processes by: none with --pid, which a new process
    // cannot match (both flags must match).
    std::vector<std::string> kernel_selected_comms() const {
        return config_.pids.empty() ? config_.comms : std::vector<std::string>{};
    }
    // --pid/--comm: both captures' kernel filters, from one /proc scan.
    void trace_only(const std::vector<std::uint32_t>& pids);
    // api::AgentSource: what the HTTP handlers (api/routes.cpp) read.
    void read(const std::function<void(const api::StateView&)>& fn) override;
    std::string metrics_text() override;
    nlohmann::json agent_status() override;
    api::Readiness readiness() override;
    double uptime_seconds() override;
    api::ProfileReply service_profile(const std::string& service, int seconds,
                                      const std::string& format) override;
    // Continuous CPU profiling (--profile-frequency), when perf events allow it.
    void start_profiler();
    std::optional<exporter::ProfileCounters> profile_counters() const;
    std::chrono::nanoseconds now() const;

    AgentConfig config_;
    std::chrono::nanoseconds started_{0};

    std::mutex mutex_;  // guards store_, tracker_ and their counters
    // Shared by the HTTP series and the services' resource series; guarded by mutex_.
    stats::SeriesBudget series_budget_;
    aggregate::RequestMetricsStore store_;
    // When the records being handed over were collected: the time their exchanges are recorded
    // at, one clock read a drain instead of one a request (clock_gettime was ~6 % of the agent's
    // CPU under nginx + wrk on this VM's kvm-clock). Guarded by mutex_.
    std::chrono::nanoseconds drain_clock_{0};
    // Finished requests over their protocol's threshold (guarded by mutex_), and where their
    // lines go besides memory.
    aggregate::SlowOperationLog slow_log_;
    exporter::SlowLogWriter slow_writer_;
    std::chrono::nanoseconds slow_write_warned_{0};
    void record_slow(const protocols::Request& request, const aggregate::RequestContext& context);
    pipeline::ConnectionTracker tracker_;
    std::unique_ptr<capture::SocketCapture> capture_;
    std::string capture_error_;

    // Who each process is: container and pod attribution; guarded by mutex_.
    attribution::ServiceIdentities identities_;
    std::unique_ptr<attribution::PodMetadataClient> pod_metadata_;
    std::string node_name_;

    // Resources: sampled every second by resource_loop; guarded by mutex_ as well.
    resources::ProcFs procfs_;
    resources::ResourceTracker resource_tracker_;
    resources::NodeTracker node_tracker_;
    std::unique_ptr<capture::ResourceCapture> resource_capture_;
    std::unique_ptr<profile::ContinuousProfiler> profiler_;  // null when off or unavailable
    std::string profiler_error_;
    std::string resource_error_;
    capture::NodeKernelCounters kernel_counters_;
    std::size_t proc_stats_entries_ = 0;
    bool resources_sampled_ = false;
    std::thread resource_thread_;
    std::uint64_t tls_scans_ = 0;  // rounds of resource_loop (its thread only)

    // Alerts: evaluated by alert_loop every evaluation_interval; guarded by mutex_.
    ResourceHistory history_;
    alerts::AlertEngine alert_engine_;
    std::unique_ptr<alerts::Notifier> notifier_;
    std::map<std::pair<std::string, std::string>, std::chrono::steady_clock::time_point> last_sent_;
    std::thread alert_thread_;
    bool batch_timer_refused_ = false;    // and warned about (consume_loop's thread only)
    bool hooks_paused_ = false;           // guarded by mutex_
    std::size_t last_metrics_bytes_ = 0;  // size of the last /metrics text; guarded by mutex_

    std::atomic<bool> running_{true};
    // The periodic threads sleep on this until their next round or until stopping: polling
    // running_ in 100 ms steps woke the idle agent ~20 times a second for nothing.
    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    std::atomic<bool> ready_{false};
    std::atomic<bool> started_up_{false};
    std::thread consumer_;
    std::unique_ptr<HttpEndpoint> endpoint_;

    // OTLP: spans joined under mutex_ (fed by the tracker's sink), sent by the exporter's threads.
    std::unique_ptr<otlp::TraceJoiner> joiner_;
    std::vector<otlp::Span> released_spans_;  // consume_loop's scratch
    std::map<std::string, std::shared_ptr<const otlp::Attributes>> otlp_resources_;  // mutex_
    std::int64_t unix_offset_ns_ = 0;
    // The latest sampled span of each request series (mutex_): its OTLP exemplar.
    otlp::Exemplars exemplars_;
    bool otlp_metrics_ = false;  // metrics are exported (set once, before the consumer starts)
    std::unique_ptr<otlp::OtlpExporter> otlp_;

    std::mutex features_mutex_;
    std::unique_ptr<doctor::KernelReport> features_;
    std::thread features_thread_;
};

}  // namespace loupe::agent
