// What a protocol's requests become as metrics: family names, labels, buckets, what counts as an
// error and which dimension is capped per service. Pure data (and three small functions) that
// each protocol folder provides; the request store, the exporters and the API read it, so that
// none of them names a protocol.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "protocols/protocol.h"

namespace loupe::protocols {

// The fields of a series key (aggregate::SeriesKey) a label can take its value from.
enum class KeyField : std::uint8_t {
    kConstant,  // LabelSpec::constant
    kOperation,
    kTarget,
    kStatus,
    kNamespace,
    kServerAddress,
    kServerPort,
    kCollection,
    kSystem,  // Request::system_name; LabelSpec::constant when it is empty
    // "https" for a request read through a TLS library's hooks (Request::tls), else "http"
    kUrlScheme,
};

struct LabelSpec {
    std::string_view name;
    KeyField field = KeyField::kConstant;
    std::string_view constant = {};
    bool omit_empty = false;  // left out of a series whose value is empty (error labels)
};

// The families of one side (server or client).
struct FamilySpec {
    std::string_view histogram;  // e.g. http_server_request_duration_seconds
    std::string_view histogram_help;
    std::string_view window;  // the windowed summary (quantiles over 1m and 5m)
    std::string_view window_help;
    std::span<const LabelSpec> labels;  // after service_name (and a service's other identity)
    std::string_view cache_lookups;     // a counter of cache hits and misses; empty: none
};

struct MetricSpec {
    std::string_view system;  // what the API and `loupe top` call it: "http", "redis"
    bool database = false;    // a database or cache (the API's "databases", DB alert signals)
    FamilySpec server;
    FamilySpec client;
    std::span<const std::uint64_t> bounds_ns;  // the histogram's upper bounds, at most 16
    // The dimension that varies without limit (HTTP routes, command names): capped per service;
    // values beyond the cap become `overflow`.
    KeyField capped = KeyField::kTarget;
    std::string_view overflow;
    // The status label of a request ("200", "none" for HTTP; the error prefix, or empty, for a
    // database), written into `scratch` when it is not a constant.
    std::string_view (*status)(const Request& request, std::array<char, 16>& scratch) = nullptr;
    // The label of a request's target (HTTP: the route of its path); null: targets are not kept.
    std::string (*normalize_target)(std::string_view target) = nullptr;
    bool (*is_error)(Side side, std::string_view status) = nullptr;
    // The parser's own counters (ConnectionParser::protocol_counters), at most
    // kMaxParserCounters.
    std::span<const ParserCounterSpec> parser_counters = {};

    // Samples one series puts in /metrics at most: the histogram's bounds, +Inf, _sum, _count;
    // per window (1m, 5m) three quantiles, _sum, _count; hits and misses when a cache is counted.
    std::size_t samples_per_series() const {
        return bounds_ns.size() + 3 + 2 * 5 + (server.cache_lookups.empty() ? 0 : 2);
    }
    const FamilySpec& family(Side side) const { return side == Side::kClient ? client : server; }
};

}  // namespace loupe::protocols
