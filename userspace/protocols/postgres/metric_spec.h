// The metrics PostgreSQL statements become (OpenTelemetry database semantic conventions).
#pragma once

#include "protocols/metric_spec.h"

namespace loupe::postgres {

// db_client_operation_duration_seconds and loupe_db_server_operation_duration_seconds (buckets
// 1 ms - 10 s), by db_system_name="postgresql", db_operation_name, db_query_summary (capped per
// service: beyond the cap `_OTHER`), db_collection_name (when one table), db_namespace, the
// server called (client side), and on errors db_response_status_code and error_type (SQLSTATE).
extern const protocols::MetricSpec kMetricSpec;

}  // namespace loupe::postgres
