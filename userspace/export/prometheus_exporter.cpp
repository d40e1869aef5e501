#include "export/prometheus_exporter.h"

#include <cmath>
#include <sstream>
#include <utility>
#include <vector>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "util/version.h"

namespace loupe::exporter {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

struct Window {
    const char* label;
    std::chrono::nanoseconds span;
};
constexpr Window kWindows[] = {{"1m", std::chrono::minutes(1)}, {"5m", std::chrono::minutes(5)}};
constexpr std::pair<const char*, double> kQuantiles[] = {
    {"0.5", 0.5}, {"0.95", 0.95}, {"0.99", 0.99}};  // label, q

using Labels = std::vector<ClientMetric::Label>;

// service_name, and for processes in containers and pods container_id and k8s_* (OpenTelemetry
// resource attributes), followed by `extra`.
Labels service_labels(const MetricsView& view, const std::string& key, Labels extra = {}) {
    Labels labels;
    const attribution::Labels* attributed =
        view.identities ? view.identities->labels_of(key) : nullptr;
    if (attributed) {
        for (const auto& [name, value] : *attributed)
            labels.push_back({name, value});
    } else {
        labels.push_back({"service_name", key});
    }
    labels.insert(labels.end(), std::make_move_iterator(extra.begin()),
                  std::make_move_iterator(extra.end()));
    return labels;
}

Labels http_labels(const MetricsView& view, const aggregate::HttpSeriesKey& key) {
    Labels labels = service_labels(view, key.service,
                                   {{"http_request_method", key.method},
                                    {"http_route", key.route},
                                    {"http_response_status_code", key.status}});
    if (key.side == aggregate::HttpSide::kClient) {
        labels.push_back({"server_address", key.server_address});
        labels.push_back({"server_port", key.server_port});
    }
    return labels;
}

MetricFamily family(std::string name, std::string help, MetricType type) {
    MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
}

ClientMetric sample(double value, std::vector<ClientMetric::Label> labels, MetricType type) {
    ClientMetric m;
    m.label = std::move(labels);
    if (type == MetricType::Counter)
        m.counter.value = value;
    else
        m.gauge.value = value;
    return m;
}

void add_counter(std::vector<MetricFamily>& out, const char* name, const char* help, double value,
                 std::vector<ClientMetric::Label> labels = {}) {
    auto f = family(name, help, MetricType::Counter);
    f.metric.push_back(sample(value, std::move(labels), MetricType::Counter));
    out.push_back(std::move(f));
}

void add_gauge(std::vector<MetricFamily>& out, const char* name, const char* help, double value,
               std::vector<ClientMetric::Label> labels = {}) {
    auto f = family(name, help, MetricType::Gauge);
    f.metric.push_back(sample(value, std::move(labels), MetricType::Gauge));
    out.push_back(std::move(f));
}

void add_http_families(std::vector<MetricFamily>& out, const MetricsView& view,
                       aggregate::HttpSide side) {
    const bool server = side == aggregate::HttpSide::kServer;
    auto histogram = family(
        server ? "http_server_request_duration_seconds" : "http_client_request_duration_seconds",
        server ? "Duration of HTTP server requests: first request byte read to last response "
                 "byte written (kernel clock)."
               : "Duration of HTTP client requests: first request byte written to last "
                 "response byte read (kernel clock).",
        MetricType::Histogram);
    auto windowed =
        family(server ? "loupe_http_server_request_duration_window_seconds"
                      : "loupe_http_client_request_duration_window_seconds",
               "Request duration over a sliding window (label window): quantiles from the sketch "
               "(0.54% relative error), exact _count and _sum of the window.",
               MetricType::Summary);
    stats::LogSketch merged;
    for (const auto& [key, series] : view.http.series()) {
        if (key.side != side) continue;
        ClientMetric h;
        h.label = http_labels(view, key);
        h.histogram.sample_count = series.count;
        h.histogram.sample_sum = static_cast<double>(series.sum_ns) * 1e-9;
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < aggregate::kDurationBoundsNs.size(); ++i) {
            cumulative += series.buckets[i];
            h.histogram.bucket.push_back(
                {cumulative, static_cast<double>(aggregate::kDurationBoundsNs[i]) * 1e-9});
        }
        h.histogram.bucket.push_back({series.count, std::numeric_limits<double>::infinity()});
        histogram.metric.push_back(std::move(h));

        for (const auto& w : kWindows) {
            series.window.window(w.span, view.now, merged);
            if (merged.empty()) continue;
            ClientMetric m;
            m.label = http_labels(view, key);
            m.label.push_back({"window", w.label});
            m.summary.sample_count = merged.count();
            m.summary.sample_sum = static_cast<double>(merged.sum_ns()) * 1e-9;
            for (const auto& [qlabel, q] : kQuantiles)
                m.summary.quantile.push_back({q, merged.quantile_ns(q) * 1e-9});
            windowed.metric.push_back(std::move(m));
        }
    }
    out.push_back(std::move(histogram));
    out.push_back(std::move(windowed));
}

// A log2-microsecond kernel histogram as a Prometheus histogram: bucket i counts [2^i, 2^(i+1))
// us, so its upper bound is 2^(i+1) us; the kernel keeps the exact sum beside it.
ClientMetric log2_histogram(const resources::Log2Histogram& hist, std::uint64_t sum_ns,
                            std::vector<ClientMetric::Label> labels) {
    ClientMetric m;
    m.label = std::move(labels);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < hist.size(); ++i) {
        cumulative += hist[i];
        if (i + 1 < hist.size())
            m.histogram.bucket.push_back({cumulative, std::ldexp(1e-6, static_cast<int>(i) + 1)});
    }
    m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = static_cast<double>(sum_ns) * 1e-9;
    return m;
}

void add_resource_families(std::vector<MetricFamily>& out, const MetricsView& view) {
    using resources::ServiceResources;
    const auto& services = *view.services;
    auto per_service = [&](const char* name, const char* help, MetricType type, auto&& value) {
        auto f = family(name, help, type);
        for (const auto& [service, r] : services)
            f.metric.push_back(
                sample(static_cast<double>(value(r)), service_labels(view, service), type));
        out.push_back(std::move(f));
    };
    auto per_service_dir = [&](const char* name, const char* help, const char* label, const char* a,
                               const char* b, auto&& value_a, auto&& value_b) {
        auto f = family(name, help, MetricType::Counter);
        for (const auto& [service, r] : services) {
            f.metric.push_back(sample(static_cast<double>(value_a(r)),
                                      service_labels(view, service, {{label, a}}),
                                      MetricType::Counter));
            f.metric.push_back(sample(static_cast<double>(value_b(r)),
                                      service_labels(view, service, {{label, b}}),
                                      MetricType::Counter));
        }
        out.push_back(std::move(f));
    };
    auto per_service_hist = [&](const char* name, const char* help,
                                resources::Log2Histogram resources::ResourceTotals::*hist,
                                std::uint64_t resources::ResourceTotals::*sum_ns) {
        auto f = family(name, help, MetricType::Histogram);
        for (const auto& [service, r] : services)
            f.metric.push_back(
                log2_histogram(r.totals.*hist, r.totals.*sum_ns, service_labels(view, service)));
        out.push_back(std::move(f));
    };
    const double cpus = view.node && view.node->cpus ? view.node->cpus : 1.0;
    const double mem_total = view.node && view.node->mem_total_bytes
                                 ? static_cast<double>(view.node->mem_total_bytes)
                                 : 1.0;

    per_service(
        "process_cpu_time_seconds_total", "CPU time of the service's processes, live and exited.",
        MetricType::Counter,
        [](const ServiceResources& r) { return static_cast<double>(r.totals.cpu_ns) * 1e-9; });
    per_service("loupe_process_cpu_utilization_cores",
                "Cores the service used over the last second.", MetricType::Gauge,
                [](const ServiceResources& r) { return r.cpu_cores; });
    per_service("process_cpu_utilization_ratio",
                "Share of the node's CPU capacity the service used over the last second.",
                MetricType::Gauge, [&](const ServiceResources& r) { return r.cpu_cores / cpus; });
    per_service("process_memory_usage_bytes",
                "Resident memory (RSS) of the service's live processes.", MetricType::Gauge,
                [](const ServiceResources& r) { return r.rss_bytes; });
    per_service("process_memory_utilization_ratio", "RSS as a share of the node's memory.",
                MetricType::Gauge, [&](const ServiceResources& r) {
                    return static_cast<double>(r.rss_bytes) / mem_total;
                });
    {
        // Only services whose container has a limit: these families are empty for the rest.
        auto cpu_limit =
            family("loupe_container_cpu_limit_cores",
                   "CPU quota of the service's container (cgroup cpu.max).", MetricType::Gauge);
        auto cpu_share = family("loupe_container_cpu_limit_utilization_ratio",
                                "Share of its container's CPU quota the service used over the "
                                "last second.",
                                MetricType::Gauge);
        auto memory_limit = family("loupe_container_memory_limit_bytes",
                                   "Memory limit of the service's container (cgroup memory.max).",
                                   MetricType::Gauge);
        auto memory_share =
            family("loupe_container_memory_limit_utilization_ratio",
                   "RSS as a share of its container's memory limit.", MetricType::Gauge);
        for (const auto& [service, r] : services) {
            if (r.limits.cpu_cores > 0) {
                cpu_limit.metric.push_back(
                    sample(r.limits.cpu_cores, service_labels(view, service), MetricType::Gauge));
                cpu_share.metric.push_back(sample(r.cpu_cores / r.limits.cpu_cores,
                                                  service_labels(view, service),
                                                  MetricType::Gauge));
            }
            if (r.limits.memory_bytes > 0) {
                const auto limit = static_cast<double>(r.limits.memory_bytes);
                memory_limit.metric.push_back(
                    sample(limit, service_labels(view, service), MetricType::Gauge));
                memory_share.metric.push_back(sample(static_cast<double>(r.rss_bytes) / limit,
                                                     service_labels(view, service),
                                                     MetricType::Gauge));
            }
        }
        out.push_back(std::move(cpu_limit));
        out.push_back(std::move(cpu_share));
        out.push_back(std::move(memory_limit));
        out.push_back(std::move(memory_share));
    }
    per_service_dir(
        "process_disk_io_bytes_total",
        "Storage bytes the service caused to be read/written (/proc/PID/io).", "disk_io_direction",
        "read", "write", [](const ServiceResources& r) { return r.totals.io_read_bytes; },
        [](const ServiceResources& r) { return r.totals.io_write_bytes; });
    per_service_dir(
        "loupe_process_disk_operations_total", "Block requests the service submitted.",
        "disk_io_direction", "read", "write",
        [](const ServiceResources& r) { return r.totals.disk_read_ops; },
        [](const ServiceResources& r) { return r.totals.disk_write_ops; });
    per_service_hist("loupe_process_disk_io_duration_seconds",
                     "Block request latency, submission to completion.",
                     &resources::ResourceTotals::disk_latency,
                     &resources::ResourceTotals::disk_latency_sum_ns);
    per_service_hist("loupe_process_runqueue_latency_seconds",
                     "Time the service's threads waited runnable for a CPU.",
                     &resources::ResourceTotals::runqueue_latency,
                     &resources::ResourceTotals::runqueue_latency_sum_ns);
    per_service_dir(
        "process_network_io_bytes_total", "Socket bytes sent and received.", "network_io_direction",
        "transmit", "receive", [](const ServiceResources& r) { return r.totals.net_tx_bytes; },
        [](const ServiceResources& r) { return r.totals.net_rx_bytes; });
    {
        auto f = family("loupe_process_tcp_connections_total",
                        "TCP connections: opened (active, established), accepted, closed (after "
                        "being established), "
                        "failed (never established).",
                        MetricType::Counter);
        for (const auto& [service, r] : services) {
            const std::pair<const char*, std::uint64_t> events[] = {
                {"opened", r.totals.tcp_opened},
                {"accepted", r.totals.tcp_accepted},
                {"closed", r.totals.tcp_closed},
                {"failed", r.totals.tcp_failed}};
            for (const auto& [event, value] : events)
                f.metric.push_back(sample(static_cast<double>(value),
                                          service_labels(view, service, {{"event", event}}),
                                          MetricType::Counter));
        }
        out.push_back(std::move(f));
    }
    per_service("loupe_process_tcp_active_connections",
                "Open TCP connections owned by the service.", MetricType::Gauge,
                [](const ServiceResources& r) { return r.active_connections; });
    per_service_hist(
        "loupe_process_tcp_connection_duration_seconds", "Lifetime of closed TCP connections.",
        &resources::ResourceTotals::tcp_duration, &resources::ResourceTotals::tcp_duration_sum_ns);
    per_service("loupe_process_tcp_retransmits_total",
                "TCP segments the service's connections retransmitted.", MetricType::Counter,
                [](const ServiceResources& r) { return r.totals.tcp_retransmits; });
    per_service_hist(
        "loupe_process_tcp_rtt_seconds", "Smoothed RTT samples of the service's TCP connections.",
        &resources::ResourceTotals::tcp_rtt, &resources::ResourceTotals::tcp_rtt_sum_ns);
    per_service_dir(
        "loupe_process_tcp_resets_total", "TCP resets sent and received.", "direction", "sent",
        "received", [](const ServiceResources& r) { return r.totals.tcp_resets_sent; },
        [](const ServiceResources& r) { return r.totals.tcp_resets_received; });
    per_service("loupe_processes", "Live processes of the service.", MetricType::Gauge,
                [](const ServiceResources& r) { return r.processes; });
    per_service("loupe_processes_exited_total",
                "Processes of the service that exited since the agent started.",
                MetricType::Counter, [](const ServiceResources& r) { return r.exited; });

    add_counter(out, "loupe_system_tcp_retransmits_total",
                "Every TCP retransmit on the node, attributed or not.",
                static_cast<double>(view.kernel_counters.tcp_retransmits));
    add_gauge(out, "loupe_bpf_map_entries", "Entries of loupe's per-process kernel map.",
              static_cast<double>(view.proc_stats_entries), {{"map", "proc_stats"}});
    if (const auto* n = view.node) {
        add_gauge(out, "system_cpu_utilization_ratio", "Node CPU busy share over the last second.",
                  n->cpu_utilization);
        add_gauge(out, "system_memory_usage_bytes", "Node memory in use (MemTotal - MemAvailable).",
                  static_cast<double>(n->mem_used_bytes));
        add_gauge(out, "system_memory_utilization_ratio",
                  "Node memory in use as a share of MemTotal.", n->mem_utilization);
        auto busy = family("loupe_system_disk_busy_ratio",
                           "Share of the last second a disk had I/O in flight.", MetricType::Gauge);
        for (const auto& [dev, ratio] : n->disk_busy)
            busy.metric.push_back(sample(ratio, {{"device", dev}}, MetricType::Gauge));
        out.push_back(std::move(busy));
        auto net = family("system_network_io_bytes_total", "Bytes through each network interface.",
                          MetricType::Counter);
        for (const auto& [dev, c] : n->interfaces) {
            net.metric.push_back(sample(static_cast<double>(c.tx_bytes),
                                        {{"device", dev}, {"network_io_direction", "transmit"}},
                                        MetricType::Counter));
            net.metric.push_back(sample(static_cast<double>(c.rx_bytes),
                                        {{"device", dev}, {"network_io_direction", "receive"}},
                                        MetricType::Counter));
        }
        out.push_back(std::move(net));
    }
}

}  // namespace

std::string render_prometheus(const MetricsView& view) {
    std::vector<MetricFamily> families;
    add_http_families(families, view, aggregate::HttpSide::kServer);
    add_http_families(families, view, aggregate::HttpSide::kClient);

    const auto& p = view.pipeline;
    add_counter(families, "loupe_events_total", "Events received from the kernel.",
                static_cast<double>(p.events));
    {
        auto f = family("loupe_events_dropped_total", "Events or state lost, by reason.",
                        MetricType::Counter);
        const std::pair<const char*, std::uint64_t> reasons[] = {
            {"ringbuf_full", view.kernel_drops.ringbuf_full},
            {"unsupported_syscall", view.kernel_drops.unsupported_syscall},
            {"conn_table_full", view.kernel_drops.conn_table_full},
            {"nested", view.kernel_drops.nested},
            {"malformed", p.malformed_events},
            {"series_limit", view.http.series_dropped()},
            {"connections_evicted", p.connections_evicted},
            {"pending_request_limit", p.dropped_requests},
            {"proc_stats_full", view.kernel_counters.proc_stats_full},
            {"exit_events_lost", view.kernel_counters.exit_events_lost},
            {"recursion_miss",
             view.kernel_drops.recursion_misses + view.kernel_counters.recursion_misses},
            {"identity_limit", view.identities ? view.identities->identities_dropped() : 0}};
        for (const auto& [reason, value] : reasons)
            f.metric.push_back(
                sample(static_cast<double>(value), {{"reason", reason}}, MetricType::Counter));
        families.push_back(std::move(f));
    }
    add_counter(families, "loupe_http_exchanges_total", "HTTP request/response exchanges matched.",
                static_cast<double>(p.exchanges));
    add_counter(families, "loupe_http_unparsed_segments_total",
                "Reads/writes on HTTP connections that did not parse as HTTP/1.x (garbage, binary, "
                "truncated).",
                static_cast<double>(p.unparsed_segments));
    add_counter(families, "loupe_http_unmatched_responses_total",
                "HTTP responses without a pending request.",
                static_cast<double>(p.unmatched_responses));
    add_counter(families, "loupe_http_route_overflow_total",
                "Requests whose route went to the overflow route because the per-service route cap "
                "was reached.",
                static_cast<double>(view.http.routes_overflowed()));
    add_gauge(families, "loupe_connections_tracked", "Connections with parser state in user space.",
              static_cast<double>(view.live_connections));
    add_gauge(families, "loupe_series", "Live metric series held by the agent.",
              static_cast<double>(view.http.series().size()));
    add_gauge(families, "loupe_uptime_seconds", "Seconds since the agent started.",
              view.uptime_seconds);
    add_gauge(families, "loupe_resident_memory_bytes", "Resident memory of the loupe agent.",
              view.resident_memory_bytes);
    add_gauge(families, "loupe_build_info", "Build information.", 1.0, {{"version", kVersion}});
    add_gauge(families, "loupe_hooks_paused",
              "1 while the agent's kernel hooks are detached (SIGUSR1, until SIGUSR2): no requests "
              "or hook-based resource figures are seen meanwhile.",
              view.hooks_paused ? 1.0 : 0.0);
    if (view.services) add_resource_families(families, view);
    if (view.identities)
        add_gauge(families, "loupe_service_identities",
                  "Container and pod identities of services known to the agent.",
                  static_cast<double>(view.identities->identities()));
    if (view.pod_metadata) {
        auto fetches = family("loupe_k8s_pod_list_requests_total",
                              "Pod list requests to the API server or kubelet, by result.",
                              MetricType::Counter);
        fetches.metric.push_back(sample(static_cast<double>(view.pod_metadata->fetches_ok),
                                        {{"result", "ok"}}, MetricType::Counter));
        fetches.metric.push_back(sample(static_cast<double>(view.pod_metadata->fetches_failed),
                                        {{"result", "error"}}, MetricType::Counter));
        families.push_back(std::move(fetches));
        add_gauge(families, "loupe_k8s_pods", "Pods of this node in the last pod list.",
                  static_cast<double>(view.pod_metadata->pods));
    }
    if (view.alerts) {
        auto firing = family("loupe_alerts_firing",
                             "Alerts firing now (1 per alert), from the agent's own rules.",
                             MetricType::Gauge);
        for (const auto& a : view.alerts->active())
            if (a.state == alerts::AlertState::kFiring)
                firing.metric.push_back(sample(
                    1.0,
                    service_labels(
                        view, a.service,
                        {{"alertname", a.rule},
                         {"severity", a.labels.count("severity") ? a.labels.at("severity") : ""}}),
                    MetricType::Gauge));
        families.push_back(std::move(firing));
        add_gauge(families, "loupe_alerts_pending",
                  "Alerts whose condition holds but not yet for their 'for' duration.",
                  static_cast<double>(view.alerts->pending_count()));
        add_gauge(families, "loupe_alert_rules", "Alert rules the agent evaluates.",
                  static_cast<double>(view.alerts->rules().size()));
        auto sent = family("loupe_alert_notifications_total",
                           "Alert notifications: sent, failed attempts (retried), dropped (queue "
                           "full or retries exhausted).",
                           MetricType::Counter);
        const std::pair<const char*, std::uint64_t> results[] = {
            {"sent", view.notifications.sent},
            {"failed_attempt", view.notifications.failed_attempts},
            {"dropped", view.notifications.dropped}};
        for (const auto& [result, value] : results)
            sent.metric.push_back(
                sample(static_cast<double>(value), {{"result", result}}, MetricType::Counter));
        families.push_back(std::move(sent));
    }

    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, families);
    return out.str();
}

}  // namespace loupe::exporter
