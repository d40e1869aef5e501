// What the database protocols' metric specs share: OpenTelemetry's database buckets, the two
// families every database protocol reports into (one family per side, whatever the protocol:
// db_system_name tells them apart), and the status rule (the error, empty for a success).
// Each protocol keeps its own labels.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "protocols/metric_spec.h"

namespace loupe::protocols::db {

// OpenTelemetry's advisory buckets for db.client.operation.duration (seconds).
inline constexpr std::array<std::uint64_t, 9> kBoundsNs = {
    1'000'000,   5'000'000,     10'000'000,    50'000'000,    100'000'000,
    500'000'000, 1'000'000'000, 5'000'000'000, 10'000'000'000};

inline constexpr std::string_view kWindowHelp =
    "Operation duration over a sliding window (label window): quantiles from the sketch (0.54% "
    "to 4.3% relative error, wider spreads coarser), exact _count and _sum of the window.";

constexpr FamilySpec server_family(std::span<const LabelSpec> labels,
                                   std::string_view cache_lookups = {}) {
    return {"loupe_db_server_operation_duration_seconds",
            "Duration of database operations served, seen inside the server process: first "
            "request byte read to last reply byte written (kernel clock).",
            "loupe_db_server_operation_duration_window_seconds",
            kWindowHelp,
            labels,
            cache_lookups};
}

constexpr FamilySpec client_family(std::span<const LabelSpec> labels,
                                   std::string_view cache_lookups = {}) {
    return {"db_client_operation_duration_seconds",
            "Duration of database client operations: first request byte written to last reply "
            "byte read (kernel clock).",
            "loupe_db_client_operation_duration_window_seconds",
            kWindowHelp,
            labels,
            cache_lookups};
}

// The status label of an operation: its error (Redis's prefix, a SQLSTATE, a MySQL error
// number, "closed"); empty for a success.
inline std::string_view error_status(const Request& request, std::array<char, 16>&) {
    return request.error;
}

inline bool is_error(Side, std::string_view status) {
    return !status.empty();
}

// A query summary as its label: summaries hold no literal (protocols/sql), kept as they are.
inline std::string summary_label(std::string_view summary) {
    return std::string(summary);
}

}  // namespace loupe::protocols::db
