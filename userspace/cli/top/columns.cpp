#include "cli/top/columns.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "util/terminal_text.h"

namespace loupe::top {

std::string format_bytes(double bytes) {
    static const char* kUnits[] = {"B", "K", "M", "G", "T"};
    int unit = 0;
    while (bytes >= 1024 && unit < 4) {
        bytes /= 1024;
        ++unit;
    }
    return unit == 0 ? fmt::format("{:.0f}B", bytes) : fmt::format("{:.1f}{}", bytes, kUnits[unit]);
}

std::string format_rate(double bps) {
    return bps < 0.5 ? "-" : format_bytes(bps) + "/s";
}

std::string format_seconds(const std::optional<double>& s) {
    if (!s) return "-";
    if (*s < 1e-3) return fmt::format("{:.0f}us", *s * 1e6);
    if (*s < 1) return fmt::format("{:.1f}ms", *s * 1e3);
    return fmt::format("{:.2f}s", *s);
}

std::string format_percent(double ratio) {
    return fmt::format("{:.1f}%", ratio * 100);
}

std::string format_ratio(const std::optional<double>& ratio) {
    return ratio ? format_percent(*ratio) : "-";
}

std::string format_rps(const std::optional<double>& rps) {
    if (!rps) return "-";
    return *rps < 100 ? fmt::format("{:.1f}", *rps) : fmt::format("{:.0f}", *rps);
}

std::string pad(const std::string& text, int width, bool right) {
    const auto w = static_cast<std::size_t>(std::max(width, 0));
    const std::size_t columns = util::text_columns(text);
    if (columns >= w) return std::string(util::truncate_to_columns(text, w));
    return right ? std::string(w - columns, ' ') + text : text + std::string(w - columns, ' ');
}

const std::vector<Column>& service_columns() {
    static const std::vector<Column> kColumns = {
        {"SERVICE", 18, false, [](const ServiceRow& r) { return r.name; }, nullptr, nullptr},
        {"PROC", 5, true,
         [](const ServiceRow& r) { return r.has_resources ? std::to_string(r.processes) : "-"; },
         [](const ServiceRow& r) { return static_cast<double>(r.processes); }, nullptr},
        {"RPS", 8, true, [](const ServiceRow& r) { return format_rps(r.rps); },
         [](const ServiceRow& r) { return r.rps.value_or(-1); }, nullptr},
        {"ERR%", 6, true,
         [](const ServiceRow& r) { return r.has_http ? format_percent(r.error_ratio) : "-"; },
         [](const ServiceRow& r) { return r.error_ratio; },
         [](const ServiceRow& r, const Thresholds& t) {
             return r.has_http && r.error_ratio > t.error_ratio;
         }},
        {"P50", 8, true, [](const ServiceRow& r) { return format_seconds(r.p50); },
         [](const ServiceRow& r) { return r.p50.value_or(-1); }, nullptr},
        {"P95", 8, true, [](const ServiceRow& r) { return format_seconds(r.p95); },
         [](const ServiceRow& r) { return r.p95.value_or(-1); },
         [](const ServiceRow& r, const Thresholds& t) { return r.p95 && *r.p95 > t.p95_seconds; }},
        {"P99", 8, true, [](const ServiceRow& r) { return format_seconds(r.p99); },
         [](const ServiceRow& r) { return r.p99.value_or(-1); }, nullptr},
        // Database and cache operations: the service's calls, or a database server's own.
        {"DB/S", 8, true, [](const ServiceRow& r) { return format_rps(r.db_rps); },
         [](const ServiceRow& r) { return r.db_rps.value_or(-1); }, nullptr},
        {"DB ERR", 6, true,
         [](const ServiceRow& r) { return r.has_db ? format_percent(r.db_error_ratio) : "-"; },
         [](const ServiceRow& r) { return r.has_db ? r.db_error_ratio : -1; },
         [](const ServiceRow& r, const Thresholds& t) {
             return r.has_db && r.db_error_ratio > t.error_ratio;
         }},
        {"DB P95", 8, true, [](const ServiceRow& r) { return format_seconds(r.db_p95); },
         [](const ServiceRow& r) { return r.db_p95.value_or(-1); },
         [](const ServiceRow& r, const Thresholds& t) {
             return r.db_p95 && *r.db_p95 > t.db_p95_seconds;
         }},
        {"HIT%", 6, true, [](const ServiceRow& r) { return format_ratio(r.cache_hit_ratio); },
         [](const ServiceRow& r) { return r.cache_hit_ratio.value_or(-1); }, nullptr},
        {"CPU%", 6, true,
         [](const ServiceRow& r) {
             return r.has_resources ? fmt::format("{:.1f}", r.cpu_cores * 100) : "-";
         },
         [](const ServiceRow& r) { return r.cpu_cores; }, nullptr},
        {"RSS", 7, true,
         [](const ServiceRow& r) { return r.has_resources ? format_bytes(r.rss_bytes) : "-"; },
         [](const ServiceRow& r) { return r.rss_bytes; }, nullptr},
        {"DISK R", 9, true, [](const ServiceRow& r) { return format_rate(r.disk_read_bps); },
         [](const ServiceRow& r) { return r.disk_read_bps; }, nullptr},
        {"DISK W", 9, true, [](const ServiceRow& r) { return format_rate(r.disk_write_bps); },
         [](const ServiceRow& r) { return r.disk_write_bps; }, nullptr},
        {"NET RX", 9, true, [](const ServiceRow& r) { return format_rate(r.net_rx_bps); },
         [](const ServiceRow& r) { return r.net_rx_bps; }, nullptr},
        {"NET TX", 9, true, [](const ServiceRow& r) { return format_rate(r.net_tx_bps); },
         [](const ServiceRow& r) { return r.net_tx_bps; }, nullptr},
        {"RETR", 6, true, [](const ServiceRow& r) { return fmt::format("{:.0f}", r.retransmits); },
         [](const ServiceRow& r) { return r.retransmits; }, nullptr},
    };
    return kColumns;
}

int column_index(const std::string& title) {
    const auto& cols = service_columns();
    for (std::size_t i = 0; i < cols.size(); ++i) {
        std::string a = cols[i].title, b = title;
        std::transform(a.begin(), a.end(), a.begin(), ::tolower);
        std::transform(b.begin(), b.end(), b.begin(), ::tolower);
        if (a == b) return static_cast<int>(i);
    }
    return -1;
}

void sort_services(std::vector<ServiceRow>& rows, int column, bool descending) {
    const auto& cols = service_columns();
    if (column < 0 || column >= static_cast<int>(cols.size())) return;
    const Column& c = cols[static_cast<std::size_t>(column)];
    std::stable_sort(rows.begin(), rows.end(), [&](const ServiceRow& a, const ServiceRow& b) {
        if (!c.key) return descending ? a.name > b.name : a.name < b.name;
        const double ka = c.key(a), kb = c.key(b);
        if (ka != kb) return descending ? ka > kb : ka < kb;
        return a.name < b.name;
    });
}

std::vector<ServiceRow> filter_services(const std::vector<ServiceRow>& rows,
                                        const std::string& filter) {
    auto lower = [](std::string s) {
        std::transform(s.begin(), s.end(), s.begin(), ::tolower);
        return s;
    };
    const std::string needle = lower(filter);
    std::vector<ServiceRow> out;
    for (const auto& r : rows) {
        // Services whose processes all exited and that serve no traffic are history, not "top".
        if (r.has_resources && r.processes == 0 && !r.has_http && !r.has_db) continue;
        if (needle.empty() || lower(r.name).find(needle) != std::string::npos) out.push_back(r);
    }
    return out;
}

std::string services_count(std::size_t shown, std::size_t all, bool filtered) {
    const std::size_t n = filtered ? all : shown;
    const char* noun = n == 1 ? "service" : "services";
    return filtered ? fmt::format("{} of {} {}", shown, all, noun)
                    : fmt::format("{} {}", shown, noun);
}

std::string windows_legend(double rps_span_seconds) {
    std::string rps = "from the next refresh on";
    if (rps_span_seconds >= 2)  // whole seconds: the span moves a little with each refresh
        rps = fmt::format("last {:.0f} s", rps_span_seconds);
    else if (rps_span_seconds > 0)
        rps = fmt::format("last {:.1f} s", rps_span_seconds);
    return fmt::format("RPS and DB/S: {}; ERR%, P50/P95/P99, DB ERR, DB P95 and HIT%: last minute",
                       rps);
}

std::string render_plain(const Snapshot& snap, const PlainOptions& options) {
    const auto safe = [&](const std::string& text) {
        return util::terminal_safe(text, options.charset);
    };
    std::string out =
        fmt::format("loupe top - {}  cpu {}  mem {}  events/s {:.0f}  drops {}  alerts {}\n",
                    safe(options.agent_url), format_percent(snap.node.cpu_utilization),
                    format_percent(snap.node.memory_utilization), snap.agent.events_per_second,
                    snap.agent.drops, snap.agent.alerts_firing);
    auto rows = filter_services(snap.services, "");
    out += services_count(rows.size(), rows.size(), false) + "  " +
           windows_legend(options.rps_span_seconds) + "\n";
    const auto& cols = service_columns();
    std::string header;
    for (const auto& c : cols)
        header += pad(c.title, c.width, c.numeric) + " ";
    out += header + "\n";
    sort_services(rows, options.sort_column, true);
    for (const auto& r : rows) {
        std::string line;
        for (const auto& c : cols) {
            std::string cell = safe(c.text(r));
            if (c.alarming && c.alarming(r, options.thresholds)) cell += "!";  // without colour
            line += pad(cell, c.width, c.numeric) + " ";
        }
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line + "\n";
    }
    return out;
}

}  // namespace loupe::top
