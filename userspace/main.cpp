// loupe: one binary, one subcommand per job.
#include <cstdlib>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "agent/agent_config.h"
#include "cli/profile/profile_command.h"
#include "cli/top/top_command.h"
#include "doctor/doctor_command.h"
#include "util/logging.h"
#include "util/suggest.h"
#include "util/terminal_text.h"
#include "util/url.h"
#include "util/version.h"

extern char** environ;

namespace {

// A CLI11 check from a setting's check (agent_config.h): the same rule and words for the config
// file, the environment and the flags.
CLI::Validator setting_check(std::optional<std::string> (*check)(const std::string&)) {
    return CLI::Validator(
        [check](std::string& value) {
            const auto problem = check(value);
            return problem ? *problem + ", got '" + value + "'" : std::string();
        },
        "");
}

const char* env_or(const char* name, const char* fallback) {
    const char* value = std::getenv(name);
    return value && *value ? value : fallback;
}

// --config FILE (or LOUPE_CONFIG) is read before the flags are parsed, so that the file only
// supplies defaults: environment variables and flags given explicitly still win.
std::string find_config_path(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--config" && i + 1 < argc) return argv[i + 1];
        if (arg.rfind("--config=", 0) == 0) return arg.substr(9);
    }
    return env_or("LOUPE_CONFIG", "");
}

// The flags `app` takes, as typed: "--listen", "-h".
std::vector<std::string> flag_names(const CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::Option* option : app.get_options()) {
        for (const auto& name : option->get_lnames())
            names.push_back("--" + name);
        for (const auto& name : option->get_snames())
            names.push_back("-" + name);
    }
    return names;
}

// Whether `flag` ("--listen") was typed on the command line, alone or as --flag=value.
bool typed(const std::string& flag, int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == flag ||
            (arg.starts_with(flag) && arg.size() > flag.size() && arg[flag.size()] == '='))
            return true;
    }
    return false;
}

// CLI11's message, made to say what the user can act on: the flag a mistyped one is near, the
// command a mistyped one is near, the LOUPE_* variable a bad value came from.
int report_parse_error(const CLI::App& app, const CLI::ParseError& error, int argc, char** argv) {
    if (error.get_exit_code() == 0) return app.exit(error);  // --help, --version
    const std::vector<CLI::App*> commands = app.get_subcommands();
    const CLI::App* command = commands.empty() ? nullptr : commands.back();
    const std::string prefix = command ? "loupe " + command->get_name() + ": " : "loupe: ";
    std::vector<std::string> messages;
    if (!command) {
        std::vector<std::string> names;
        for (const CLI::App* sub : app.get_subcommands({}))
            names.push_back(sub->get_name());
        for (const std::string& word : app.remaining())
            if (!word.starts_with("-")) {
                messages.push_back("unknown command '" + word + "'" +
                                   loupe::util::did_you_mean(word, names));
                break;
            }
    } else if (dynamic_cast<const CLI::ExtrasError*>(&error)) {
        std::vector<std::string> known = flag_names(*command);
        for (const auto& name : flag_names(app))
            known.push_back(name);
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            if (arg.size() < 2 || arg[0] != '-' || arg == "--") continue;
            const std::string flag = arg.substr(0, arg.find('='));
            if (std::find(known.begin(), known.end(), flag) != known.end()) continue;
            messages.push_back("unknown flag " + flag + loupe::util::did_you_mean(flag, known));
        }
    } else if (const std::string what = error.what(); what.starts_with("--")) {
        // "--max-series: expected ...": from LOUPE_MAX_SERIES when the flag was not typed.
        const std::string flag = what.substr(0, what.find(':'));
        const CLI::Option* option = command->get_option_no_throw(flag);
        if (option && !option->get_envname().empty() && !typed(flag, argc, argv))
            messages.push_back(option->get_envname() + what.substr(flag.size()) +
                               " (from the environment)");
        else
            messages.push_back(what);
    }
    if (messages.empty()) return app.exit(error);
    for (const auto& message : messages)
        std::cerr << prefix
                  << loupe::util::terminal_safe(message, loupe::util::charset_from_environment())
                  << '\n';
    std::cerr << "Run with --help for more information.\n";
    return error.get_exit_code();
}

// A LOUPE_* variable loupe does not know but that is near one it does is most likely a typo
// (LOUPE_LISEN): say so, since nothing else would. Others (a wrapper's own) pass silently.
void warn_unknown_environment(const CLI::App& app) {
    std::vector<std::string> known = {"CONFIG", "LOG_FORMAT", "LOG_LEVEL", "AGENT"};
    for (const CLI::App* command : app.get_subcommands({}))
        for (const CLI::Option* option : command->get_options())
            if (option->get_envname().starts_with("LOUPE_"))
                known.push_back(option->get_envname().substr(6));
    for (char** entry = environ; *entry; ++entry) {
        const std::string_view variable = *entry;
        if (!variable.starts_with("LOUPE_")) continue;
        const std::string name(variable.substr(6, variable.find('=') - 6));
        if (std::find(known.begin(), known.end(), name) != known.end()) continue;
        const auto near = loupe::util::near_names(name, known);
        if (!near.empty())
            std::cerr << "loupe: LOUPE_"
                      << loupe::util::terminal_safe(name, loupe::util::charset_from_environment())
                      << " is not a loupe setting (did you mean LOUPE_" << near.front() << "?)\n";
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"loupe: eBPF request latency, errors and resources of unmodified services"};
    app.set_version_flag("--version", std::string(loupe::kVersion));
    app.require_subcommand(1);

    // Precedence: defaults < config file < environment < flags. The file is read first so that
    // it only supplies defaults.
    loupe::agent::AgentConfig agent_config;
    const std::string config_path = find_config_path(argc, argv);
    if (!config_path.empty()) {
        if (auto error = loupe::agent::load_config_file(config_path, agent_config)) {
            // The message can quote the file: printed safe.
            std::cerr << "loupe: invalid config: "
                      << loupe::util::terminal_safe(*error, loupe::util::charset_from_environment())
                      << '\n';
            return 2;
        }
    }
    // OpenTelemetry's standard variables sit with the environment: over the file, under flags.
    if (auto error = loupe::otlp::apply_otel_environment(
            agent_config.otlp, [](const char* name) -> const char* { return std::getenv(name); })) {
        std::cerr << "loupe: invalid environment: "
                  << loupe::util::terminal_safe(*error, loupe::util::charset_from_environment())
                  << '\n';
        return 2;
    }
    std::string log_format = env_or("LOUPE_LOG_FORMAT", agent_config.log_format.c_str());
    std::string log_level = env_or("LOUPE_LOG_LEVEL", agent_config.log_level.c_str());
    app.add_option("--log-format", log_format,
                   "Log line format: text or json (env LOUPE_LOG_FORMAT)")
        ->check(CLI::IsMember({"text", "json"}));
    app.add_option("--log-level", log_level,
                   "trace, debug, info, warn, error, critical or off (env LOUPE_LOG_LEVEL)")
        ->check([](const std::string& v) {
            return loupe::util::parse_log_level(v) ? std::string()
                                                   : "unknown log level '" + v + "'";
        });

    bool doctor_json = false;
    auto* doctor = app.add_subcommand(
        "doctor",
        "Probe every kernel feature loupe relies on (by loading and attaching tiny BPF programs) "
        "and "
        "report what is available, what is missing and what loupe loses without it. Exits 1 only "
        "when loupe cannot capture at all. Needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN to "
        "mount tracefs).");
    doctor->add_flag("--json", doctor_json, "Print the report as JSON");

    auto* agent = app.add_subcommand(
        "agent",
        "Run the agent: capture HTTP/1.x traffic of unmodified processes from syscall tracepoints, "
        "aggregate RED metrics with windowed percentiles, and serve /metrics, /health/* and "
        "/api/v1/*. "
        "Every flag has a config key (same name, dashes as underscores) and an env var "
        "LOUPE_<NAME>.");
    std::string unused_config;
    agent->add_option("--config", unused_config, "YAML config file (env LOUPE_CONFIG)");
    agent
        ->add_option("--listen", agent_config.listen,
                     "HOST:PORT of the HTTP endpoints (loopback by default)")
        ->envname("LOUPE_LISTEN")
        ->check(setting_check(loupe::agent::check_listen))
        ->capture_default_str();
    agent
        ->add_option("--pid", agent_config.pids,
                     "Trace only this process id (repeatable; filtered in the kernel)")
        ->envname("LOUPE_PID")
        ->delimiter(',')
        ->check(setting_check(loupe::agent::check_pid));
    agent
        ->add_option("--comm", agent_config.comms,
                     "Trace only processes with this name, as in /proc/PID/comm (repeatable; "
                     "filtered in the kernel, new processes picked up within 1 s)")
        ->envname("LOUPE_COMM")
        ->delimiter(',');
    agent
        ->add_option("--port", agent_config.ports,
                     "Trace only connections on this port: local port of servers, remote port of "
                     "clients (repeatable)")
        ->envname("LOUPE_PORT")
        ->delimiter(',')
        ->check(setting_check(loupe::agent::check_port));
    agent
        ->add_option("--disable-hooks", agent_config.disabled_hooks,
                     "Do not attach these hooks, to shed their cost (names as /api/v1/agent lists "
                     "them, e.g. sched_switch,sock_send_length,sock_recv_length)")
        ->envname("LOUPE_DISABLE_HOOKS")
        ->delimiter(',');
    agent
        ->add_option("--ring-buffer-bytes", agent_config.ring_buffer_bytes,
                     "Kernel-to-user ring buffer size, a power of two")
        ->envname("LOUPE_RING_BUFFER_BYTES")
        ->check(setting_check(loupe::agent::check_ring_buffer_bytes))
        ->capture_default_str();
    agent
        ->add_option(
            "--max-series", agent_config.max_series,
            "Cap on the time series /metrics exports, counted as Prometheus counts them (an HTTP "
            "series takes 27, a service's resource series 161); new ones beyond it are "
            "dropped and counted")
        ->envname("LOUPE_MAX_SERIES")
        ->check(setting_check(loupe::agent::check_positive_count))
        ->capture_default_str();
    agent
        ->add_option("--max-routes-per-service", agent_config.max_routes_per_service,
                     "Cap on distinct routes per service; the rest share the route /{overflow}")
        ->envname("LOUPE_MAX_ROUTES_PER_SERVICE")
        ->check(setting_check(loupe::agent::check_positive_count))
        ->capture_default_str();
    agent
        ->add_option("--profile-frequency", agent_config.profile_frequency,
                     "Continuous CPU profiling of the selected processes, samples per second "
                     "per CPU (0: off); /api/v1/services/NAME/profile serves it")
        ->envname("LOUPE_PROFILE_FREQUENCY")
        ->check(setting_check(loupe::agent::check_profile_frequency))
        ->capture_default_str();
    agent
        ->add_option("--profile-dwarf", agent_config.profile_dwarf,
                     "Profile this service (or process name) with DWARF unwinding: a 16 KiB "
                     "stack copy per sample, unwound with libdw, for code built without frame "
                     "pointers (repeatable)")
        ->envname("LOUPE_PROFILE_DWARF")
        ->delimiter(',');
    agent
        ->add_option("--max-connections", agent_config.max_connections,
                     "Cap on connections tracked in user space")
        ->envname("LOUPE_MAX_CONNECTIONS")
        ->check(setting_check(loupe::agent::check_positive_count))
        ->capture_default_str();
    agent
        ->add_option("--kubernetes", agent_config.kubernetes.mode,
                     "Pod attribution from this node's pod list: auto (when "
                     "KUBERNETES_SERVICE_HOST is set), on, off")
        ->envname("LOUPE_KUBERNETES")
        ->check(CLI::IsMember({"auto", "on", "off"}))
        ->capture_default_str();
    agent
        ->add_option("--k8s-node-name", agent_config.kubernetes.node_name,
                     "This node's name (default: $NODE_NAME, then the host name)")
        ->envname("LOUPE_K8S_NODE_NAME");
    agent
        ->add_option("--k8s-pods-url", agent_config.kubernetes.pods_url,
                     "PodList URL (default: the in-cluster API server's pods of this node; the "
                     "kubelet's https://NODE_IP:10250/pods works too)")
        ->envname("LOUPE_K8S_PODS_URL")
        ->check(setting_check(loupe::agent::check_url_or_empty));
    agent
        ->add_option("--k8s-token-file", agent_config.kubernetes.token_file,
                     "Bearer token sent with the pod list request")
        ->envname("LOUPE_K8S_TOKEN_FILE")
        ->capture_default_str();
    agent
        ->add_option("--k8s-ca-file", agent_config.kubernetes.ca_file,
                     "CA bundle that verifies an https pod list server")
        ->envname("LOUPE_K8S_CA_FILE")
        ->capture_default_str();
    agent
        ->add_option("--k8s-refresh-seconds", agent_config.kubernetes.refresh_seconds,
                     "Pod list refresh interval (sooner when an unknown container appears)")
        ->envname("LOUPE_K8S_REFRESH_SECONDS")
        ->check(setting_check(loupe::agent::check_positive_count))
        ->capture_default_str();

    std::vector<std::string> slow_thresholds;
    agent
        ->add_option("--slow-threshold", slow_thresholds,
                     "Slow-operation log threshold of a protocol, PROTOCOL=DURATION (repeatable; "
                     "http=1s, redis=10ms and default=100ms unless set; off turns one off; config "
                     "slow_log.thresholds)")
        ->envname("LOUPE_SLOW_THRESHOLD")
        ->delimiter(',')
        ->check(setting_check(loupe::agent::check_slow_threshold));
    agent
        ->add_option("--slow-log-file", agent_config.slow_log_output.path,
                     "Also write slow operations to this file as JSON lines, rotated at "
                     "slow_log.max_file_bytes (config slow_log.file)")
        ->envname("LOUPE_SLOW_LOG_FILE");
    agent
        ->add_flag("--slow-log-stdout", agent_config.slow_log_output.to_stdout,
                   "Also write slow operations to standard output as JSON lines (config "
                   "slow_log.stdout)")
        ->envname("LOUPE_SLOW_LOG_STDOUT");
    agent
        ->add_option("--otlp-endpoint", agent_config.otlp.endpoint,
                     "Send spans and metrics over OTLP/HTTP (protobuf, gzip) to this base URL, "
                     "e.g. http://collector:4318 (env OTEL_EXPORTER_OTLP_ENDPOINT; per signal "
                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and _METRICS_ENDPOINT)")
        ->envname("LOUPE_OTLP_ENDPOINT")
        ->check(setting_check(loupe::agent::check_url_or_empty));
    agent
        ->add_option("--otlp-sampling-ratio", agent_config.otlp.sampling_ratio,
                     "Share of traces whose spans are exported (head sampling by trace id); "
                     "errors and slow spans are always kept")
        ->envname("LOUPE_OTLP_SAMPLING_RATIO")
        ->check(setting_check(loupe::otlp::check_sampling_ratio))
        ->capture_default_str();
    std::uint32_t keep_over_ms =
        static_cast<std::uint32_t>(agent_config.otlp.always_keep_over.count());
    agent
        ->add_option("--otlp-always-keep-over-ms", keep_over_ms,
                     "Spans at least this long are exported whatever the sampling ratio")
        ->envname("LOUPE_OTLP_ALWAYS_KEEP_OVER_MS")
        ->check(setting_check(loupe::agent::check_positive_count))
        ->capture_default_str();
    std::uint32_t metrics_interval_s =
        static_cast<std::uint32_t>(agent_config.otlp.metrics_interval.count() / 1000);
    agent
        ->add_option("--otlp-metrics-interval-seconds", metrics_interval_s,
                     "How often metrics are exported over OTLP")
        ->envname("LOUPE_OTLP_METRICS_INTERVAL_SECONDS")
        ->check(setting_check(loupe::agent::check_positive_count))
        ->capture_default_str();
    std::string histogram_form =
        agent_config.otlp.exponential_histograms ? "exponential" : "explicit";
    agent
        ->add_option("--otlp-histograms", histogram_form,
                     "Latency histograms over OTLP: exponential (the quantile sketches' buckets, "
                     "mapped exactly) or explicit (the le buckets of /metrics) (env "
                     "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION)")
        ->envname("LOUPE_OTLP_HISTOGRAMS")
        ->check(setting_check(loupe::otlp::check_histogram_form))
        ->capture_default_str();
    agent
        ->add_option("--otlp-certificate", agent_config.otlp.certificate,
                     "PEM file of the CA certificates that verify an https OTLP endpoint (env "
                     "OTEL_EXPORTER_OTLP_CERTIFICATE; default: the system's)")
        ->envname("LOUPE_OTLP_CERTIFICATE");
    agent
        ->add_option("--otlp-max-queued-spans", agent_config.otlp.max_queued_spans,
                     "Spans waiting to be sent at most; more are dropped and counted")
        ->envname("LOUPE_OTLP_MAX_QUEUED_SPANS")
        ->check(setting_check(loupe::agent::check_positive_count))
        ->capture_default_str();

    loupe::top::TopOptions top_options;
    if (const char* agent_env = std::getenv("LOUPE_AGENT"); agent_env && *agent_env) {
        top_options.agent_url = agent_env;
        top_options.agent_given = true;
    }
    auto* top = app.add_subcommand("top",
                                   "Live, top-style view of every service: RPS, errors, "
                                   "p50/p95/p99, database calls, cache hit ratio, CPU, memory, "
                                   "disk, network, TCP retransmits; Enter drills into routes, "
                                   "database operations and processes. Reads "
                                   "a running agent, or captures "
                                   "in-process when none answers. When stdout is not a terminal it "
                                   "prints one snapshot (--once).");
    top->add_option("--agent", top_options.agent_url, "Agent base URL (env LOUPE_AGENT)")
        ->capture_default_str();
    top->add_option("--interval", top_options.interval_seconds, "Refresh interval in seconds")
        ->check(CLI::Range(0.2, 60.0))
        ->capture_default_str();
    top->add_flag("--once", top_options.once, "Print one snapshot as a table and exit");
    top->add_flag("--json", top_options.json,
                  "Print one snapshot as JSON (the agent's API documents) and exit");
    top->add_flag("--no-color", top_options.no_color, "No colour (NO_COLOR is honoured too)");
    top->add_option("--sort", top_options.sort,
                    "Sort column of --once (e.g. RPS, CPU%, P95, \"DB P95\", RSS)")
        ->capture_default_str();
    top->add_option("--slo-p95", top_options.thresholds.p95_seconds,
                    "Highlight p95 above this many seconds")
        ->capture_default_str();
    top->add_option("--error-budget", top_options.thresholds.error_ratio,
                    "Highlight error ratios above this")
        ->capture_default_str();
    top->add_option("--slo-db-p95", top_options.thresholds.db_p95_seconds,
                    "Highlight database operations' p95 above this many seconds")
        ->capture_default_str();

    loupe::profile_cli::ProfileOptions profile_options;
    auto* profile = app.add_subcommand(
        "profile",
        "Sample the CPU stacks of chosen processes (software cpu-clock perf event, frame-pointer "
        "unwinding, symbols from their own ELF files, /tmp/perf-PID.map and /proc/kallsyms) and "
        "write a pprof file (*.pb.gz), folded stacks (*.folded) or an interactive flame graph "
        "(*.svg); with no --output, print the hottest functions. Needs root (or CAP_BPF and "
        "CAP_PERFMON).");
    profile->add_option("--pid", profile_options.pids, "Process id to profile (repeatable)");
    profile->add_option("--comm", profile_options.comms,
                        "Process name to profile, including processes that start meanwhile "
                        "(repeatable)");
    profile->add_option("--service", profile_options.service,
                        "Service to profile: its live processes, as the running agent (--agent) "
                        "attributes them");
    profile
        ->add_option("--agent", profile_options.agent_url,
                     "Agent base URL, for --service (env LOUPE_AGENT)")
        ->envname("LOUPE_AGENT")
        ->capture_default_str();
    profile->add_option("--duration", profile_options.duration, "How long: 10s, 500ms, 2m")
        ->capture_default_str();
    profile->add_option("--frequency", profile_options.frequency_hz, "Samples per second per CPU")
        ->capture_default_str();
    profile->add_option("--output", profile_options.output,
                        "File to write; the format follows the extension: .pb.gz, .folded, .svg");
    profile
        ->add_option("--unwind", profile_options.unwind,
                     "How user stacks are unwound: fp (frame pointers, in the kernel) or dwarf "
                     "(a 16 KiB stack copy per sample unwound with libdw: for code built without "
                     "frame pointers)")
        ->capture_default_str();
    profile->add_option("--top", profile_options.top, "Functions listed without --output")
        ->check(CLI::Range(1, 10000))
        ->capture_default_str();

    warn_unknown_environment(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return report_parse_error(app, error, argc, argv);
    }
    if (top->count("--agent")) top_options.agent_given = true;
    if (top->parsed() && top_options.agent_given)
        if (const auto problem = loupe::util::http_url_problem(top_options.agent_url)) {
            std::cerr << "loupe top: " << (top->count("--agent") ? "--agent" : "LOUPE_AGENT")
                      << ": " << *problem << ", got '"
                      << loupe::util::terminal_safe(top_options.agent_url,
                                                    loupe::util::charset_from_environment())
                      << "'\n";
            return 2;
        }

    // Values from the environment have not been through CLI11's checks (the config file's have
    // been through its own).
    const auto format = loupe::util::parse_log_format(log_format);
    const auto level = loupe::util::parse_log_level(log_level);
    if (!format || !level) {
        std::cerr << "loupe: "
                  << loupe::util::terminal_safe(
                         format ? "LOUPE_LOG_LEVEL: expected trace, debug, info, warn, error, "
                                  "critical or off, got '" +
                                      log_level
                                : "LOUPE_LOG_FORMAT: expected text or json, got '" + log_format,
                         loupe::util::charset_from_environment())
                  << "' (from the environment)\n";
        return 2;
    }
    loupe::util::setup_logging(*format, *level);

    if (doctor->parsed()) return loupe::doctor::run_doctor(doctor_json, std::cout);
    if (profile->parsed())
        return loupe::profile_cli::run_profile(profile_options, std::cout, std::cerr);
    if (top->parsed())
        return loupe::top::run_top(top_options, []() -> std::optional<loupe::top::LocalAgent> {
            loupe::agent::AgentConfig config;
            config.listen = "127.0.0.1:0";
            auto local = std::make_shared<loupe::agent::Agent>(config);
            if (!local->start()) return std::nullopt;
            return loupe::top::LocalAgent{"http://" + local->listen_address(),
                                          [local] { local->stop(); }};
        });
    if (agent->parsed()) {
        for (const auto& threshold : slow_thresholds)
            loupe::agent::apply_slow_threshold(threshold, agent_config.slow_log);
        agent_config.log_format = log_format;
        agent_config.log_level = log_level;
        agent_config.otlp.always_keep_over = std::chrono::milliseconds(keep_over_ms);
        agent_config.otlp.metrics_interval = std::chrono::seconds(metrics_interval_s);
        agent_config.otlp.exponential_histograms = histogram_form == "exponential";
        return loupe::agent::Agent(agent_config).run();
    }
    return 0;
}
