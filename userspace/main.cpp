// loupe: one binary, one subcommand per job.
#include <cstdlib>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "doctor/doctor_command.h"
#include "util/logging.h"
#include "util/version.h"

namespace {

const char* env_or(const char* name, const char* fallback) {
    const char* value = std::getenv(name);
    return value && *value ? value : fallback;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"loupe: eBPF request latency, errors and resources of unmodified services"};
    app.set_version_flag("--version", std::string(loupe::kVersion));
    app.require_subcommand(1);

    std::string log_format = env_or("LOUPE_LOG_FORMAT", "text");
    std::string log_level = env_or("LOUPE_LOG_LEVEL", "info");
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

    CLI11_PARSE(app, argc, argv);

    loupe::util::setup_logging(*loupe::util::parse_log_format(log_format),
                               *loupe::util::parse_log_level(log_level));

    if (doctor->parsed()) return loupe::doctor::run_doctor(doctor_json, std::cout);
    return 0;
}
