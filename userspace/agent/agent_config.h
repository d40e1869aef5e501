// The agent's settings: defaults < YAML file (--config) < environment (LOUPE_*) < flags.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "aggregate/slow_operations.h"
#include "alerts/alert_rules.h"
#include "export/slow_log_file.h"
#include "export/otlp/otlp_config.h"

namespace loupe::agent {

// Pod attribution (see attribution/): where the pods of this node are listed.
struct KubernetesConfig {
    std::string mode = "auto";  // auto (on when KUBERNETES_SERVICE_HOST is set), on, off
    std::string node_name;      // default: $NODE_NAME, then the host name
    std::string pods_url;       // default: the in-cluster API server, this node's pods
    std::string token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
    std::uint32_t refresh_seconds = 15;
};

struct AgentConfig {
    std::string listen = "127.0.0.1:9464";
    std::string log_format = "text";
    std::string log_level = "info";
    std::vector<std::uint32_t> pids;
    std::vector<std::string> comms;
    std::vector<std::uint16_t> ports;
    std::uint32_t ring_buffer_bytes = 4u << 20;
    std::vector<std::string> disabled_hooks;  // hooks not attached, to shed their cost
    // Time series /metrics may export (samples; see stats/series_budget.h): set a Prometheus
    // sample_limit a little above it.
    std::size_t max_series = 100'000;
    std::size_t max_routes_per_service = 100;
    std::size_t max_connections = 65'536;
    // Continuous CPU profiling of the selected processes, samples per second per CPU; 0: off.
    unsigned profile_frequency = 19;
    // Services or process names profiled with DWARF unwinding (built without frame pointers).
    std::vector<std::string> profile_dwarf;
    std::map<std::string, std::string> service_names;  // comm -> service_name
    KubernetesConfig kubernetes;
    alerts::AlertingConfig alerting;
    // The slow-operation log: thresholds, rate and memory; file and stdout.
    aggregate::SlowLogSettings slow_log;
    exporter::SlowLogFileSettings slow_log_output;
    otlp::OtlpSettings otlp;  // OTLP export (off without an endpoint)
    std::string config_path;  // the file these came from, re-read on SIGHUP
};

// Loads a YAML config file over `config`. Returns an error naming the file, line and key, and
// what was expected, when the file is unreadable, malformed, has an unknown key or a value of the
// wrong type or out of range.
std::optional<std::string> load_config_file(const std::string& path, AgentConfig& config);

// Checks of a setting as text, the same for the config file, LOUPE_* variables and flags: nullopt
// when valid, else what is expected ("expected ..."), to which the caller adds where and what
// it got.
std::optional<std::string> check_listen(const std::string& text);
// A power of two of at least a page: the ring buffers the capture creates need one.
std::optional<std::string> check_ring_buffer_bytes(const std::string& text);
// --pid and --port items: a process id; a port of 1-65535.
std::optional<std::string> check_pid(const std::string& text);
std::optional<std::string> check_port(const std::string& text);
// The caps (max_series...): 0 would drop everything.
std::optional<std::string> check_positive_count(const std::string& text);
// 0 (off) to 1000 samples per second.
std::optional<std::string> check_profile_frequency(const std::string& text);
// An http:// or https:// URL, or empty (the setting's default).
std::optional<std::string> check_url_or_empty(const std::string& text);

// A duration with its unit: "250us", "100ms", "1.5s", "2m"; "off" or "0" is 0 (no slow log).
std::optional<std::chrono::nanoseconds> parse_duration(const std::string& text);
// A --slow-threshold item: PROTOCOL=DURATION, PROTOCOL a protocol's name ("http", "redis"...) or
// "default".
std::optional<std::string> check_slow_threshold(const std::string& text);
// Applies a checked --slow-threshold item.
void apply_slow_threshold(const std::string& text, aggregate::SlowLogSettings& settings);

// Splits "HOST:PORT" (IPv6 as "[::1]:9464"); port 0 means any free port. False when malformed.
bool parse_listen(const std::string& listen, std::string& host, int& port);

}  // namespace loupe::agent
