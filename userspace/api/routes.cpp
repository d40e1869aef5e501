#include "api/routes.h"

#include <charconv>
#include <ctime>
#include <limits>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "api/service_views.h"
#include "protocols/registry.h"
#include "util/version.h"

namespace loupe::api {
namespace {

// Names come from processes (any user can set bytes like \xff\xfe with prctl) and from request
// paths: invalid UTF-8 is replaced, where dump() would throw and answer 500.
void json_reply(httplib::Response& res, const nlohmann::json& body, int status = 200) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                    "application/json");
}

std::string iso_timestamp() {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

nlohmann::json health_body(AgentSource& agent, const char* status, nlohmann::json checks) {
    return {{"status", status},
            {"timestamp", iso_timestamp()},
            {"uptime", agent.uptime_seconds()},
            {"version", kVersion},
            {"checks", std::move(checks)}};
}

// The "error" of an error reply cpp-httplib made (a path no route takes, a malformed request).
const char* error_text(int status) {
    switch (status) {
        case 400:
            return "bad request";
        case 404:
            return "not found";
        case 405:
            return "method not allowed";
        case 413:
            return "payload too large";
        case 414:
            return "URI too long";
        case 416:
            return "range not satisfiable";
        default:
            return status >= 500 ? "internal error" : "bad request";
    }
}

void add_identity_labels(const attribution::ServiceIdentities& identities,
                         const std::string& service, nlohmann::json& into) {
    // A pod's or container's service: the labels its metrics carry (service_name, k8s_*).
    if (const auto* labels = identities.labels_of(service)) {
        into = nlohmann::json::object();
        for (const auto& [name, value] : *labels)
            into[name] = value;
    }
}

nlohmann::json alerts_json(const StateView& s) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& a : s.alerts.active()) {
        nlohmann::json labels = a.labels;
        if (const auto* identity = s.identities.labels_of(a.service))
            for (const auto& [name, value] : *identity)
                labels[name] = value;
        rows.push_back({{"name", a.rule},
                        {"service_name", a.service},
                        {"state", alerts::state_name(a.state)},
                        // A stale value is not shown as current.
                        {"value", a.no_data ? nlohmann::json(nullptr) : nlohmann::json(a.value)},
                        {"no_data", a.no_data},
                        {"threshold", a.threshold},
                        {"active_since", alerts::iso8601(a.active_since)},
                        {"fired_at", a.state == alerts::AlertState::kFiring
                                         ? nlohmann::json(alerts::iso8601(a.fired_at))
                                         : nlohmann::json(nullptr)},
                        {"labels", labels},
                        {"annotations", a.annotations}});
    }
    return {{"alerts", rows}, {"rules", s.alerts.rules().size()}};
}

}  // namespace

void register_routes(httplib::Server& routes, AgentSource& agent) {
    routes.Get("/metrics", [&agent](const httplib::Request&, httplib::Response& res) {
        res.set_content(agent.metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    });
    auto live = [&agent](const httplib::Request&, httplib::Response& res) {
        json_reply(res, health_body(agent, "ok", nlohmann::json::object()));
    };
    routes.Get("/health", live);
    routes.Get("/health/live", live);
    routes.Get("/health/ready", [&agent](const httplib::Request&, httplib::Response& res) {
        const Readiness r = agent.readiness();
        nlohmann::json checks = {{"http_capture", r.capture}, {"shutting_down", r.shutting_down}};
        json_reply(res, health_body(agent, r.ready ? "ok" : "unavailable", checks),
                   r.ready ? 200 : 503);
    });
    routes.Get("/health/startup", [&agent](const httplib::Request&, httplib::Response& res) {
        const bool done = agent.readiness().started_up;
        json_reply(res, health_body(agent, done ? "ok" : "starting", nlohmann::json::object()),
                   done ? 200 : 503);
    });
    routes.Get("/api/v1/services", [&agent](const httplib::Request&, httplib::Response& res) {
        nlohmann::json rows;
        agent.read([&](const StateView& s) {
            rows =
                services_view(s.requests, s.resources_sampled ? &s.resources.services() : nullptr,
                              s.now, s.started);
            for (auto& row : rows)
                add_identity_labels(s.identities, row["name"].get<std::string>(), row["labels"]);
        });
        for (auto& row : rows)
            if (row["labels"].is_null()) row.erase("labels");
        json_reply(res, {{"services", rows}});
    });
    routes.Get(R"(/api/v1/services/(.+)/endpoints)",
               [&agent](const httplib::Request& req, httplib::Response& res) {
                   nlohmann::json rows;
                   agent.read([&](const StateView& s) {
                       rows = endpoints_view(s.requests, req.matches[1], s.now, s.started);
                   });
                   if (rows.is_null())
                       json_reply(res, {{"error", "unknown service"}}, 404);
                   else
                       json_reply(res, {{"service", req.matches[1]}, {"endpoints", rows}});
               });
    routes.Get(R"(/api/v1/services/(.+)/processes)", [&agent](const httplib::Request& req,
                                                              httplib::Response& res) {
        nlohmann::json rows = nlohmann::json::array();
        agent.read([&](const StateView& s) {
            for (const auto& p : s.resources.processes_of(req.matches[1]))
                rows.push_back({{"pid", p.pid},
                                {"cpu_seconds_total", static_cast<double>(p.totals.cpu_ns) * 1e-9},
                                {"rss_bytes", p.rss_bytes},
                                {"disk_read_bytes_total", p.totals.io_read_bytes},
                                {"disk_write_bytes_total", p.totals.io_write_bytes},
                                {"net_tx_bytes_total", p.totals.net_tx_bytes},
                                {"net_rx_bytes_total", p.totals.net_rx_bytes},
                                {"tcp_retransmits_total", p.totals.tcp_retransmits}});
        });
        json_reply(res, {{"service", req.matches[1]}, {"processes", rows}},
                   rows.empty() ? 404 : 200);
    });
    // The latest slow operations, newest first: ?service=KEY (a service's name as
    // /api/v1/services gives it) and ?limit=N (default and most: the log's `keep`).
    routes.Get("/api/v1/slow", [&agent](const httplib::Request& req, httplib::Response& res) {
        const std::string service = req.get_param_value("service");
        std::size_t limit = std::numeric_limits<std::size_t>::max();
        if (req.has_param("limit")) {
            const std::string text = req.get_param_value("limit");
            std::size_t value = 0;
            const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
            if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() ||
                value == 0) {
                json_reply(res, {{"error", "limit: expected a whole number of at least 1"}}, 400);
                return;
            }
            limit = value;
        }
        nlohmann::json body = {{"slow_operations", nlohmann::json::array()}};
        agent.read([&](const StateView& s) {
            if (!s.slow_log) return;
            body["slow_operations"] = s.slow_log->latest(service, limit);
            nlohmann::json thresholds = nlohmann::json::object();
            for (const auto& protocol : protocols::all_protocols())
                thresholds[std::string(protocol.metrics->system)] =
                    std::chrono::duration<double>(s.slow_log->threshold(protocol.id)).count();
            body["thresholds_seconds"] = thresholds;
        });
        json_reply(res, body);
    });
    routes.Get(R"(/api/v1/services/(.+)/profile)", [&agent](const httplib::Request& req,
                                                            httplib::Response& res) {
        const std::string format =
            req.has_param("format") ? req.get_param_value("format") : "pprof";
        if (format != "pprof" && format != "folded" && format != "svg" && format != "top") {
            json_reply(res, {{"error", "format: expected pprof, folded, svg or top"}}, 400);
            return;
        }
        int seconds = 60;
        if (req.has_param("seconds")) {
            const std::string text = req.get_param_value("seconds");
            std::size_t used = 0;
            try {
                seconds = std::stoi(text, &used);
            } catch (...) {
                used = 0;
            }
            if (used == 0 || used != text.size() || seconds < 1 || seconds > 3600) {
                json_reply(res, {{"error", "seconds: expected a whole number from 1 to 3600"}},
                           400);
                return;
            }
        }
        const ProfileReply reply = agent.service_profile(req.matches[1], seconds, format);
        res.status = reply.status;
        res.set_content(reply.body, reply.content_type);
    });
    routes.Get("/api/v1/alerts", [&agent](const httplib::Request&, httplib::Response& res) {
        nlohmann::json body;
        agent.read([&](const StateView& s) { body = alerts_json(s); });
        json_reply(res, body);
    });
    routes.Get("/api/v1/node", [&agent](const httplib::Request&, httplib::Response& res) {
        nlohmann::json body;
        agent.read([&](const StateView& s) {
            const auto& n = s.node;
            body = {{"cpus", n.cpus},
                    {"cpu_utilization", n.cpu_utilization},
                    {"memory_total_bytes", n.mem_total_bytes},
                    {"memory_used_bytes", n.mem_used_bytes},
                    {"memory_utilization", n.mem_utilization},
                    {"disk_busy", n.disk_busy},
                    {"tcp_retransmits_total", n.tcp_retransmits}};
        });
        json_reply(res, body);
    });
    routes.Get("/api/v1/agent", [&agent](const httplib::Request&, httplib::Response& res) {
        json_reply(res, agent.agent_status());
    });
    routes.set_error_handler([](const httplib::Request&, httplib::Response& res) {
        if (res.body.empty()) json_reply(res, {{"error", error_text(res.status)}}, res.status);
    });
    // A handler that throws is a bug in loupe: the client gets a plain 500, the log the cause
    // (cpp-httplib would put the exception's text in a response header). The path is not
    // logged: it may carry anything a client put there.
    routes.set_exception_handler(
        [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "unknown exception";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            spdlog::error("HTTP {} handler failed: {}", req.method, what);
            json_reply(res, {{"error", "internal error"}}, 500);
        });
}

}  // namespace loupe::api
