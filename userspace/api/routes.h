// Every handler the agent serves over HTTP (/metrics, /health/*, /api/v1/*), registered on its
// endpoint's router. They read the agent's state through AgentSource: under the agent's lock,
// as a consistent view, so that no handler knows how the agent runs.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "aggregate/request_metrics.h"
#include "aggregate/slow_operations.h"
#include "alerts/alert_engine.h"
#include "attribution/service_identities.h"
#include "resources/resource_tracker.h"

namespace httplib {
class Server;
}

namespace loupe::api {

// The aggregates the handlers read, valid during AgentSource::read only.
struct StateView {
    const aggregate::RequestMetricsStore& requests;
    const resources::ResourceTracker& resources;
    bool resources_sampled = false;  // resources are null in the API until the first sample
    const resources::NodeResources& node;
    const alerts::AlertEngine& alerts;
    const attribution::ServiceIdentities& identities;
    std::chrono::nanoseconds now{0};      // CLOCK_MONOTONIC
    std::chrono::nanoseconds started{0};  // when the agent started, same clock
    const aggregate::SlowOperationLog* slow_log = nullptr;
};

struct Readiness {
    bool ready = false;          // capture attached and not shutting down
    bool started_up = false;     // start() finished
    bool shutting_down = false;  // SIGTERM received
    std::string capture;         // "attached", or "unavailable: why"
};

// A service's CPU profile as /api/v1/services/{name}/profile serves it.
struct ProfileReply {
    int status = 200;
    std::string content_type;
    std::string body;  // the profile, or a JSON error document
};

class AgentSource {
  public:
    // Runs `fn` with the agent's state locked.
    virtual void read(const std::function<void(const StateView&)>& fn) = 0;
    virtual std::string metrics_text() = 0;
    // /api/v1/agent: how the agent runs (version, hooks, drops, kernel features...).
    virtual nlohmann::json agent_status() = 0;
    virtual Readiness readiness() = 0;
    virtual double uptime_seconds() = 0;
    // The service's CPU profile of the last `seconds`, as pprof, folded or svg.
    virtual ProfileReply service_profile(const std::string& service, int seconds,
                                         const std::string& format) = 0;

  protected:
    ~AgentSource() = default;
};

void register_routes(httplib::Server& routes, AgentSource& agent);

}  // namespace loupe::api
