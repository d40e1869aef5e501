#include "protocols/postgres/metric_spec.h"

#include "protocols/db_metric_spec.h"
#include "protocols/postgres/connection.h"

namespace loupe::postgres {
namespace {

using protocols::KeyField;
using protocols::LabelSpec;

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

}  // namespace

const protocols::MetricSpec kMetricSpec = {
    .system = "postgresql",
    .database = true,
    .server = protocols::db::server_family(kServerLabels),
    .client = protocols::db::client_family(kClientLabels),
    .bounds_ns = protocols::db::kBoundsNs,
    .capped = KeyField::kTarget,
    .overflow = "_OTHER",
    .status = &protocols::db::error_status,
    .normalize_target = &protocols::db::summary_label,
    .is_error = &protocols::db::is_error,
    .parser_counters = kCounterSpecs,
};

}  // namespace loupe::postgres
