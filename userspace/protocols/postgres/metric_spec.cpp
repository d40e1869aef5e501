#include "protocols/postgres/metric_spec.h"

#include <array>
#include <string>

namespace loupe::postgres {
namespace {

using protocols::KeyField;
using protocols::LabelSpec;

// OpenTelemetry's advisory buckets for db.client.operation.duration (seconds).
constexpr std::array<std::uint64_t, 9> kBoundsNs = {1'000'000,     5'000'000,     10'000'000,
                                                    50'000'000,    100'000'000,   500'000'000,
                                                    1'000'000'000, 5'000'000'000, 10'000'000'000};

constexpr LabelSpec kServerLabels[] = {
    {"db_system_name", KeyField::kConstant, "postgresql"},
    {"db_operation_name", KeyField::kOperation},
    {"db_query_summary", KeyField::kTarget},
    {"db_collection_name", KeyField::kCollection, {}, true},
    {"db_namespace", KeyField::kNamespace},
    {"db_response_status_code", KeyField::kStatus, {}, true},
    {"error_type", KeyField::kStatus, {}, true},
};
constexpr LabelSpec kClientLabels[] = {
    {"db_system_name", KeyField::kConstant, "postgresql"},
    {"db_operation_name", KeyField::kOperation},
    {"db_query_summary", KeyField::kTarget},
    {"db_collection_name", KeyField::kCollection, {}, true},
    {"db_namespace", KeyField::kNamespace},
    {"server_address", KeyField::kServerAddress},
    {"server_port", KeyField::kServerPort},
    {"db_response_status_code", KeyField::kStatus, {}, true},
    {"error_type", KeyField::kStatus, {}, true},
};

// The SQLSTATE ("23505"), or "closed"; empty for a success.
std::string_view status_of(const protocols::Request& r, std::array<char, 16>&) {
    return r.error;
}

bool is_error(protocols::Side, std::string_view status) {
    return !status.empty();
}

// The summary is already free of literals (sql::describe_statement): kept as it is.
std::string summary_label(std::string_view summary) {
    return std::string(summary);
}

constexpr const char* kWindowHelp =
    "Operation duration over a sliding window (label window): quantiles from the sketch (0.54% "
    "to 4.3% relative error, wider spreads coarser), exact _count and _sum of the window.";

}  // namespace

const protocols::MetricSpec kMetricSpec = {
    .system = "postgresql",
    .database = true,
    .server = {"loupe_db_server_operation_duration_seconds",
               "Duration of database operations served, seen inside the server process: first "
               "request byte read to last reply byte written (kernel clock).",
               "loupe_db_server_operation_duration_window_seconds", kWindowHelp, kServerLabels, ""},
    .client = {"db_client_operation_duration_seconds",
               "Duration of database client operations: first request byte written to last reply "
               "byte read (kernel clock).",
               "loupe_db_client_operation_duration_window_seconds", kWindowHelp, kClientLabels, ""},
    .bounds_ns = kBoundsNs,
    .capped = KeyField::kTarget,
    .overflow = "_OTHER",
    .status = &status_of,
    .normalize_target = &summary_label,
    .is_error = &is_error,
};

}  // namespace loupe::postgres
