// HTTP/1.x as a protocol of the registry: the connection parser behind protocols::ConnectionParser
// and the metrics its requests become.
#pragma once

#include <memory>

#include "protocols/metric_spec.h"
#include "protocols/protocol.h"

namespace loupe::http1 {

std::unique_ptr<protocols::ConnectionParser> make_parser(protocols::Side hint);

// http_{server,client}_request_duration_seconds (OpenTelemetry's HTTP buckets, 5 ms - 10 s), by
// method, route and status; routes capped per service (the rest: /{overflow}).
extern const protocols::MetricSpec kMetricSpec;

}  // namespace loupe::http1
