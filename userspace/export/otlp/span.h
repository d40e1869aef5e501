// One captured request or operation as an OpenTelemetry span, owned, ready to encode.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "protocols/protocol.h"

namespace loupe::otlp {

using TraceId = std::array<std::uint8_t, 16>;
using SpanId = std::array<std::uint8_t, 8>;

struct Span {
    TraceId trace_id{};
    SpanId span_id{};
    SpanId parent_span_id{};        // all zero: a root span
    bool sampled_by_caller = true;  // the traceparent's sampled flag (kept as trace flags)
    protocols::Protocol protocol = protocols::Protocol::kUnknown;
    protocols::Side side = protocols::Side::kServer;
    std::string service;     // the identity key of the process (attribution/): its resource
    std::string executable;  // the process's name (comm)
    std::uint32_t pid = 0;
    std::string name;
    // Semantic-convention values; empty / 0 when not known or not applicable.
    std::string operation;       // http.request.method / db.operation.name
    std::string route;           // http.route
    int http_status = 0;         // http.response.status_code
    std::string server_address;  // client spans
    std::uint16_t server_port = 0;
    std::string db_system;      // db.system.name
    std::string db_namespace;   // db.namespace
    std::string db_summary;     // db.query.summary
    std::string db_collection;  // db.collection.name
    std::string error_type;     // error.type; not empty: the span's status is ERROR
    std::uint64_t start_unix_ns = 0;
    std::uint64_t end_unix_ns = 0;
    // The request series that counted it (aggregate::Series::id; 0: none): its metrics' exemplar.
    // Not exported as such.
    std::uint64_t series_id = 0;
};

}  // namespace loupe::otlp
