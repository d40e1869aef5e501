// The metrics MySQL / MariaDB operations become (OpenTelemetry database semantic conventions).
#pragma once

#include "protocols/metric_spec.h"

namespace loupe::mysql {

// db_client_operation_duration_seconds and loupe_db_server_operation_duration_seconds (buckets
// 1 ms - 10 s), by db_system_name ("mariadb" or "mysql", from the server's greeting; "mysql"
// when it was not seen), db_operation_name, db_query_summary (capped per service),
// db_collection_name and db_namespace when known, the server called (client side), and on errors
// db_response_status_code and error_type (the MySQL error number, or "closed").
extern const protocols::MetricSpec kMetricSpec;

}  // namespace loupe::mysql
