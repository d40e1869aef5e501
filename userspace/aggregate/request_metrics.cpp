#include "aggregate/request_metrics.h"

#include <algorithm>
#include <charconv>

#include "protocols/registry.h"

namespace loupe::aggregate {

using protocols::KeyField;

std::string_view SeriesKeyView::field(KeyField f) const {
    switch (f) {
        case KeyField::kOperation:
            return operation;
        case KeyField::kTarget:
            return target;
        case KeyField::kStatus:
            return status;
        case KeyField::kNamespace:
            return db_namespace;
        case KeyField::kServerAddress:
            return server_address;
        case KeyField::kServerPort:
            return server_port;
        case KeyField::kCollection:
            return collection;
        case KeyField::kSystem:
            return system;
        case KeyField::kUrlScheme:
            return url_scheme;
        case KeyField::kConstant:
            break;
    }
    return {};
}

void CacheWindow::add(std::uint32_t hits, std::uint32_t misses,
                      std::chrono::nanoseconds now) noexcept {
    const std::int64_t epoch = now.count() / kSliceNs;
    if (epoch < 0) return;
    Slice& slice = slices_[static_cast<std::size_t>(epoch) % slices_.size()];
    if (slice.epoch != epoch) slice = {epoch, 0, 0};
    slice.hits += hits;
    slice.misses += misses;
}

std::pair<std::uint64_t, std::uint64_t> CacheWindow::window(
    std::chrono::nanoseconds span, std::chrono::nanoseconds now) const noexcept {
    const std::int64_t current = now.count() / kSliceNs;
    const std::int64_t wanted = std::clamp<std::int64_t>(
        (span.count() + kSliceNs - 1) / kSliceNs, 1, static_cast<std::int64_t>(slices_.size()));
    std::pair<std::uint64_t, std::uint64_t> out{0, 0};
    for (const Slice& slice : slices_)
        if (slice.epoch >= 0 && slice.epoch <= current && slice.epoch > current - wanted) {
            out.first += slice.hits;
            out.second += slice.misses;
        }
    return out;
}

namespace {

// Whether a series of `side` has a label from `field`: a key field no label shows stays empty,
// so that it never splits series that would export the same labels.
bool uses_field(const protocols::MetricSpec& spec, Side side, KeyField field) {
    for (const auto& label : spec.family(side).labels)
        if (label.field == field) return true;
    return false;
}

}  // namespace

const protocols::MetricSpec* metric_spec(Protocol protocol) {
    const auto* info = protocols::find_protocol(protocol);
    return info ? info->metrics : nullptr;
}

bool is_error(const SeriesKey& key) {
    const auto* spec = metric_spec(key.protocol);
    return spec && spec->is_error && spec->is_error(key.side, key.status);
}

RequestMetricsStore::RequestMetricsStore(StoreLimits limits, stats::SeriesBudget* budget)
    : limits_(limits),
      own_budget_(budget ? nullptr
                         : std::make_unique<stats::SeriesBudget>(limits.max_series *
                                                                 (kMaxBounds + 3 + 2 * 5 + 2))),
      budget_(budget ? budget : own_budget_.get()) {}

std::uint64_t RequestMetricsStore::record(const protocols::Request& request,
                                          const RequestContext& context,
                                          std::chrono::nanoseconds now) {
    const protocols::MetricSpec* spec = metric_spec(request.protocol);
    if (!spec) return 0;
    // Runs for every request: an existing series is found from views, with no string built (a
    // target's normalised form comes from a cache).
    const std::string_view target = normalized_target(request, *spec);
    std::array<char, 16> status_scratch{};
    std::array<char, 8> port_digits{};
    std::string_view port;
    const bool client = request.side == Side::kClient;
    if (client && context.server_port) {
        const auto end = std::to_chars(port_digits.data(), port_digits.data() + port_digits.size(),
                                       context.server_port)
                             .ptr;
        port = {port_digits.data(), static_cast<std::size_t>(end - port_digits.data())};
    }
    const SeriesKeyView key{request.protocol,
                            client ? Side::kClient : Side::kServer,
                            context.service,
                            request.operation,
                            target,
                            spec->status ? spec->status(request, status_scratch) : "",
                            request.db_namespace,
                            client ? context.server_address : std::string_view(),
                            port,
                            request.collection,
                            request.system_name,
                            uses_field(*spec, request.side, KeyField::kUrlScheme)
                                ? (request.tls ? "https" : "http")
                                : std::string_view()};
    auto it = series_.find(key);
    if (it == series_.end()) {
        it = add_series(key, *spec);
        if (it == series_.end()) return 0;
    }
    Series& s = it->second;
    const std::uint64_t duration =
        request.end_ns >= request.start_ns ? request.end_ns - request.start_ns : 0;
    s.window.insert(duration, now);
    if (s.cumulative) s.cumulative->insert(to_binary_units(duration));
    const auto bounds = spec->bounds_ns;
    const auto bucket = std::lower_bound(bounds.begin(), bounds.end(), duration);
    if (bucket != bounds.end()) ++s.buckets[static_cast<std::size_t>(bucket - bounds.begin())];
    ++s.count;
    s.sum_ns += duration;
    if (request.cache_hits || request.cache_misses) {
        s.cache_hits += request.cache_hits;
        s.cache_misses += request.cache_misses;
        if (!s.cache_window) s.cache_window = std::make_unique<CacheWindow>();
        s.cache_window->add(request.cache_hits, request.cache_misses, now);
    }
    s.last_update = now;
    return s.id;
}

std::string_view RequestMetricsStore::normalized_target(const protocols::Request& request,
                                                        const protocols::MetricSpec& spec) {
    if (!spec.normalize_target) return {};
    if (request.target.size() > kMaxCachedTarget) {
        uncached_target_ = spec.normalize_target(request.target);
        return uncached_target_;
    }
    auto& cache = target_cache_[static_cast<std::size_t>(request.protocol) % target_cache_.size()];
    if (const auto it = cache.find(request.target); it != cache.end()) return it->second;
    if (cache.size() >= kTargetCacheEntries) cache.clear();
    return cache.emplace(std::string(request.target), spec.normalize_target(request.target))
        .first->second;
}

bool RequestMetricsStore::seen_before(const std::string& cap_key, std::string_view value,
                                      std::size_t admitted) {
    const std::size_t admitted_at_once =
        limits_.max_targets_per_service - limits_.max_targets_per_service / 2;
    if (admitted < admitted_at_once) return true;
    auto& seen = seen_once_[cap_key];
    const std::size_t hash = std::hash<std::string_view>{}(value);
    if (seen.erase(hash)) return true;
    if (seen.size() >= limits_.max_targets_per_service) seen.clear();
    seen.insert(hash);
    return false;
}

SeriesMap::iterator RequestMetricsStore::add_series(SeriesKeyView key,
                                                    const protocols::MetricSpec& spec) {
    // Per-service cap on the dimension that varies without limit: the values beyond it share one
    // overflow value. (A series that exists has a value admitted when it was created: record()
    // found it without this check.)
    std::string_view& capped = spec.capped == KeyField::kOperation ? key.operation : key.target;
    std::string cap_key(1, static_cast<char>(key.protocol));
    cap_key += key.service;
    auto& values = capped_values_[cap_key];
    if (!values.contains(std::string(capped))) {
        if (values.size() >= limits_.max_targets_per_service ||
            !seen_before(cap_key, capped, values.size())) {
            capped = spec.overflow;
            const std::size_t index = static_cast<std::size_t>(key.protocol) % overflowed_.size();
            ++overflowed_[index];
            auto& by_system = overflowed_by_system_[index];
            if (auto it = by_system.find(key.system); it != by_system.end())
                ++it->second;
            else
                by_system.emplace(std::string(key.system), 1);
            if (const auto it = series_.find(key); it != series_.end()) return it;
        } else {
            values.emplace(capped);
        }
    }
    if (!budget_->try_take(spec.samples_per_series())) {
        ++series_dropped_;
        return series_.end();
    }
    const auto it = series_.try_emplace(key.owned()).first;
    it->second.id = next_series_id_++;
    if (limits_.cumulative_sketches)
        it->second.cumulative = std::make_unique<stats::LogSketch>(kCumulativeBuckets);
    return it;
}

std::uint64_t RequestMetricsStore::overflowed(Protocol protocol) const {
    return overflowed_[static_cast<std::size_t>(protocol) % overflowed_.size()];
}

const std::map<std::string, std::uint64_t, std::less<>>& RequestMetricsStore::overflowed_by_system(
    Protocol protocol) const {
    return overflowed_by_system_[static_cast<std::size_t>(protocol) % overflowed_by_system_.size()];
}

std::size_t RequestMetricsStore::expire_idle(std::chrono::nanoseconds now) {
    std::size_t removed = 0;
    for (auto it = series_.begin(); it != series_.end();) {
        if (now - it->second.last_update > limits_.idle_expiry) {
            if (const auto* spec = metric_spec(it->first.protocol))
                budget_->give_back(spec->samples_per_series());
            it = series_.erase(it);
            ++removed;
        } else {
            ++it;
        }
    }
    if (removed) {
        // Rebuild the capped sets so expired values free their slot under the cap.
        capped_values_.clear();
        seen_once_.clear();
        for (const auto& [key, _] : series_) {
            const auto* spec = metric_spec(key.protocol);
            if (!spec) continue;
            const std::string_view value = key.field(spec->capped);
            if (value == spec->overflow) continue;
            std::string cap_key(1, static_cast<char>(key.protocol));
            cap_key += key.service;
            capped_values_[cap_key].emplace(value);
        }
    }
    return removed;
}

std::size_t RequestMetricsStore::memory_bytes() const {
    std::size_t bytes = sizeof(*this) + uncached_target_.capacity();
    for (const auto& cache : target_cache_)
        for (const auto& [raw, route] : cache)
            bytes += raw.capacity() + route.capacity() + 64;  // 64: node and bucket overhead
    for (const auto& [key, s] : series_)
        bytes += sizeof(key) + key.service.capacity() + key.target.capacity() +
                 key.operation.capacity() + s.window.memory_bytes() + sizeof(Series) -
                 sizeof(stats::WindowedSketch) + 64 +  // 64: map node overhead
                 (s.cumulative ? s.cumulative->memory_bytes() : 0);
    return bytes;
}

}  // namespace loupe::aggregate
