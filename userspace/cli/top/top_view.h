// The interactive, full-screen `loupe top` (ncurses).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "cli/top/agent_client.h"
#include "cli/top/columns.h"
#include "cli/top/selection.h"
#include "util/terminal_text.h"

namespace loupe::top {

struct ViewOptions {
    std::chrono::milliseconds interval{1000};
    bool color = true;
    Thresholds thresholds;
    std::string note;  // shown in the header, e.g. "capturing in-process"
};

class TopView {
  public:
    TopView(AgentClient& client, ViewOptions options);
    // Runs until the user quits; returns the exit status.
    int run();

  private:
    enum class Mode { kServices, kDetail, kHelp };

    void refresh_data();
    void draw();
    void draw_header(int width);
    void draw_services(int top, int height, int width);
    void draw_detail(int top, int height, int width);
    void draw_help(int top, int height, int width);
    void draw_footer(int y, int width);
    bool handle_key(int key);  // false = quit
    void move_selection(int delta, int page);
    std::vector<ServiceRow> visible_rows() const;
    // Draws `text` made safe (util::terminal_safe), cut to `width` columns.
    void put(int y, int x, const std::string& text, int width, int attrs = 0);

    AgentClient& client_;
    ViewOptions options_;
    Mode mode_ = Mode::kServices;
    Mode before_help_ = Mode::kServices;
    Snapshot snapshot_;
    bool have_snapshot_ = false;
    std::string error_;
    int sort_column_;
    bool descending_ = true;
    std::string filter_;
    bool editing_filter_ = false;
    std::string filter_draft_;
    Selection selection_;
    int scroll_ = 0;
    bool paused_ = false;
    std::string detail_service_;
    Endpoints endpoints_;  // the drilled-into service's routes and database operations
    std::vector<ProcessRow> processes_;
    // The drill-down's lower panel: the service's processes, or (key s) its latest slow
    // operations.
    bool show_slow_ = false;
    std::vector<SlowRow> slow_;
    std::vector<HotFunction> hot_functions_;
    std::chrono::steady_clock::time_point next_refresh_{};
    util::TerminalCharset charset_ = util::TerminalCharset::kAscii;
};

}  // namespace loupe::top
