#include "capture/tracefs.h"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace loupe::capture {
namespace {

constexpr const char* kTracefs = "/sys/kernel/tracing";
constexpr const char* kDebugfsTracing = "/sys/kernel/debug/tracing";

bool has_events(const std::string& dir) {
    return ::access((dir + "/events").c_str(), F_OK) == 0;
}

}  // namespace

TracefsStatus ensure_tracefs() {
    TracefsStatus status;
    // libbpf looks at debugfs's tracing/ first when it exists, so prefer the same place.
    for (const char* dir : {kDebugfsTracing, kTracefs}) {
        if (has_events(dir)) {
            status.available = true;
            status.path = dir;
            return status;
        }
    }
    if (::mount("tracefs", kTracefs, "tracefs", 0, nullptr) != 0) {
        status.error =
            std::string("cannot mount tracefs at ") + kTracefs + ": " + std::strerror(errno);
        return status;
    }
    status.available = has_events(kTracefs);
    status.mounted_by_us = status.available;
    status.path = kTracefs;
    if (!status.available) status.error = "tracefs mounted but has no events/ directory";
    return status;
}

}  // namespace loupe::capture
