#include "cli/top/top_view.h"

#include <locale.h>
#include <ncurses.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace loupe::top {
namespace {

constexpr int kAlarmPair = 1;
constexpr int kGoodPair = 2;
constexpr int kKeyEscape = 27;

}  // namespace

TopView::TopView(AgentClient& client, ViewOptions options)
    : client_(client), options_(std::move(options)), sort_column_(column_index("RPS")) {}

// Every character drawn goes through here: text from the system is made safe first.
void TopView::put(int y, int x, const std::string& text, int width, int attrs) {
    if (width <= 0 || y < 0 || y >= LINES) return;
    const std::string safe = util::terminal_safe(text, charset_);
    const std::string_view visible =
        util::truncate_to_columns(safe, static_cast<std::size_t>(width));
    if (attrs) attron(attrs);
    mvaddnstr(y, x, visible.data(), static_cast<int>(visible.size()));
    if (attrs) attroff(attrs);
}

std::vector<ServiceRow> TopView::visible_rows() const {
    auto rows = filter_services(snapshot_.services, filter_);
    sort_services(rows, sort_column_, descending_);
    return rows;
}

void TopView::refresh_data() {
    std::string error;
    if (auto snap = client_.snapshot(error)) {
        snapshot_ = std::move(*snap);
        have_snapshot_ = true;
        error_.clear();
    } else {
        error_ = error;  // keep showing the last data, flagged as stale
    }
    if (mode_ == Mode::kDetail && error_.empty()) {
        endpoints_ = {};
        processes_.clear();
        hot_functions_.clear();
        // A service without HTTP or database traffic, or without live processes, answers 404.
        std::string ignored;
        if (auto endpoints = client_.endpoints(detail_service_, ignored))
            endpoints_ = std::move(*endpoints);
        if (auto processes = client_.processes(detail_service_, ignored))
            processes_ = std::move(*processes);
        slow_.clear();
        if (show_slow_)
            if (auto slow = client_.slow(detail_service_, 50, ignored)) slow_ = std::move(*slow);
        if (auto hot = client_.hot_functions(detail_service_, ignored))
            hot_functions_ = std::move(*hot);
    }
}

void TopView::draw_header(int width) {
    const auto& n = snapshot_.node;
    std::string line = fmt::format("loupe top  {}  cpu {}  mem {}  events/s {:.0f}  drops {}  ",
                                   client_.base_url(), format_percent(n.cpu_utilization),
                                   format_percent(n.memory_utilization),
                                   snapshot_.agent.events_per_second, snapshot_.agent.drops);
    put(0, 0, line, width, A_BOLD);
    const std::string alerts = fmt::format("alerts {}", snapshot_.agent.alerts_firing);
    const int x = static_cast<int>(std::min<std::size_t>(
        util::text_columns(util::terminal_safe(line, charset_)), static_cast<std::size_t>(width)));
    put(0, x, alerts, width - x,
        snapshot_.agent.alerts_firing
            ? (options_.color ? COLOR_PAIR(kAlarmPair) | A_BOLD : A_REVERSE)
            : 0);
    std::string status;
    if (!error_.empty())
        status = "disconnected, retrying: " + error_;
    else if (!have_snapshot_)
        status = "connecting...";
    else
        status = fmt::format(
            "{}{}{}  {}{}",
            services_count(visible_rows().size(), filter_services(snapshot_.services, "").size(),
                           !filter_.empty()),
            paused_ ? "  [paused]" : "", filter_.empty() ? "" : "  filter: " + filter_,
            windows_legend(client_.rate_span_seconds()),
            options_.note.empty() ? "" : "  " + options_.note);
    put(1, 0, status, width,
        error_.empty() ? 0 : (options_.color ? COLOR_PAIR(kAlarmPair) | A_BOLD : A_REVERSE));
}

void TopView::draw_services(int top, int height, int width) {
    const auto& cols = service_columns();
    int x = 0;
    for (std::size_t i = 0; i < cols.size() && x < width; ++i) {
        std::string title = cols[i].title;
        if (static_cast<int>(i) == sort_column_) title += descending_ ? "v" : "^";
        put(top, x, pad(title, cols[i].width, cols[i].numeric) + " ", width - x, A_REVERSE);
        x += cols[i].width + 1;
    }
    if (x < width)
        put(top, x, std::string(static_cast<std::size_t>(width - x), ' '), width - x, A_REVERSE);
    const auto rows = visible_rows();
    const int body = height - 1;
    const int at = std::max(0, selection_.place(rows));
    if (at < scroll_) scroll_ = at;
    if (at >= scroll_ + body) scroll_ = at - body + 1;
    scroll_ = std::max(0, std::min(scroll_, std::max(0, static_cast<int>(rows.size()) - body)));
    for (int line = 0; line < body && scroll_ + line < static_cast<int>(rows.size()); ++line) {
        const auto& r = rows[static_cast<std::size_t>(scroll_ + line)];
        const bool selected = scroll_ + line == at;
        int cx = 0;
        for (const auto& c : cols) {
            if (cx >= width) break;
            std::string cell = util::terminal_safe(c.text(r), charset_);
            const bool alarm = c.alarming && c.alarming(r, options_.thresholds);
            if (alarm && !options_.color) cell += "!";
            int attrs = selected ? A_REVERSE : 0;
            if (alarm && options_.color) attrs |= COLOR_PAIR(kAlarmPair) | A_BOLD;
            put(top + 1 + line, cx, pad(cell, c.width, c.numeric) + " ", width - cx, attrs);
            cx += c.width + 1;
        }
    }
}

void TopView::draw_detail(int top, int height, int width) {
    const auto safe = [&](const std::string& text) { return util::terminal_safe(text, charset_); };
    const ServiceRow* row = nullptr;
    for (const auto& r : snapshot_.services)
        if (r.name == detail_service_) row = &r;
    put(top, 0,
        row ? fmt::format("{}: {} processes, CPU {:.1f}%, RSS {}, disk r/w {} {}, net rx/tx {} {}, "
                          "retransmits {:.0f}",
                          detail_service_, row->processes, row->cpu_cores * 100,
                          format_bytes(row->rss_bytes), format_rate(row->disk_read_bps),
                          format_rate(row->disk_write_bps), format_rate(row->net_rx_bps),
                          format_rate(row->net_tx_bps), row->retransmits)
            : detail_service_ + ": gone",
        width, A_BOLD);
    const auto& routes = endpoints_.routes;
    const auto& databases = endpoints_.databases;
    int y = top + 2;
    // Routes (and database operations, when there are any) share the upper two thirds.
    const int upper = std::max(1, (height - 4) * 2 / 3);
    if (!routes.empty() || databases.empty()) {
        put(y++, 0,
            fmt::format("{:<7}{:<8}{:<32}{:>8}{:>7}{:>9}{:>9}{:>9}  {}", "SIDE", "METHOD", "ROUTE",
                        "RPS", "ERR%", "P50", "P95", "P99", "STATUS"),
            width, A_REVERSE);
        const int route_lines = databases.empty() ? upper : std::max(1, upper / 2 - 1);
        for (int i = 0; i < static_cast<int>(routes.size()) && i < route_lines; ++i) {
            const auto& r = routes[static_cast<std::size_t>(i)];
            const bool alarm = (r.p95 && *r.p95 > options_.thresholds.p95_seconds) ||
                               r.error_ratio > options_.thresholds.error_ratio;
            // Cells are made safe before padding, so that padding counts what is drawn.
            std::string line =
                pad(safe(r.side), 7, false) + pad(safe(r.method), 8, false) +
                pad(safe(r.route), 31, false) + " " + pad(format_rps(r.rps), 8, true) +
                pad(format_percent(r.error_ratio), 7, true) + pad(format_seconds(r.p50), 9, true) +
                pad(format_seconds(r.p95), 9, true) + pad(format_seconds(r.p99), 9, true) + "  " +
                safe(r.status_mix);
            if (alarm && !options_.color) line += " !";
            put(y++, 0, line, width, alarm && options_.color ? COLOR_PAIR(kAlarmPair) : 0);
        }
        if (routes.empty()) put(y++, 0, "(no HTTP traffic seen for this service)", width);
    }
    // Database and cache operations: the calls this service makes, or serves as a database.
    if (!databases.empty()) {
        if (!routes.empty()) ++y;
        put(y++, 0,
            fmt::format("{:<7}{:<7}{:<24}{:>8}{:>7}{:>9}{:>9}{:>9}{:>7}  {}", "SIDE", "SYSTEM",
                        "OPERATION", "OPS/S", "ERR%", "P50", "P95", "P99", "HIT%", "ERRORS"),
            width, A_REVERSE);
        const int last = std::max(y + 1, top + 2 + upper);
        for (const auto& d : databases) {
            if (y >= last) break;
            const bool alarm = (d.p95 && *d.p95 > options_.thresholds.db_p95_seconds) ||
                               d.error_ratio > options_.thresholds.error_ratio;
            std::string line =
                pad(safe(d.side), 7, false) + pad(safe(d.system), 7, false) +
                pad(safe(d.operation), 23, false) + " " + pad(format_rps(d.rps), 8, true) +
                pad(format_percent(d.error_ratio), 7, true) + pad(format_seconds(d.p50), 9, true) +
                pad(format_seconds(d.p95), 9, true) + pad(format_seconds(d.p99), 9, true) +
                pad(format_ratio(d.cache_hit_ratio), 7, true) + "  " + safe(d.error_mix);
            if (alarm && !options_.color) line += " !";
            put(y++, 0, line, width, alarm && options_.color ? COLOR_PAIR(kAlarmPair) : 0);
        }
    }
    // Peers: the servers this service calls, and with which routes or operations.
    std::map<std::string, std::string> peers;
    auto called_with = [&](const std::string& peer, const std::string& what) {
        auto& called = peers[peer];
        called += (called.empty() ? "" : ", ") + what;
    };
    for (const auto& r : routes)
        for (const auto& peer : r.peers)
            called_with(peer, r.method + " " + r.route);
    for (const auto& d : databases)
        for (const auto& peer : d.peers)
            called_with(peer, d.system + " " + d.operation);
    if (!peers.empty() && y + 2 < top + height - 3) {  // room for the title and a peer
        ++y;
        put(y++, 0, fmt::format("{:<24}{}", "CALLS TO (PEER)", "ROUTES, OPERATIONS"), width,
            A_REVERSE);
        for (const auto& [peer, called] : peers) {
            if (y >= top + height - 3) break;
            put(y++, 0, pad(safe(peer), 23, false) + " " + called, width);
        }
    }
    ++y;
    if (show_slow_) {
        // Newest first; the time of day in UTC is enough to tell them apart.
        put(y++, 0,
            fmt::format("{:<13}{:<7}{:<7}{:>9}  {:<14}{:<10}{}", "TIME (UTC)", "SIDE", "PROTO",
                        "DURATION", "OPERATION", "STATUS", "ROUTE / STATEMENT  PEER"),
            width, A_REVERSE);
        for (const auto& s : slow_) {
            if (y >= top + height) break;
            const std::string clock = s.time.size() >= 23 ? s.time.substr(11, 12) : s.time;
            put(y++, 0,
                pad(safe(clock), 13, false) + pad(safe(s.side), 7, false) +
                    pad(safe(s.protocol), 7, false) +
                    pad(format_seconds(s.duration_seconds), 9, true) + "  " +
                    pad(safe(s.operation), 13, false) + " " + pad(safe(s.status), 9, false) + " " +
                    safe(s.what) + (s.peer.empty() ? "" : "  " + safe(s.peer)),
                width);
        }
        if (slow_.empty())
            put(y++, 0, "(no slow operation of this service in the agent's latest; s: processes)",
                width);
        return;
    }
    put(y++, 0, fmt::format("{:>8}{:>12}{:>10}", "PID", "CPU TIME", "RSS"), width, A_REVERSE);
    for (const auto& p : processes_) {
        if (y >= top + height) break;
        put(y++, 0,
            fmt::format("{:>8}{:>11.2f}s{:>10}", p.pid, p.cpu_seconds, format_bytes(p.rss_bytes)),
            width);
    }
    if (!hot_functions_.empty() && y + 2 < top + height) {
        ++y;
        put(y++, 0,
            fmt::format("{:>7}{:>8}  {}", "SELF%", "TOTAL%", "HOTTEST FUNCTIONS (CPU, 60 s)"),
            width, A_REVERSE);
        for (const auto& f : hot_functions_) {
            if (y >= top + height) break;
            put(y++, 0,
                fmt::format("{:>6.1f}%{:>7.1f}%  {} ({})", f.self_share * 100, f.total_share * 100,
                            safe(f.function), safe(f.module)),
                width);
        }
    }
}

void TopView::draw_help(int top, int height, int width) {
    static const char* kHelp[] = {
        "loupe top - keys",
        "",
        "  Up/Down, PgUp/PgDn, Home/End   move",
        "  Enter                          drill into the selected service (routes, database",
        "                                 operations, peers, processes, hottest functions)",
        "  Esc, Left, Backspace           back",
        "  s                              drill-down: the latest slow operations instead of the",
        "                                 processes (again: back to the processes)",
        "  < >                            sort by the previous / next column",
        "  i                              invert the sort order",
        "  R E L D P M N                  sort by RPS, errors, p95, database p95, CPU, memory, "
        "name",
        "  /                              filter services by name (Enter applies, Esc cancels)",
        "  p                              pause / resume refreshing",
        "  ?                              this help (any key returns)",
        "  q                              quit",
        "",
        "Highlighted (or marked '!' without colour): p95 over the SLO, database p95 over its SLO,",
        "error rates over the budget.",
        "RPS is the current rate: requests counted between refreshes over the last ~3 s (or one",
        "refresh interval when longer); '-' until two refreshes were seen. ERR% and P50/P95/P99",
        "are over the last minute. NO_COLOR disables colour.",
        "DB/S, DB ERR, DB P95, HIT%: the service's database and cache operations (its calls, or",
        "those it serves as a database): current rate as RPS; over the last minute the error",
        "ratio, the highest p95 of its operations, and the share of cache lookups that hit.",
    };
    int y = top;
    for (const char* line : kHelp) {
        if (y >= top + height) break;
        put(y++, 0, line, width);
    }
}

void TopView::draw_footer(int y, int width) {
    std::string text = editing_filter_ ? "filter: " + filter_draft_ + "_"
                       : mode_ == Mode::kDetail
                           ? (show_slow_ ? "q quit  ? help  Esc back  s processes  p pause"
                                         : "q quit  ? help  Esc back  s slow operations  p pause")
                           : "q quit  ? help  Enter drill  / filter  < > sort  p pause";
    put(y, 0, pad(text, width, false), width, A_REVERSE);
}

void TopView::draw() {
    erase();
    const int width = COLS, height = LINES;
    draw_header(width);
    const int body_top = 3, body_height = std::max(1, height - body_top - 1);
    if (mode_ == Mode::kServices)
        draw_services(body_top - 1, body_height + 1, width);
    else if (mode_ == Mode::kDetail)
        draw_detail(body_top - 1, body_height + 1, width);
    else
        draw_help(body_top - 1, body_height + 1, width);
    draw_footer(height - 1, width);
    refresh();
}

void TopView::move_selection(int delta, int page) {
    selection_.move(visible_rows(), delta * (page ? std::max(1, LINES - 5) : 1));
}

bool TopView::handle_key(int key) {
    if (editing_filter_) {
        if (key == '\n' || key == KEY_ENTER) {
            filter_ = filter_draft_;
            editing_filter_ = false;
        } else if (key == kKeyEscape) {
            editing_filter_ = false;
        } else if (key == KEY_BACKSPACE || key == 127 || key == 8) {
            if (!filter_draft_.empty()) filter_draft_.pop_back();
        } else if (key >= 32 && key < 127) {
            filter_draft_ += static_cast<char>(key);
        }
        return true;
    }
    if (mode_ == Mode::kHelp) {
        if (key == 'q') return false;
        mode_ = before_help_;
        return true;
    }
    const int columns = static_cast<int>(service_columns().size());
    switch (key) {
        case 'q':
            return false;
        case '?':
        case KEY_F(1):
            before_help_ = mode_;
            mode_ = Mode::kHelp;
            break;
        case 'p':
            paused_ = !paused_;
            break;
        case '/':
            editing_filter_ = true;
            filter_draft_ = filter_;
            break;
        case KEY_UP:
        case 'k':
            move_selection(-1, 0);
            break;
        case KEY_DOWN:
        case 'j':
            move_selection(1, 0);
            break;
        case KEY_PPAGE:
            move_selection(-1, 1);
            break;
        case KEY_NPAGE:
            move_selection(1, 1);
            break;
        case KEY_HOME:
        case 'g':
            selection_.select_index(visible_rows(), 0);
            break;
        case KEY_END:
        case 'G': {
            const auto rows = visible_rows();
            selection_.select_index(rows, static_cast<int>(rows.size()) - 1);
            break;
        }
        case '<':
            sort_column_ = (sort_column_ + columns - 1) % columns;
            break;
        case '>':
        case KEY_F(6):
            sort_column_ = (sort_column_ + 1) % columns;
            break;
        case 'i':
            descending_ = !descending_;
            break;
        case 'R':
            sort_column_ = column_index("RPS");
            descending_ = true;
            break;
        case 'E':
            sort_column_ = column_index("ERR%");
            descending_ = true;
            break;
        case 'L':
            sort_column_ = column_index("P95");
            descending_ = true;
            break;
        case 'D':
            sort_column_ = column_index("DB P95");
            descending_ = true;
            break;
        case 'P':
            sort_column_ = column_index("CPU%");
            descending_ = true;
            break;
        case 'M':
            sort_column_ = column_index("RSS");
            descending_ = true;
            break;
        case 's':
            if (mode_ == Mode::kDetail) {
                show_slow_ = !show_slow_;
                refresh_data();
            }
            break;
        case 'N':
            sort_column_ = column_index("SERVICE");
            descending_ = false;
            break;
        case '\n':
        case KEY_ENTER:
        case KEY_RIGHT:
            // The service highlighted, wherever the last refresh sorted it.
            if (mode_ == Mode::kServices && selection_.place(visible_rows()) >= 0) {
                detail_service_ = selection_.service();
                mode_ = Mode::kDetail;
                refresh_data();
            }
            break;
        case kKeyEscape:
        case KEY_LEFT:
        case KEY_BACKSPACE:
        case 127:
            if (mode_ == Mode::kDetail)
                mode_ = Mode::kServices;
            else if (!filter_.empty())
                filter_.clear();
            break;
        default:
            break;
    }
    return true;
}

int TopView::run() {
    // ncurses draws UTF-8 only under a UTF-8 LC_CTYPE. Set for this thread alone: an in-process
    // agent's threads keep the "C" locale they were written for.
    const locale_t user = ::newlocale(LC_CTYPE_MASK, "", static_cast<locale_t>(0));
    const locale_t before = user ? ::uselocale(user) : static_cast<locale_t>(0);
    charset_ = util::charset_from_environment();
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    timeout(100);  // poll keys every 100 ms, so refreshes and resizes are never late
    if (options_.color && has_colors()) {
        start_color();
        use_default_colors();
        init_pair(kAlarmPair, COLOR_RED, -1);
        init_pair(kGoodPair, COLOR_GREEN, -1);
    } else {
        options_.color = false;
    }
    bool running = true;
    while (running) {
        const auto now = std::chrono::steady_clock::now();
        if (!paused_ && now >= next_refresh_) {
            refresh_data();
            next_refresh_ = now + options_.interval;
        }
        draw();
        const int key = getch();
        if (key == KEY_RESIZE) continue;  // ncurses has updated LINES/COLS: redraw
        if (key != ERR) running = handle_key(key);
    }
    endwin();
    if (user) {
        ::uselocale(before);
        ::freelocale(user);
    }
    return 0;
}

}  // namespace loupe::top
