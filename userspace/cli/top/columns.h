// Columns of the services table, shared by the live view and `--once`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/top/snapshot.h"

namespace loupe::top {

struct Thresholds {
    double p95_seconds = 0.2;   // SLO: p95 above this is highlighted
    double error_ratio = 0.01;  // error budget: above this is highlighted
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
// process and no HTTP traffic left.
std::vector<ServiceRow> filter_services(const std::vector<ServiceRow>& rows,
                                        const std::string& filter);

std::string format_bytes(double bytes);
std::string format_rate(double bytes_per_second);
std::string format_seconds(const std::optional<double>& seconds);
std::string format_percent(double ratio);
std::string pad(const std::string& text, int width, bool right);

// The plain-text table of `--once`: header line, column titles, one line per service.
std::string render_plain(const Snapshot& snapshot, const std::string& agent_url,
                         const Thresholds& thresholds, int sort_column);

}  // namespace loupe::top
