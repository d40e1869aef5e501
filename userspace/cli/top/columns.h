// Columns of the services table, shared by the live view and `--once`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/top/snapshot.h"
#include "util/terminal_text.h"

namespace loupe::top {

struct Thresholds {
    double p95_seconds = 0.2;   // SLO: p95 above this is highlighted
    double error_ratio = 0.01;  // error budget: above this is highlighted (HTTP and databases)
    // Database operations' p95 above this is highlighted: the agent's LoupeHighDbLatencyP95.
    double db_p95_seconds = 0.05;
};

struct Column {
    const char* title;
    int width;
    bool numeric;  // right-aligned, sorted descending first
    std::function<std::string(const ServiceRow&)> text;
    std::function<double(const ServiceRow&)> key;  // sort key (numeric columns)
    // Whether the cell breaks a threshold (shown in colour, or with a trailing '!' without).
    std::function<bool(const ServiceRow&, const Thresholds&)> alarming;
};

const std::vector<Column>& service_columns();
// Index of the column titled `title` (case-insensitive), or -1.
int column_index(const std::string& title);

void sort_services(std::vector<ServiceRow>& rows, int column, bool descending);
// Keeps the rows whose name contains `filter` (case-insensitive), minus services that have no live
// process and no HTTP or database traffic left.
std::vector<ServiceRow> filter_services(const std::vector<ServiceRow>& rows,
                                        const std::string& filter);

std::string format_bytes(double bytes);
std::string format_rate(double bytes_per_second);
std::string format_seconds(const std::optional<double>& seconds);
std::string format_percent(double ratio);
std::string format_rps(const std::optional<double>& rps);      // "-" when not measured yet
std::string format_ratio(const std::optional<double>& ratio);  // as format_percent; "-" for none
// `text` padded or cut to `width` columns (counted as util::text_columns does).
std::string pad(const std::string& text, int width, bool right);

// "17 services"; with a filter on, "3 of 17 services".
std::string services_count(std::size_t shown, std::size_t all, bool filtered);
// What RPS and the other columns are measured over, for the header.
std::string windows_legend(double rps_span_seconds);

struct PlainOptions {
    std::string agent_url;
    Thresholds thresholds;
    int sort_column = 0;
    double rps_span_seconds = 0;  // what the rates were measured over (0: not measured)
    util::TerminalCharset charset = util::TerminalCharset::kAscii;
};

// The plain-text table of `--once`: header lines, column titles, one line per service. Text from
// the system goes through util::terminal_safe.
std::string render_plain(const Snapshot& snapshot, const PlainOptions& options);

}  // namespace loupe::top
