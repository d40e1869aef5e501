#include "resources/resource_tracker.h"

#include <algorithm>
#include <cstring>

namespace loupe::resources {
namespace {

void add_hist(Log2Histogram& into, const __u64 (&from)[LOUPE_LOG2_BUCKETS]) {
    for (std::size_t i = 0; i < into.size(); ++i)
        into[i] += from[i];
}

// Applies `fn(mine, theirs)` to every counter and histogram bucket: the field list lives here once.
template <typename Fn>
void for_each_field(ResourceTotals& a, const ResourceTotals& b, Fn&& fn) {
    for (auto field :
         {&ResourceTotals::cpu_ns, &ResourceTotals::io_read_bytes, &ResourceTotals::io_write_bytes,
          &ResourceTotals::disk_read_ops, &ResourceTotals::disk_write_ops,
          &ResourceTotals::net_tx_bytes, &ResourceTotals::net_rx_bytes, &ResourceTotals::tcp_opened,
          &ResourceTotals::tcp_accepted, &ResourceTotals::tcp_closed, &ResourceTotals::tcp_failed,
          &ResourceTotals::tcp_retransmits, &ResourceTotals::tcp_resets_sent,
          &ResourceTotals::tcp_resets_received, &ResourceTotals::disk_latency_sum_ns,
          &ResourceTotals::runqueue_latency_sum_ns, &ResourceTotals::tcp_rtt_sum_ns,
          &ResourceTotals::tcp_duration_sum_ns})
        fn(a.*field, b.*field);
    for (auto hist : {&ResourceTotals::disk_latency, &ResourceTotals::runqueue_latency,
                      &ResourceTotals::tcp_rtt, &ResourceTotals::tcp_duration})
        for (std::size_t i = 0; i < (a.*hist).size(); ++i)
            fn((a.*hist)[i], (b.*hist)[i]);
}

}  // namespace

void ResourceTotals::add(const ResourceTotals& o) {
    for_each_field(*this, o, [](std::uint64_t& mine, std::uint64_t theirs) { mine += theirs; });
}

ResourceTotals ResourceTotals::since(const ResourceTotals& base) const {
    ResourceTotals out = *this;
    for_each_field(out, base, [](std::uint64_t& mine, std::uint64_t theirs) {
        mine = mine > theirs ? mine - theirs : 0;
    });
    return out;
}

void ResourceTotals::add_kernel(const loupe_proc_stats& s) {
    disk_read_ops += s.disk_read_ops;
    disk_write_ops += s.disk_write_ops;
    net_tx_bytes += s.net_tx_bytes;
    net_rx_bytes += s.net_rx_bytes;
    tcp_opened += s.tcp_opened;
    tcp_accepted += s.tcp_accepted;
    tcp_closed += s.tcp_closed;
    tcp_failed += s.tcp_failed;
    tcp_retransmits += s.tcp_retransmits;
    tcp_resets_sent += s.tcp_resets_sent;
    tcp_resets_received += s.tcp_resets_received;
    add_hist(disk_latency, s.disk_latency_us);
    add_hist(runqueue_latency, s.runqueue_latency_us);
    add_hist(tcp_rtt, s.tcp_rtt_us);
    add_hist(tcp_duration, s.tcp_duration_us);
    disk_latency_sum_ns += s.disk_latency_sum_ns;
    runqueue_latency_sum_ns += s.runqueue_latency_sum_ns;
    tcp_rtt_sum_ns += s.tcp_rtt_sum_ns;
    tcp_duration_sum_ns += s.tcp_duration_sum_ns;
}

ResourceTracker::ResourceTracker(ServiceOf service_of, std::size_t max_services, LimitsOf limits_of,
                                 std::chrono::nanoseconds idle_expiry, stats::SeriesBudget* budget)
    : service_of_(std::move(service_of)),
      max_services_(max_services),
      limits_of_(std::move(limits_of)),
      idle_expiry_(idle_expiry),
      own_budget_(budget
                      ? nullptr
                      : std::make_unique<stats::SeriesBudget>(max_services * kSamplesPerService)),
      budget_(budget ? budget : own_budget_.get()) {
    if (own_budget_)
        own_budget_->set_reclaimer([this](std::size_t samples) { return evict_departed(samples); });
}

double cpu_capacity_cores(const ServiceResources& service, const NodeResources& node) {
    return service.limits.cpu_cores > 0 ? service.limits.cpu_cores : node.cpus;
}

double memory_capacity_bytes(const ServiceResources& service, const NodeResources& node) {
    return service.limits.memory_bytes > 0 ? static_cast<double>(service.limits.memory_bytes)
                                           : static_cast<double>(node.mem_total_bytes);
}

bool ResourceTracker::admit(const std::string& service, bool live) {
    if (admitted_.contains(service)) return true;
    if (admitted_.size() >= max_services_ &&
        !(live && evict_departed(0) && admitted_.size() < max_services_))
        return false;
    if (!budget_->try_take(kSamplesPerService, live)) return false;
    admitted_.insert(service);
    refused_.erase(service);
    return true;
}

void ResourceTracker::forget(const std::string& service) {
    departed_.erase(service);
    exited_count_.erase(service);
    last_alive_.erase(service);
    services_.erase(service);
    if (admitted_.erase(service)) budget_->give_back(kSamplesPerService);
}

bool ResourceTracker::evict_departed(std::size_t samples) {
    // Oldest departure first. samples == 0: make room for one more service under max_services.
    std::vector<std::pair<std::chrono::nanoseconds, std::string>> candidates;
    for (const auto& [service, since] : last_alive_)
        if (admitted_.contains(service)) candidates.emplace_back(since, service);
    std::sort(candidates.begin(), candidates.end());
    std::size_t freed = 0;
    for (const auto& [since, service] : candidates) {
        if (samples == 0 ? freed > 0 : freed >= samples) break;
        forget(service);
        freed += kSamplesPerService;
        ++services_evicted_;
    }
    return samples == 0 ? freed > 0 : freed >= samples;
}

ResourceTotals* ResourceTracker::departed_of(const std::string& service) {
    if (!admit(service, false)) {
        ++services_dropped_;
        return nullptr;
    }
    return &departed_[service];
}

void ResourceTracker::rename(LiveProcess& process, const std::string& service) {
    if (auto* departed = departed_of(process.service))
        departed->add(process.totals.since(process.baseline));
    process.baseline = process.totals;
    process.service = service;
}

void ResourceTracker::on_exit(const loupe_proc_exit_event& e) {
    // The exit record carries the name the process had at its end.
    const std::string service =
        service_of_(e.tgid, std::string(e.comm, strnlen(e.comm, sizeof(e.comm))));
    ResourceTotals final_totals;
    final_totals.cpu_ns = e.cpu_ns;
    final_totals.io_read_bytes = e.io_read_bytes;
    final_totals.io_write_bytes = e.io_write_bytes;
    if (e.has_stats) final_totals.add_kernel(e.stats);
    const auto live = live_.find(e.tgid);
    ResourceTotals* departed = nullptr;
    if (live != live_.end()) {
        if (live->second.service != service) rename(live->second, service);
        if ((departed = departed_of(service)))
            departed->add(final_totals.since(live->second.baseline));
        live_.erase(live);
    } else if ((departed = departed_of(service))) {
        departed->add(final_totals);
    }
    if (departed) ++exited_count_[service];
    exited_this_round_.insert(e.tgid);
}

void ResourceTracker::on_sample(
    const std::vector<ProcessSample>& processes,
    const std::unordered_map<std::uint32_t, loupe_proc_stats>& kernel,
    const std::unordered_map<std::uint32_t, std::uint64_t>& active_connections,
    std::chrono::nanoseconds now) {
    std::unordered_map<std::uint32_t, LiveProcess> next;
    next.reserve(processes.size());
    for (const auto& p : processes) {
        if (exited_this_round_.contains(p.pid)) continue;  // its final totals are already in
        LiveProcess lp;
        lp.service = service_of_(p.pid, p.comm);  // the name it has now (exec, prctl rename it)
        if (auto previous = live_.find(p.pid); previous != live_.end()) {
            if (previous->second.service != lp.service) rename(previous->second, lp.service);
            lp.baseline = previous->second.baseline;
        }
        lp.totals.cpu_ns = p.cpu_ns;
        lp.totals.io_read_bytes = p.io_read_bytes;
        lp.totals.io_write_bytes = p.io_write_bytes;
        if (const auto k = kernel.find(p.pid); k != kernel.end()) lp.totals.add_kernel(k->second);
        lp.rss_bytes = p.rss_bytes;
        next.emplace(p.pid, std::move(lp));
    }
    // Gone without an exit record (the ring buffer was full): keep what was last seen of it.
    for (auto& [pid, lp] : live_)
        if (!next.contains(pid))
            if (auto* departed = departed_of(lp.service)) {
                departed->add(lp.totals.since(lp.baseline));
                ++exited_count_[lp.service];
            }
    live_ = std::move(next);
    exited_this_round_.clear();

    // Services without a live process: remember since when, forget them after idle_expiry.
    std::unordered_set<std::string> alive;
    for (const auto& [pid, lp] : live_)
        alive.insert(lp.service);
    std::vector<std::string> expired;
    for (const auto& service : admitted_) {
        if (alive.contains(service)) {
            last_alive_.erase(service);
            continue;
        }
        const auto since = last_alive_.try_emplace(service, now).first;
        if (now - since->second >= idle_expiry_) expired.push_back(service);
    }
    for (const auto& service : expired)
        forget(service);
    std::erase_if(refused_, [&](const std::string& s) { return !alive.contains(s); });
    // Live services without a place get one if there is room, making room if need be.
    for (const auto& service : alive)
        if (!admitted_.contains(service) && !admit(service, true) &&
            refused_.insert(service).second)
            ++services_dropped_;

    std::map<std::string, ServiceResources> fresh;
    for (const auto& [service, totals] : departed_) {
        auto& s = fresh[service];
        s.totals.add(totals);
        s.exited = exited_count_[service];
    }
    for (const auto& [pid, lp] : live_) {
        if (!admitted_.contains(lp.service)) continue;
        auto& s = fresh[lp.service];
        s.totals.add(lp.totals.since(lp.baseline));
        s.rss_bytes += lp.rss_bytes;
        ++s.processes;
        if (const auto a = active_connections.find(pid); a != active_connections.end())
            s.active_connections += a->second;
    }
    if (limits_of_)
        for (auto& [service, s] : fresh)
            s.limits = limits_of_(service);
    const double dt = std::chrono::duration<double>(now - last_sample_).count();
    if (last_sample_.count() > 0 && dt > 0) {
        for (auto& [service, s] : fresh) {
            const auto old = services_.find(service);
            if (old == services_.end()) continue;
            const auto& a = old->second.totals;
            const auto& b = s.totals;
            auto rate = [dt](std::uint64_t before, std::uint64_t after) {
                return after >= before ? static_cast<double>(after - before) / dt : 0.0;
            };
            s.cpu_cores = rate(a.cpu_ns, b.cpu_ns) / 1e9;
            s.disk_read_bytes_per_second = rate(a.io_read_bytes, b.io_read_bytes);
            s.disk_write_bytes_per_second = rate(a.io_write_bytes, b.io_write_bytes);
            s.net_tx_bytes_per_second = rate(a.net_tx_bytes, b.net_tx_bytes);
            s.net_rx_bytes_per_second = rate(a.net_rx_bytes, b.net_rx_bytes);
            s.tcp_retransmits_per_second = rate(a.tcp_retransmits, b.tcp_retransmits);
        }
    }
    services_ = std::move(fresh);
    last_sample_ = now;
}

std::vector<ResourceTracker::ProcessView> ResourceTracker::processes_of(
    const std::string& service) const {
    std::vector<ProcessView> out;
    for (const auto& [pid, lp] : live_)
        if (lp.service == service) out.push_back({pid, lp.totals, lp.rss_bytes});
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
    return out;
}

void NodeTracker::on_sample(const NodeSample& sample, std::uint64_t tcp_retransmits,
                            std::chrono::nanoseconds now) {
    node_.cpus = sample.cpus;
    node_.mem_total_bytes = sample.mem_total_bytes;
    node_.mem_used_bytes =
        sample.mem_total_bytes - std::min(sample.mem_available_bytes, sample.mem_total_bytes);
    node_.mem_utilization = sample.mem_total_bytes ? static_cast<double>(node_.mem_used_bytes) /
                                                         static_cast<double>(sample.mem_total_bytes)
                                                   : 0.0;
    node_.interfaces = sample.interfaces;
    node_.tcp_retransmits = tcp_retransmits;
    node_.cpu_busy_ticks = sample.cpu_busy_ticks;
    node_.cpu_total_ticks = sample.cpu_total_ticks;
    node_.disk_bytes = 0;
    for (const auto& [_, d] : sample.disks)
        node_.disk_bytes += d.read_bytes + d.write_bytes;
    if (previous_at_.count() > 0) {
        const auto total = sample.cpu_total_ticks - previous_.cpu_total_ticks;
        const auto busy = sample.cpu_busy_ticks - previous_.cpu_busy_ticks;
        node_.cpu_utilization =
            total ? static_cast<double>(busy) / static_cast<double>(total) : 0.0;
        const double elapsed_ms =
            std::chrono::duration<double, std::milli>(now - previous_at_).count();
        node_.disk_busy.clear();
        for (const auto& [dev, d] : sample.disks) {
            const auto before = previous_.disks.find(dev);
            if (before == previous_.disks.end() || elapsed_ms <= 0) continue;
            const double busy_ms = static_cast<double>(d.io_ticks_ms - before->second.io_ticks_ms);
            node_.disk_busy[dev] = std::clamp(busy_ms / elapsed_ms, 0.0, 1.0);
        }
    }
    previous_ = sample;
    previous_at_ = now;
}

}  // namespace loupe::resources
