// Every protocol loupe parses, in one place: the capture pipeline makes a connection's parser
// from here, and the store, exporters, API, `loupe top` and alerts iterate this list. Adding a
// protocol is a folder under protocols/ and one entry in registry.cpp.
#pragma once

#include <memory>
#include <span>
#include <string_view>

#include "protocols/metric_spec.h"
#include "protocols/protocol.h"

namespace loupe::protocols {

struct ProtocolInfo {
    Protocol id = Protocol::kUnknown;
    std::string_view name;  // "http1", "redis": as --protocols and /api/v1/agent name it
    const MetricSpec* metrics = nullptr;
    std::unique_ptr<ConnectionParser> (*make_parser)(Side hint) = nullptr;
};

std::span<const ProtocolInfo> all_protocols();
// Null for kUnknown or a protocol this build does not know.
const ProtocolInfo* find_protocol(Protocol id);
const ProtocolInfo* find_protocol(std::string_view name);

}  // namespace loupe::protocols
