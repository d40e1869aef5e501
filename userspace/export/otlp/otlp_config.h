// Where and how OTLP data goes: the settings of --otlp-* flags, otlp_* config keys and the
// standard OTEL_* environment variables (OpenTelemetry's exporter and SDK configuration).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loupe::otlp {

struct OtlpSettings {
    // Base URL (e.g. http://collector:4318): /v1/traces and /v1/metrics are appended. Empty with
    // both signal URLs empty: OTLP export off.
    std::string endpoint;
    std::string traces_endpoint;   // full URL of the traces signal; overrides endpoint's
    std::string metrics_endpoint;  // full URL of the metrics signal
    std::vector<std::pair<std::string, std::string>> headers;              // sent with every export
    std::vector<std::pair<std::string, std::string>> resource_attributes;  // added to each resource
    bool traces = true;           // spans sent (with an endpoint)
    bool metrics = true;          // metrics sent (with an endpoint)
    double sampling_ratio = 1.0;  // head sampling of traces, 0..1
    // Spans at least this long are always kept, as are errors.
    std::chrono::milliseconds always_keep_over{1000};
    std::chrono::milliseconds metrics_interval{10'000};
    std::size_t max_queued_spans = 100'000;     // spans waiting to be sent; more are dropped
    std::chrono::milliseconds timeout{10'000};  // of each export request
    bool gzip = true;
    // Latency histograms as exponential histograms (the sketches' buckets); false: explicit
    // buckets with /metrics' bounds.
    bool exponential_histograms = true;
    // PEM file of the CA certificates that verify an https endpoint; empty: the system's.
    std::string certificate;
};

// Full URLs of the two signals, from the settings: "" when that signal is not exported.
std::string traces_url(const OtlpSettings& settings);
std::string metrics_url(const OtlpSettings& settings);

// Applies OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT,
// OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_COMPRESSION,
// OTEL_EXPORTER_OTLP_CERTIFICATE and OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION (read
// through `getenv`) over `settings`. Returns what is wrong with a variable, naming it.
std::optional<std::string> apply_otel_environment(OtlpSettings& settings,
                                                  const char* (*getenv)(const char*));

// "k1=v1,k2=v2" (W3C Baggage-like, values percent-decoded), as OTEL_EXPORTER_OTLP_HEADERS and
// OTEL_RESOURCE_ATTRIBUTES spell them. nullopt when an item has no '=' or an empty key.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_key_value_list(
    const std::string& text);

// Checks of settings as text (flags and config keys), as agent_config.h's: nullopt when valid.
std::optional<std::string> check_sampling_ratio(const std::string& text);
// "exponential" or "explicit".
std::optional<std::string> check_histogram_form(const std::string& text);

}  // namespace loupe::otlp
