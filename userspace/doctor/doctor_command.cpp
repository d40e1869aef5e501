#include "doctor/doctor_command.h"

#include <ostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "capture/go_executable.h"
#include "capture/tls_libraries.h"
#include "util/terminal_text.h"

namespace loupe::doctor {

void print_text(const KernelReport& report, std::ostream& out) {
    // Details quote the system (mount points, libbpf and kernel messages): made safe to print.
    const auto charset = util::charset_from_environment();
    const auto safe = [&](const std::string& text) { return util::terminal_safe(text, charset); };
    out << "loupe doctor: kernel " << safe(report.kernel_release) << "\n\n";
    for (const auto& f : report.features) {
        out << fmt::format("  {:<9} {:<19} {}\n", f.available ? "[ok]" : "[missing]", f.id,
                           f.title);
        out << fmt::format("  {:<29} {}\n", "", safe(f.detail));
        if (!f.available)
            out << fmt::format("  {:<29} without it: {}{}\n", "", f.impact,
                               f.essential ? " (essential)" : "");
    }
    out << '\n';
    // What the agent would probe for TLS plaintext (it attaches at start, and as processes map
    // more libraries).
    const auto libraries = capture::find_tls_libraries();
    out << "TLS libraries mapped by running processes (OpenSSL; the agent probes";
    for (const char* function : capture::kOpenSslProbedFunctions)
        out << ' ' << function;
    out << "):\n";
    if (libraries.empty()) out << "  none\n";
    for (const auto& [path, processes] : libraries)
        out << fmt::format("  {} ({} processes)\n", safe(path), processes);
    out << '\n';
    const auto go = capture::find_go_executables();
    out << "Go executables run by running processes (Go crypto/tls; the agent probes";
    for (const char* function : capture::kGoProbedFunctions)
        out << ' ' << function;
    out << " at entry and at every RET):\n";
    if (go.empty()) out << "  none\n";
    for (const auto& exe : go)
        out << fmt::format("  {} ({}, {} processes){}\n", safe(exe.path),
                           exe.go_version.empty() ? "unknown Go" : safe(exe.go_version),
                           exe.processes,
                           exe.error.empty() ? "" : ": not probed: " + safe(exe.error));
    out << '\n';
    if (!report.usable()) {
        out << "loupe cannot capture on this kernel: an essential feature is missing.\n";
        return;
    }
    const auto degraded = report.degraded();
    if (degraded.empty()) {
        out << "loupe can run on this kernel, with everything it captures.\n";
        return;
    }
    out << "loupe can run on this kernel, but captures less: without\n";
    for (const FeatureReport* f : degraded)
        out << fmt::format("  - {}: {}\n", f->id, f->impact);
}

void print_json(const KernelReport& report, std::ostream& out) {
    nlohmann::json features = nlohmann::json::array();
    for (const auto& f : report.features)
        features.push_back({{"id", f.id},
                            {"title", f.title},
                            {"available", f.available},
                            {"essential", f.essential},
                            {"degrades_capture", f.degrades},
                            {"detail", f.detail},
                            {"impact_if_missing", f.impact}});
    nlohmann::json tls_libraries = nlohmann::json::array();
    for (const auto& [path, processes] : capture::find_tls_libraries())
        tls_libraries.push_back({{"library", "openssl"},
                                 {"path", path},
                                 {"processes", processes},
                                 {"uprobes", capture::kOpenSslProbedFunctions}});
    for (const auto& exe : capture::find_go_executables())
        tls_libraries.push_back({{"library", "go"},
                                 {"path", exe.path},
                                 {"processes", exe.processes},
                                 {"go_version", exe.go_version},
                                 {"uprobes", capture::kGoProbedFunctions},
                                 {"error", exe.error}});
    nlohmann::json missing = nlohmann::json::array();
    for (const FeatureReport* f : report.degraded())
        missing.push_back(f->id);
    const nlohmann::json doc = {{"kernel_release", report.kernel_release},
                                {"usable", report.usable()},
                                {"complete", report.usable() && missing.empty()},
                                {"degraded_by", missing},
                                {"features", features},
                                {"tls_libraries", tls_libraries}};
    // ASCII only, and bytes that are not UTF-8 replaced rather than thrown about.
    out << doc.dump(2, ' ', true, nlohmann::json::error_handler_t::replace) << '\n';
}

int run_doctor(bool json, std::ostream& out) {
    const KernelReport report = probe_kernel_features();
    if (json)
        print_json(report, out);
    else
        print_text(report, out);
    return report.usable() ? 0 : 1;
}

}  // namespace loupe::doctor
