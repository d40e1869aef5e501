#include "export/prometheus_exporter.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <unordered_map>
#include <utility>
#include <vector>

#include "export/text_exposition.h"
#include "protocols/registry.h"
#include "util/version.h"

namespace loupe::exporter {
namespace {

struct Window {
    const char* label;
    std::chrono::nanoseconds span;
};
constexpr Window kWindows[] = {{"1m", std::chrono::minutes(1)}, {"5m", std::chrono::minutes(5)}};
constexpr std::pair<const char*, double> kQuantiles[] = {
    {"0.5", 0.5}, {"0.95", 0.95}, {"0.99", 0.99}};  // label, q

// Bucket i of a kernel log2 histogram counts [2^i, 2^(i+1)) us: its upper bound is 2^(i+1) us.
const std::array<double, LOUPE_LOG2_BUCKETS - 1> kLog2BoundsSeconds = [] {
    std::array<double, LOUPE_LOG2_BUCKETS - 1> out{};
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = std::ldexp(1.0, static_cast<int>(i) + 1) / 1e6;
    return out;
}();

double seconds(std::uint64_t ns) {
    return static_cast<double>(ns) / 1e9;
}

// service_name, and for processes in containers and pods container_id and k8s_* (OpenTelemetry
// resource attributes). Rendered once per service and scrape.
class ServiceLabels {
  public:
    explicit ServiceLabels(const attribution::ServiceIdentities* identities)
        : identities_(identities) {}

    const LabelSet& of(const std::string& key) {
        auto [it, fresh] = cache_.try_emplace(key);
        if (!fresh) return it->second;
        const attribution::Labels* attributed = identities_ ? identities_->labels_of(key) : nullptr;
        if (attributed)
            for (const auto& [name, value] : *attributed)
                it->second.add(name, value);
        else
            it->second.add("service_name", key);
        return it->second;
    }

  private:
    const attribution::ServiceIdentities* identities_;
    std::unordered_map<std::string, LabelSet> cache_;
};

// A series' labels: its service's, then what its protocol's spec names (constants, key fields;
// empty error labels left out).
LabelSet series_labels(ServiceLabels& services, const aggregate::SeriesKey& key,
                       const protocols::FamilySpec& family) {
    LabelSet labels = services.of(key.service);
    for (const auto& l : family.labels) {
        std::string_view value =
            l.field == protocols::KeyField::kConstant ? l.constant : key.field(l.field);
        if (value.empty() && l.field == protocols::KeyField::kSystem) value = l.constant;
        if (l.omit_empty && value.empty()) continue;
        labels.add(l.name, value);
    }
    return labels;
}

void add_single(TextExposition& out, const char* name, const char* type, const char* help,
                double value, const LabelSet& labels = {}) {
    out.family(name, type, help);
    out.sample(name, labels, value);
}

// The histogram and windowed summary of one family of requests, and its cache lookups when it has
// them. Protocols may share a family (every database's db_client_operation_duration_seconds,
// told apart by db_system_name): its header is written once, with every protocol's series.
void add_request_families(TextExposition& out, const MetricsView& view, ServiceLabels& services,
                          std::span<const protocols::ProtocolInfo* const> members,
                          protocols::Side side) {
    const protocols::MetricSpec& first = *members.front()->metrics;
    const protocols::FamilySpec& family = first.family(side);
    // Labels are rendered once per series and used by every family: the windowed samples and
    // the cache lookups go to buffers of their own, appended after the histograms.
    TextExposition windows, cache;
    out.family(family.histogram, "histogram", family.histogram_help);
    windows.family(family.window, "summary", family.window_help);
    if (!family.cache_lookups.empty())
        cache.family(family.cache_lookups, "counter",
                     "Cache lookups answered by the service's read commands, by result (a nil "
                     "reply is a miss).");
    const std::string windowed_sum = std::string(family.window) + "_sum";
    const std::string windowed_count = std::string(family.window) + "_count";
    stats::LogSketch merged;
    std::array<std::uint64_t, aggregate::kMaxBounds> cumulative{};
    std::array<double, aggregate::kMaxBounds> bounds{};
    for (const auto* protocol : members) {
        const protocols::MetricSpec& spec = *protocol->metrics;
        const protocols::FamilySpec& own = spec.family(side);
        // The `le` bounds in seconds. Divided, not multiplied by 1e-9: 75'000'000 * 1e-9 is
        // 0.07500000000000001, 75'000'000 / 1e9 is the double nearest 0.075.
        const std::size_t bound_count = std::min(spec.bounds_ns.size(), bounds.size());
        for (std::size_t i = 0; i < bound_count; ++i)
            bounds[i] = static_cast<double>(spec.bounds_ns[i]) / 1e9;
        for (const auto& [key, series] : view.requests.series()) {
            if (key.protocol != protocol->id || key.side != side) continue;
            const LabelSet labels = series_labels(services, key, own);
            std::uint64_t running = 0;
            for (std::size_t i = 0; i < bound_count; ++i)
                cumulative[i] = running += series.buckets[i];
            out.histogram(family.histogram, labels, std::span(bounds).first(bound_count),
                          std::span(cumulative).first(bound_count), series.count,
                          seconds(series.sum_ns));
            for (const auto& w : kWindows) {
                series.window.window(w.span, view.now, merged);
                if (merged.empty()) continue;
                for (const auto& [qlabel, q] : kQuantiles)
                    windows.sample(family.window, labels, merged.quantile_ns(q) / 1e9,
                                   {{"window", w.label}, {"quantile", qlabel}});
                windows.sample(windowed_sum, labels, seconds(merged.sum_ns()),
                               {{"window", w.label}});
                windows.sample(windowed_count, labels, static_cast<double>(merged.count()),
                               {{"window", w.label}});
            }
            if (!family.cache_lookups.empty() && series.cache_hits + series.cache_misses > 0) {
                cache.sample(family.cache_lookups, labels, static_cast<double>(series.cache_hits),
                             {{"result", "hit"}});
                cache.sample(family.cache_lookups, labels, static_cast<double>(series.cache_misses),
                             {{"result", "miss"}});
            }
        }
    }
    out.append(std::move(windows));
    if (!family.cache_lookups.empty()) out.append(std::move(cache));
}

// Every request family once, with the protocols that write into it, in registry order.
void add_all_request_families(TextExposition& out, const MetricsView& view,
                              ServiceLabels& services) {
    for (const auto side : {protocols::Side::kServer, protocols::Side::kClient}) {
        std::vector<std::vector<const protocols::ProtocolInfo*>> groups;
        for (const auto& protocol : protocols::all_protocols()) {
            const std::string_view name = protocol.metrics->family(side).histogram;
            auto group = std::find_if(groups.begin(), groups.end(), [&](const auto& g) {
                return g.front()->metrics->family(side).histogram == name;
            });
            if (group == groups.end())
                groups.push_back({&protocol});
            else
                group->push_back(&protocol);
        }
        for (const auto& group : groups)
            add_request_families(out, view, services, group, side);
    }
}

void add_resource_families(TextExposition& out, const MetricsView& view, ServiceLabels& labels) {
    using resources::ServiceResources;
    const auto& services = *view.services;
    auto per_service = [&](const char* name, const char* help, const char* type, auto&& value) {
        out.family(name, type, help);
        for (const auto& [service, r] : services)
            out.sample(name, labels.of(service), static_cast<double>(value(r)));
    };
    auto per_service_dir = [&](const char* name, const char* help, const char* label, const char* a,
                               const char* b, auto&& value_a, auto&& value_b) {
        out.family(name, "counter", help);
        for (const auto& [service, r] : services) {
            out.sample(name, labels.of(service), static_cast<double>(value_a(r)), {{label, a}});
            out.sample(name, labels.of(service), static_cast<double>(value_b(r)), {{label, b}});
        }
    };
    auto per_service_hist = [&](const char* name, const char* help,
                                resources::Log2Histogram resources::ResourceTotals::*hist,
                                std::uint64_t resources::ResourceTotals::*sum_ns) {
        out.family(name, "histogram", help);
        std::array<std::uint64_t, LOUPE_LOG2_BUCKETS> cumulative{};
        for (const auto& [service, r] : services) {
            std::uint64_t running = 0;
            for (std::size_t i = 0; i < cumulative.size(); ++i)
                cumulative[i] = running += (r.totals.*hist)[i];
            // The last kernel bucket is open-ended: it only feeds +Inf.
            out.histogram(name, labels.of(service), kLog2BoundsSeconds,
                          std::span(cumulative).first(kLog2BoundsSeconds.size()), running,
                          seconds(r.totals.*sum_ns));
        }
    };
    const double cpus = view.node && view.node->cpus ? view.node->cpus : 1.0;
    const double mem_total = view.node && view.node->mem_total_bytes
                                 ? static_cast<double>(view.node->mem_total_bytes)
                                 : 1.0;

    per_service("process_cpu_time_seconds_total",
                "CPU time of the service's processes, live and exited.", "counter",
                [](const ServiceResources& r) { return seconds(r.totals.cpu_ns); });
    per_service("loupe_process_cpu_utilization_cores",
                "Cores the service used over the last second.", "gauge",
                [](const ServiceResources& r) { return r.cpu_cores; });
    per_service("process_cpu_utilization_ratio",
                "Share of the node's CPU capacity the service used over the last second.", "gauge",
                [&](const ServiceResources& r) { return r.cpu_cores / cpus; });
    per_service("process_memory_usage_bytes",
                "Resident memory (RSS) of the service's live processes.", "gauge",
                [](const ServiceResources& r) { return r.rss_bytes; });
    per_service(
        "process_memory_utilization_ratio", "RSS as a share of the node's memory.", "gauge",
        [&](const ServiceResources& r) { return static_cast<double>(r.rss_bytes) / mem_total; });
    // Only services whose container has a limit: these families are empty for the rest.
    out.family("loupe_container_cpu_limit_cores", "gauge",
               "CPU quota of the service's container (cgroup cpu.max).");
    for (const auto& [service, r] : services)
        if (r.limits.cpu_cores > 0)
            out.sample("loupe_container_cpu_limit_cores", labels.of(service), r.limits.cpu_cores);
    out.family("loupe_container_cpu_limit_utilization_ratio", "gauge",
               "Share of its container's CPU quota the service used over the last second.");
    for (const auto& [service, r] : services)
        if (r.limits.cpu_cores > 0)
            out.sample("loupe_container_cpu_limit_utilization_ratio", labels.of(service),
                       r.cpu_cores / r.limits.cpu_cores);
    out.family("loupe_container_memory_limit_bytes", "gauge",
               "Memory limit of the service's container (cgroup memory.max).");
    for (const auto& [service, r] : services)
        if (r.limits.memory_bytes > 0)
            out.sample("loupe_container_memory_limit_bytes", labels.of(service),
                       static_cast<double>(r.limits.memory_bytes));
    out.family("loupe_container_memory_limit_utilization_ratio", "gauge",
               "RSS as a share of its container's memory limit.");
    for (const auto& [service, r] : services)
        if (r.limits.memory_bytes > 0)
            out.sample(
                "loupe_container_memory_limit_utilization_ratio", labels.of(service),
                static_cast<double>(r.rss_bytes) / static_cast<double>(r.limits.memory_bytes));
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
    out.family("loupe_process_tcp_connections_total", "counter",
               "TCP connections: opened (active, established), accepted, closed (after being "
               "established), failed (never established).");
    for (const auto& [service, r] : services) {
        const std::pair<const char*, std::uint64_t> events[] = {{"opened", r.totals.tcp_opened},
                                                                {"accepted", r.totals.tcp_accepted},
                                                                {"closed", r.totals.tcp_closed},
                                                                {"failed", r.totals.tcp_failed}};
        for (const auto& [event, value] : events)
            out.sample("loupe_process_tcp_connections_total", labels.of(service),
                       static_cast<double>(value), {{"event", event}});
    }
    per_service("loupe_process_tcp_active_connections",
                "Open TCP connections owned by the service.", "gauge",
                [](const ServiceResources& r) { return r.active_connections; });
    per_service_hist(
        "loupe_process_tcp_connection_duration_seconds", "Lifetime of closed TCP connections.",
        &resources::ResourceTotals::tcp_duration, &resources::ResourceTotals::tcp_duration_sum_ns);
    per_service("loupe_process_tcp_retransmits_total",
                "TCP segments the service's connections retransmitted.", "counter",
                [](const ServiceResources& r) { return r.totals.tcp_retransmits; });
    per_service_hist(
        "loupe_process_tcp_rtt_seconds", "Smoothed RTT samples of the service's TCP connections.",
        &resources::ResourceTotals::tcp_rtt, &resources::ResourceTotals::tcp_rtt_sum_ns);
    per_service_dir(
        "loupe_process_tcp_resets_total", "TCP resets sent and received.", "direction", "sent",
        "received", [](const ServiceResources& r) { return r.totals.tcp_resets_sent; },
        [](const ServiceResources& r) { return r.totals.tcp_resets_received; });
    per_service("loupe_processes", "Live processes of the service.", "gauge",
                [](const ServiceResources& r) { return r.processes; });
    per_service("loupe_processes_exited_total",
                "Processes of the service that exited since the agent started.", "counter",
                [](const ServiceResources& r) { return r.exited; });

    add_single(out, "loupe_system_tcp_retransmits_total", "counter",
               "Every TCP retransmit on the node, attributed or not.",
               static_cast<double>(view.kernel_counters.tcp_retransmits));
    add_single(out, "loupe_bpf_map_entries", "gauge", "Entries of loupe's per-process kernel map.",
               static_cast<double>(view.proc_stats_entries), {{"map", "proc_stats"}});
    if (const auto* n = view.node) {
        add_single(out, "system_cpu_utilization_ratio", "gauge",
                   "Node CPU busy share over the last second.", n->cpu_utilization);
        add_single(out, "system_memory_usage_bytes", "gauge",
                   "Node memory in use (MemTotal - MemAvailable).",
                   static_cast<double>(n->mem_used_bytes));
        add_single(out, "system_memory_utilization_ratio", "gauge",
                   "Node memory in use as a share of MemTotal.", n->mem_utilization);
        out.family("loupe_system_disk_busy_ratio", "gauge",
                   "Share of the last second a disk had I/O in flight.");
        for (const auto& [dev, ratio] : n->disk_busy)
            out.sample("loupe_system_disk_busy_ratio", {{"device", dev}}, ratio);
        out.family("system_network_io_bytes_total", "counter",
                   "Bytes through each network interface.");
        for (const auto& [dev, c] : n->interfaces) {
            const LabelSet device{{"device", dev}};
            out.sample("system_network_io_bytes_total", device, static_cast<double>(c.tx_bytes),
                       {{"network_io_direction", "transmit"}});
            out.sample("system_network_io_bytes_total", device, static_cast<double>(c.rx_bytes),
                       {{"network_io_direction", "receive"}});
        }
    }
}

void add_alert_families(TextExposition& out, const MetricsView& view, ServiceLabels& labels) {
    out.family("loupe_alerts_firing", "gauge",
               "Alerts firing now (1 per alert), from the agent's own rules.");
    for (const auto& a : view.alerts->active()) {
        if (a.state != alerts::AlertState::kFiring) continue;
        const auto severity = a.labels.find("severity");
        out.sample("loupe_alerts_firing", labels.of(a.service), 1.0,
                   {{"alertname", a.rule},
                    {"severity", severity == a.labels.end() ? "" : severity->second}});
    }
    add_single(out, "loupe_alerts_pending", "gauge",
               "Alerts whose condition holds but not yet for their 'for' duration.",
               static_cast<double>(view.alerts->pending_count()));
    add_single(out, "loupe_alert_rules", "gauge", "Alert rules the agent evaluates.",
               static_cast<double>(view.alerts->rules().size()));
    out.family("loupe_alert_notifications_total", "counter",
               "Alert notifications per receiver: sent, failed attempts (retried), dropped (queue "
               "full or retries exhausted).");
    for (const auto& receiver : view.notifications) {
        const std::pair<const char*, std::uint64_t> results[] = {
            {"sent", receiver.sent},
            {"failed_attempt", receiver.failed_attempts},
            {"dropped", receiver.dropped}};
        for (const auto& [result, value] : results)
            out.sample("loupe_alert_notifications_total",
                       {{"receiver", receiver.receiver}, {"result", result}},
                       static_cast<double>(value));
    }
}

// db_system_name of a database protocol's series when the request does not name it.
std::string_view system_name_constant(const protocols::MetricSpec& spec) {
    for (const auto& label : spec.server.labels)
        if (label.name == "db_system_name" && !label.constant.empty()) return label.constant;
    return spec.system;
}

}  // namespace

std::string render_prometheus(const MetricsView& view) {
    TextExposition out;
    // The previous scrape's size is the best guess of this one's: one allocation, no regrowth.
    out.reserve(view.expected_bytes);
    ServiceLabels labels(view.identities);
    add_all_request_families(out, view, labels);

    const auto& p = view.pipeline;
    std::uint64_t pending_dropped = 0, desyncs = 0;
    for (const auto& c : p.protocols) {
        pending_dropped += c.parser.dropped_requests;
        desyncs += c.parser.desyncs;
    }
    add_single(out, "loupe_events_total", "counter", "Events received from the kernel.",
               static_cast<double>(p.events));
    out.family("loupe_events_dropped_total", "counter", "Events or state lost, by reason.");
    const std::pair<const char*, std::uint64_t> reasons[] = {
        {"ringbuf_full", view.kernel_drops.ringbuf_full},
        {"unsupported_syscall", view.kernel_drops.unsupported_syscall},
        {"conn_table_full", view.kernel_drops.conn_table_full},
        {"nested", view.kernel_drops.nested},
        {"copy_fault", view.kernel_drops.copy_fault},
        {"malformed", p.malformed_events},
        {"series_limit", view.requests.series_dropped()},
        {"connections_evicted", p.connections_evicted},
        {"pending_request_limit", pending_dropped},
        {"desync", desyncs},
        {"proc_stats_full", view.kernel_counters.proc_stats_full},
        {"exit_events_lost", view.kernel_counters.exit_events_lost},
        {"recursion_miss",
         view.kernel_drops.recursion_misses + view.kernel_counters.recursion_misses},
        {"identity_limit", view.identities ? view.identities->identities_dropped() : 0},
        {"service_limit", view.services_dropped}};
    for (const auto& [reason, value] : reasons)
        out.sample("loupe_events_dropped_total", {{"reason", reason}}, static_cast<double>(value));
    out.family("loupe_tls_connections_total", "counter",
               "TLS connections, by library: openssl (plaintext read through its uprobes), go "
               "(Go crypto/tls, through its uprobes), unknown (TLS records from a library loupe "
               "does not hook: counted at close, never read).");
    out.sample("loupe_tls_connections_total", {{"library", "openssl"}},
               static_cast<double>(view.tls.openssl_connections));
    out.sample("loupe_tls_connections_total", {{"library", "go"}},
               static_cast<double>(view.tls.go_connections));
    out.sample("loupe_tls_connections_total", {{"library", "unknown"}},
               static_cast<double>(view.tls.unknown_connections));
    // Databases whose capped dimension is the query summary: one family, by db_system_name
    // (written after the loop: a family's samples go together).
    std::vector<std::pair<std::string, std::uint64_t>> summary_overflows;
    // Per protocol, under the names HTTP has always had: loupe_http_exchanges_total, ...
    for (const auto& protocol : protocols::all_protocols()) {
        const auto& c = p.protocols[static_cast<std::size_t>(protocol.id) % p.protocols.size()];
        const std::string prefix = "loupe_" + std::string(protocol.metrics->system);
        auto counter = [&](std::string_view suffix, const std::string& help, std::uint64_t value) {
            const std::string name = prefix + std::string(suffix);
            out.family(name, "counter", help);
            out.sample(name, {}, static_cast<double>(value));
        };
        const std::string what(protocol.metrics->system);
        counter("_exchanges_total", what + " requests matched with their responses.", c.requests);
        counter("_unparsed_segments_total",
                "Reads/writes on " + what +
                    " connections where a message had to start but none did (garbage, another "
                    "protocol, truncated).",
                c.parser.unparsed_segments);
        counter("_unmatched_responses_total", what + " responses without a pending request.",
                c.parser.unmatched_responses);
        counter("_desyncs_total",
                what +
                    " message boundaries lost in bytes the capture did not copy (the stream "
                    "resynchronised at the next message).",
                c.parser.desyncs);
        if (protocol.metrics->database &&
            protocol.metrics->capped == protocols::KeyField::kTarget) {
            // The spec's own system always (a stable series), others (MariaDB) once seen.
            const std::string constant(system_name_constant(*protocol.metrics));
            std::uint64_t own = 0;
            for (const auto& [system, count] : view.requests.overflowed_by_system(protocol.id)) {
                if (system.empty() || system == constant)
                    own += count;
                else
                    summary_overflows.emplace_back(system, count);
            }
            summary_overflows.emplace_back(constant, own);
        } else {
            counter(protocol.metrics->capped == protocols::KeyField::kTarget
                        ? "_route_overflow_total"
                        : "_operation_overflow_total",
                    "Requests that went to " + std::string(protocol.metrics->overflow) +
                        " because the per-service cap was reached.",
                    view.requests.overflowed(protocol.id));
        }
        if (protocol.metrics->database)
            counter("_pushes_total", what + " messages the server pushed (no reply to a command).",
                    c.parser.pushes);
        const auto specific = protocol.metrics->parser_counters;
        for (std::size_t i = 0; i < specific.size() && i < c.parser_specific.size(); ++i)
            counter("_" + std::string(specific[i].name) + "_total", std::string(specific[i].help),
                    c.parser_specific[i]);
    }
    if (!summary_overflows.empty()) {
        out.family("loupe_db_query_overflow_total", "counter",
                   "Database operations whose db_query_summary went to _OTHER because the "
                   "per-service cap (--max-routes-per-service) was reached, by db_system_name.");
        std::sort(summary_overflows.begin(), summary_overflows.end());
        for (const auto& [system, count] : summary_overflows)
            out.sample("loupe_db_query_overflow_total", {{"db_system_name", system}},
                       static_cast<double>(count));
    }
    if (view.slow_log) {
        out.family("loupe_slow_operations_total", "counter",
                   "Finished operations over their protocol's slow-log threshold (logged or "
                   "dropped).");
        for (const auto& protocol : protocols::all_protocols())
            out.sample("loupe_slow_operations_total",
                       {{"protocol", std::string(protocol.metrics->system)}},
                       static_cast<double>(view.slow_log->slow(protocol.id)));
        out.family("loupe_slow_operations_dropped_total", "counter",
                   "Slow operations not logged: over the log's rate (rate_limit), or the file or "
                   "stdout refused the line (write_error; still in /api/v1/slow).");
        for (std::size_t i = 0; i < aggregate::kSlowDropReasons.size(); ++i)
            out.sample(
                "loupe_slow_operations_dropped_total",
                {{"reason", std::string(aggregate::kSlowDropReasons[i])}},
                static_cast<double>(view.slow_log->dropped(static_cast<aggregate::SlowDrop>(i))));
    }
    add_single(out, "loupe_services_evicted_total", "counter",
               "Services whose processes had all exited, forgotten before their expiry to make "
               "room for live services or new series.",
               static_cast<double>(view.services_evicted));
    add_single(out, "loupe_services_refused", "gauge",
               "Live services without series for want of room (max_series or the service cap).",
               static_cast<double>(view.services_refused));
    if (view.series_budget)
        add_single(out, "loupe_series_limit", "gauge",
                   "Time series /metrics may export (max_series); HTTP series and services take "
                   "their share when created.",
                   static_cast<double>(view.series_budget->limit()));
    add_single(out, "loupe_connections_tracked", "gauge",
               "Connections with parser state in user space.",
               static_cast<double>(view.live_connections));
    add_single(out, "loupe_uptime_seconds", "gauge", "Seconds since the agent started.",
               view.uptime_seconds);
    add_single(out, "loupe_resident_memory_bytes", "gauge", "Resident memory of the loupe agent.",
               view.resident_memory_bytes);
    add_single(out, "loupe_build_info", "gauge", "Build information.", 1.0,
               {{"version", kVersion}});
    add_single(out, "loupe_hooks_paused", "gauge",
               "1 while the agent's kernel hooks are detached (SIGUSR1, until SIGUSR2): no "
               "requests or hook-based resource figures are seen meanwhile.",
               view.hooks_paused ? 1.0 : 0.0);
    if (view.services) add_resource_families(out, view, labels);
    if (view.identities)
        add_single(out, "loupe_service_identities", "gauge",
                   "Container and pod identities of services known to the agent.",
                   static_cast<double>(view.identities->identities()));
    if (view.pod_metadata) {
        out.family("loupe_k8s_pod_list_requests_total", "counter",
                   "Pod list requests to the API server or kubelet, by result.");
        out.sample("loupe_k8s_pod_list_requests_total", {{"result", "ok"}},
                   static_cast<double>(view.pod_metadata->fetches_ok));
        out.sample("loupe_k8s_pod_list_requests_total", {{"result", "error"}},
                   static_cast<double>(view.pod_metadata->fetches_failed));
        add_single(out, "loupe_k8s_pods", "gauge", "Pods of this node in the last pod list.",
                   static_cast<double>(view.pod_metadata->pods));
    }
    if (view.alerts) add_alert_families(out, view, labels);
    if (view.profile) {
        add_single(out, "loupe_profile_samples_total", "counter",
                   "CPU profile samples kept (stack samples of the traced processes).",
                   static_cast<double>(view.profile->samples));
        out.family(
            "loupe_profile_lost_samples_total", "counter",
            "CPU profile samples lost, by reason: kernel_map_full (distinct stacks per "
            "second), no_stack (stack map full), bounds (stacks per service window, or "
            "services), dwarf_ring_full (DWARF-mode ring buffer full), dwarf_stack_copy "
            "(DWARF-mode user stack copy faulted: kept with the stack pointer's page only).");
        out.sample("loupe_profile_lost_samples_total", {{"reason", "kernel_map_full"}},
                   static_cast<double>(view.profile->lost_kernel_map_full));
        out.sample("loupe_profile_lost_samples_total", {{"reason", "no_stack"}},
                   static_cast<double>(view.profile->lost_no_stack));
        out.sample("loupe_profile_lost_samples_total", {{"reason", "bounds"}},
                   static_cast<double>(view.profile->lost_bounds));
        out.sample("loupe_profile_lost_samples_total", {{"reason", "dwarf_ring_full"}},
                   static_cast<double>(view.profile->lost_dwarf_ring));
        out.sample("loupe_profile_lost_samples_total", {{"reason", "dwarf_stack_copy"}},
                   static_cast<double>(view.profile->lost_dwarf_copy));
        out.family("loupe_profile_user_stacks_total", "counter",
                   "CPU profile samples with a user stack, by unwind mode (fp: frame pointers; "
                   "dwarf: stack copies unwound with libdw).");
        out.sample("loupe_profile_user_stacks_total", {{"unwind", "fp"}},
                   static_cast<double>(view.profile->user_stacks_fp));
        out.sample("loupe_profile_user_stacks_total", {{"unwind", "dwarf"}},
                   static_cast<double>(view.profile->user_stacks_dwarf));
        out.family("loupe_profile_shallow_stacks_total", "counter",
                   "Unwind quality: CPU profile samples whose user stack has 2 frames or fewer, "
                   "by unwind mode; high against loupe_profile_user_stacks_total means code "
                   "without frame pointers (try DWARF mode: --profile-dwarf).");
        out.sample("loupe_profile_shallow_stacks_total", {{"unwind", "fp"}},
                   static_cast<double>(view.profile->shallow_stacks_fp));
        out.sample("loupe_profile_shallow_stacks_total", {{"unwind", "dwarf"}},
                   static_cast<double>(view.profile->shallow_stacks_dwarf));
    }
    // Last, so that it counts every sample of this exposition, itself included.
    add_single(out, "loupe_series", "gauge",
               "Time series in this exposition, as Prometheus counts them (each histogram bucket "
               "and summary quantile is one).",
               static_cast<double>(out.samples() + 1));
    return out.take();
}

}  // namespace loupe::exporter
