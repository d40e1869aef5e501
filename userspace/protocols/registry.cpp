#include "protocols/registry.h"

#include <array>

#include "protocols/http1/http1_protocol.h"
#include "protocols/postgres/metric_spec.h"
#include "protocols/postgres/postgres.h"
#include "protocols/redis/metric_spec.h"
#include "protocols/redis/redis.h"

namespace loupe::protocols {
namespace {

const std::array kProtocols = {
    ProtocolInfo{Protocol::kHttp1, "http1", &http1::kMetricSpec, &http1::make_parser},
    ProtocolInfo{Protocol::kRedis, "redis", &redis::kMetricSpec, &redis::make_parser},
    ProtocolInfo{Protocol::kPostgres, "postgres", &postgres::kMetricSpec, &postgres::make_parser},
};

}  // namespace

std::span<const ProtocolInfo> all_protocols() {
    return kProtocols;
}

const ProtocolInfo* find_protocol(Protocol id) {
    for (const auto& p : kProtocols)
        if (p.id == id) return &p;
    return nullptr;
}

const ProtocolInfo* find_protocol(std::string_view name) {
    for (const auto& p : kProtocols)
        if (p.name == name) return &p;
    return nullptr;
}

}  // namespace loupe::protocols
