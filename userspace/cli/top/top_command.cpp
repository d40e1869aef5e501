#include "cli/top/top_command.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include <spdlog/spdlog.h>

#include "cli/top/agent_client.h"
#include "cli/top/top_view.h"
#include "util/terminal_text.h"

namespace loupe::top {
namespace {

// Waits until the in-process agent has sampled resources twice (rates need two samples).
void wait_for_first_data(AgentClient& client) {
    std::string error;
    for (int i = 0; i < 50; ++i) {
        if (auto ready = client.get("/health/ready", error)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2200));
}

int print_once(AgentClient& client, const TopOptions& options) {
    std::string error;
    auto snap = client.snapshot(error);
    if (snap && !options.json) {
        // Request rates and events/s are measured between two snapshots one interval apart.
        std::this_thread::sleep_for(std::chrono::duration<double>(options.interval_seconds));
        snap = client.snapshot(error);
    }
    if (!snap) {
        std::cerr << "loupe top: " << util::terminal_safe(error, util::charset_from_environment())
                  << '\n';
        return 1;
    }
    if (options.json) {
        // ensure_ascii: no byte of a name reaches the terminal raw; JSON readers decode \uXXXX.
        std::cout << snap->raw.dump(2, ' ', true, nlohmann::json::error_handler_t::replace) << '\n';
        return 0;
    }
    PlainOptions plain;
    plain.agent_url = client.base_url();
    plain.thresholds = options.thresholds;
    const int column = column_index(options.sort);
    plain.sort_column = column < 0 ? column_index("RPS") : column;
    plain.rps_span_seconds = client.rate_span_seconds();
    plain.charset = util::charset_from_environment();
    std::cout << render_plain(*snap, plain);
    return 0;
}

}  // namespace

int run_top(const TopOptions& options, const LocalAgentStarter& start_local) {
    auto client = std::make_unique<AgentClient>(options.agent_url);
    std::optional<LocalAgent> local;
    std::string note;
    const bool interactive = !options.once && !options.json && ::isatty(STDOUT_FILENO);
    if (!client->alive() && !options.agent_given && start_local) {
        // No agent here: capture in-process, served on a private loopback port.
        if (::geteuid() != 0)
            std::cerr << "loupe top: no agent at "
                      << util::terminal_safe(options.agent_url, util::charset_from_environment())
                      << " and capturing in-process needs root (or CAP_BPF + CAP_PERFMON)\n";
        if (interactive) spdlog::set_level(spdlog::level::off);  // logs would tear the screen
        local = start_local();
        if (!local) {
            std::cerr << "loupe top: cannot start in-process capture\n";
            return 1;
        }
        client = std::make_unique<AgentClient>(local->url);
        note = "(no agent at " + options.agent_url + ": capturing in-process)";
        wait_for_first_data(*client);
    }
    int status = 0;
    if (!interactive) {
        status = print_once(*client, options);
    } else {
        ViewOptions view;
        view.interval =
            std::chrono::milliseconds(static_cast<int>(options.interval_seconds * 1000));
        view.color = !options.no_color && std::getenv("NO_COLOR") == nullptr;
        view.thresholds = options.thresholds;
        view.note = note;
        status = TopView(*client, view).run();
    }
    if (local && local->stop) local->stop();
    return status;
}

}  // namespace loupe::top
