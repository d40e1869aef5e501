#include "protocols/mysql/metric_spec.h"

#include <array>
#include <string>

namespace loupe::mysql {
namespace {

using protocols::KeyField;
using protocols::LabelSpec;

// OpenTelemetry's advisory buckets for db.client.operation.duration (seconds).
constexpr std::array<std::uint64_t, 9> kBoundsNs = {1'000'000,     5'000'000,     10'000'000,
                                                    50'000'000,    100'000'000,   500'000'000,
                                                    1'000'000'000, 5'000'000'000, 10'000'000'000};

constexpr LabelSpec kServerLabels[] = {
    {"db_system_name", KeyField::kSystem, "mysql"},
    {"db_operation_name", KeyField::kOperation},
    {"db_query_summary", KeyField::kTarget, {}, true},
    {"db_collection_name", KeyField::kCollection, {}, true},
    {"db_namespace", KeyField::kNamespace, {}, true},
    {"db_response_status_code", KeyField::kStatus, {}, true},
    {"error_type", KeyField::kStatus, {}, true},
};
constexpr LabelSpec kClientLabels[] = {
    {"db_system_name", KeyField::kSystem, "mysql"},
    {"db_operation_name", KeyField::kOperation},
    {"db_query_summary", KeyField::kTarget, {}, true},
    {"db_collection_name", KeyField::kCollection, {}, true},
    {"db_namespace", KeyField::kNamespace, {}, true},
    {"server_address", KeyField::kServerAddress},
    {"server_port", KeyField::kServerPort},
    {"db_response_status_code", KeyField::kStatus, {}, true},
    {"error_type", KeyField::kStatus, {}, true},
};

// The error number ("1062") or "closed"; empty for a success.
std::string_view status_of(const protocols::Request& r, std::array<char, 16>&) {
    return r.error;
}

bool is_error(protocols::Side, std::string_view status) {
    return !status.empty();
}

// Summaries hold no literal (protocols/sql): kept as they are.
std::string summary_of(std::string_view summary) {
    return std::string(summary);
}

constexpr const char* kWindowHelp =
    "Operation duration over a sliding window (label window): quantiles from the sketch (0.54% "
    "to 4.3% relative error, wider spreads coarser), exact _count and _sum of the window.";

}  // namespace

const protocols::MetricSpec kMetricSpec = {
    .system = "mysql",
    .database = true,
    .server = {"loupe_db_server_operation_duration_seconds",
               "Duration of database operations served, seen inside the server process: first "
               "command byte read to last reply byte written (kernel clock).",
               "loupe_db_server_operation_duration_window_seconds",
               kWindowHelp,
               kServerLabels,
               {}},
    .client = {"db_client_operation_duration_seconds",
               "Duration of database client operations: first command byte written to last reply "
               "byte read (kernel clock).",
               "loupe_db_client_operation_duration_window_seconds",
               kWindowHelp,
               kClientLabels,
               {}},
    .bounds_ns = kBoundsNs,
    .capped = KeyField::kTarget,
    .overflow = "_OTHER",
    .status = &status_of,
    .normalize_target = &summary_of,
    .is_error = &is_error,
};

}  // namespace loupe::mysql
