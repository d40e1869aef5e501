#include "doctor/doctor_command.h"

#include <ostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/terminal_text.h"

namespace loupe::doctor {

void print_text(const KernelReport& report, std::ostream& out) {
    // Details quote the system (mount points, libbpf and kernel messages): made safe to print.
    const auto charset = util::charset_from_environment();
    const auto safe = [&](const std::string& text) { return util::terminal_safe(text, charset); };
    out << "loupe doctor: kernel " << safe(report.kernel_release) << "\n\n";
    for (const auto& f : report.features) {
        out << fmt::format("  {:<9} {:<11} {}\n", f.available ? "[ok]" : "[missing]", f.id,
                           f.title);
        out << fmt::format("  {:<21} {}\n", "", safe(f.detail));
        if (!f.available)
            out << fmt::format("  {:<21} without it: {}{}\n", "", f.impact,
                               f.essential ? " (essential)" : "");
    }
    out << '\n'
        << (report.usable()
                ? "loupe can run on this kernel.\n"
                : "loupe cannot capture on this kernel: an essential feature is missing.\n");
}

void print_json(const KernelReport& report, std::ostream& out) {
    nlohmann::json features = nlohmann::json::array();
    for (const auto& f : report.features)
        features.push_back({{"id", f.id},
                            {"title", f.title},
                            {"available", f.available},
                            {"essential", f.essential},
                            {"detail", f.detail},
                            {"impact_if_missing", f.impact}});
    const nlohmann::json doc = {{"kernel_release", report.kernel_release},
                                {"usable", report.usable()},
                                {"features", features}};
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
