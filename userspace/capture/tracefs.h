// tracefs must be mounted for perf-event based tracepoint attachment; hosts and containers often
// leave it unmounted.
#pragma once

#include <string>

namespace loupe::capture {

struct TracefsStatus {
    bool available = false;
    bool mounted_by_us = false;
    std::string path;   // where the events/ directory lives
    std::string error;  // why it is not available
};

// Finds a mounted tracefs (/sys/kernel/tracing, or debugfs's tracing/), mounting tracefs at
// /sys/kernel/tracing when neither is there. Idempotent.
TracefsStatus ensure_tracefs();

}  // namespace loupe::capture
