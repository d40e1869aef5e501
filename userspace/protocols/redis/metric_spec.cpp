#include "protocols/redis/metric_spec.h"

#include "protocols/db_metric_spec.h"

namespace loupe::redis {
namespace {

using protocols::KeyField;
using protocols::LabelSpec;

constexpr LabelSpec kServerLabels[] = {
    {"db_system_name", KeyField::kConstant, "redis"},
    {"db_operation_name", KeyField::kOperation},
    {"db_namespace", KeyField::kNamespace},
    {"db_response_status_code", KeyField::kStatus, {}, true},
    {"error_type", KeyField::kStatus, {}, true},
};
constexpr LabelSpec kClientLabels[] = {
    {"db_system_name", KeyField::kConstant, "redis"},
    {"db_operation_name", KeyField::kOperation},
    {"db_namespace", KeyField::kNamespace},
    {"server_address", KeyField::kServerAddress},
    {"server_port", KeyField::kServerPort},
    {"db_response_status_code", KeyField::kStatus, {}, true},
    {"error_type", KeyField::kStatus, {}, true},
};

}  // namespace

const protocols::MetricSpec kMetricSpec = {
    .system = "redis",
    .database = true,
    .server = protocols::db::server_family(kServerLabels, "loupe_db_server_cache_lookups_total"),
    .client = protocols::db::client_family(kClientLabels, "loupe_db_client_cache_lookups_total"),
    .bounds_ns = protocols::db::kBoundsNs,
    .capped = KeyField::kOperation,
    .overflow = "_OTHER",
    .status = &protocols::db::error_status,
    .normalize_target = nullptr,
    .is_error = &protocols::db::is_error,
};

}  // namespace loupe::redis
