// `loupe top`: the live view an on-call engineer opens first.
#pragma once

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

// Returns the process exit status.
int run_top(const TopOptions& options);

}  // namespace loupe::top
