// `loupe top`: the live view an on-call engineer opens first.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "cli/top/columns.h"

namespace loupe::top {

struct TopOptions {
    std::string agent_url = "http://127.0.0.1:9464";
    bool agent_given = false;  // --agent or LOUPE_AGENT set: never fall back to in-process capture
    double interval_seconds = 1.0;
    bool once = false;
    bool json = false;
    bool no_color = false;
    std::string sort = "RPS";
    Thresholds thresholds;
};

// Capture in this process, for when no agent answers: its URL and what stops it. The agent sits
// above the CLI, so main.cpp provides it.
struct LocalAgent {
    std::string url;
    std::function<void()> stop;
};
// Starts a local agent on a private loopback port; nullopt when it cannot.
using LocalAgentStarter = std::function<std::optional<LocalAgent>()>;

// Returns the process exit status.
int run_top(const TopOptions& options, const LocalAgentStarter& start_local = {});

}  // namespace loupe::top
