// The metrics Redis operations become (OpenTelemetry database semantic conventions).
#pragma once

#include "protocols/metric_spec.h"

namespace loupe::redis {

// db_client_operation_duration_seconds and loupe_db_server_operation_duration_seconds (buckets
// 1 ms - 10 s), by db_system_name="redis", db_operation_name, db_namespace, the server called
// (client side), and on errors db_response_status_code and error_type (the error's prefix); cache
// lookups of read commands in loupe_db_{client,server}_cache_lookups_total{result}.
extern const protocols::MetricSpec kMetricSpec;

}  // namespace loupe::redis
