#include "agent/agent_config.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "capture/hook_set.h"
#include "util/suggest.h"
#include "util/url.h"

namespace loupe::agent {
namespace {

std::string write_temp(const std::string& text) {
    char path[] = "/tmp/loupe-config-XXXXXX";
    const int fd = mkstemp(path);
    close(fd);
    std::ofstream(path) << text;
    return path;
}

TEST(AgentConfig, LoadsEveryKey) {
    const auto path = write_temp(
        "listen: 0.0.0.0:9999\nlog_format: json\npid: [1, 2]\ncomm: nginx\nport: [80, 443]\n"
        "max_series: 50\nmax_routes_per_service: 7\nmax_connections: 9\nring_buffer_bytes: "
        "1048576\n"
        "service_names: {python3: checkout}\n"
        "disable_hooks: [sched_switch, sys_enter_write]\n"
        "kubernetes: on\nk8s_node_name: node-7\nk8s_pods_url: https://10.0.0.1:10250/pods\n"
        "k8s_token_file: /t\nk8s_ca_file: /c\nk8s_refresh_seconds: 30\n");
    AgentConfig c;
    EXPECT_FALSE(load_config_file(path, c));
    EXPECT_EQ(c.listen, "0.0.0.0:9999");
    EXPECT_EQ(c.log_format, "json");
    EXPECT_EQ(c.pids, (std::vector<std::uint32_t>{1, 2}));
    EXPECT_EQ(c.comms, (std::vector<std::string>{"nginx"}));
    EXPECT_EQ(c.ports, (std::vector<std::uint16_t>{80, 443}));
    EXPECT_EQ(c.max_series, 50u);
    EXPECT_EQ(c.max_routes_per_service, 7u);
    EXPECT_EQ(c.service_names.at("python3"), "checkout");
    EXPECT_EQ(c.disabled_hooks, (std::vector<std::string>{"sched_switch", "sys_enter_write"}));
    EXPECT_EQ(c.kubernetes.mode, "on");
    EXPECT_EQ(c.kubernetes.node_name, "node-7");
    EXPECT_EQ(c.kubernetes.pods_url, "https://10.0.0.1:10250/pods");
    EXPECT_EQ(c.kubernetes.token_file, "/t");
    EXPECT_EQ(c.kubernetes.ca_file, "/c");
    EXPECT_EQ(c.kubernetes.refresh_seconds, 30u);
    std::remove(path.c_str());
}

TEST(HookSelection, MatchesWholeNamesWithOrWithoutTheirGroup) {
    const std::vector<std::string> disabled = {"sched_switch", "sys_enter_write"};
    EXPECT_TRUE(capture::hook_disabled(disabled, "sched_switch"));
    EXPECT_TRUE(capture::hook_disabled(disabled, "syscalls/sys_enter_write"));
    EXPECT_FALSE(capture::hook_disabled(disabled, "syscalls/sys_enter_writev"));
    EXPECT_FALSE(capture::hook_disabled(disabled, "sched_switch_extra"));
    EXPECT_FALSE(capture::hook_disabled({}, "sched_switch"));
}

TEST(AgentConfig, ErrorsNameFileLineAndKey) {
    AgentConfig c;
    auto path = write_temp("listen: 127.0.0.1:1\nmax_serie: 5\n");
    auto err = load_config_file(path, c);
    ASSERT_TRUE(err);
    EXPECT_NE(err->find(path + ":2: unknown key 'max_serie'"), std::string::npos) << *err;
    std::remove(path.c_str());

    path = write_temp("max_series: lots\n");
    err = load_config_file(path, c);
    ASSERT_TRUE(err);
    EXPECT_NE(err->find(":1: invalid value for 'max_series'"), std::string::npos) << *err;
    std::remove(path.c_str());

    path = write_temp("listen: [unclosed\n");
    err = load_config_file(path, c);
    ASSERT_TRUE(err);
    EXPECT_NE(err->find(path + ":"), std::string::npos) << *err;
    std::remove(path.c_str());

    err = load_config_file("/nonexistent/loupe.yaml", c);
    ASSERT_TRUE(err);
    EXPECT_NE(err->find("cannot read"), std::string::npos);
}

// The error load_config_file gives for `yaml`, "" when it loads.
std::string config_error(const std::string& yaml, std::string* path_out = nullptr) {
    const auto path = write_temp(yaml);
    AgentConfig c;
    const auto error = load_config_file(path, c);
    std::remove(path.c_str());
    if (path_out) *path_out = path;
    return error.value_or("");
}

TEST(AgentConfig, ValuesOutOfRangeStopWithFileLineAndWhatWasExpected) {
    std::string path;
    const auto page = std::to_string(::sysconf(_SC_PAGESIZE));
    std::string error = config_error("listen: 127.0.0.1:1\nring_buffer_bytes: 3000\n", &path);
    EXPECT_EQ(error,
              path + ":2: invalid value for 'ring_buffer_bytes': expected a power of two from " +
                  page + " (the page size) to 2147483648 bytes, such as 4194304, got '3000'");
    EXPECT_NE(config_error("ring_buffer_bytes: 2048\n").find("expected a power of two"),
              std::string::npos);
    EXPECT_NE(config_error("ring_buffer_bytes: 4294967296\n").find("expected a power of two"),
              std::string::npos);
    EXPECT_EQ(config_error("ring_buffer_bytes: 1048576\n"), "");

    error = config_error("max_series: 0\n", &path);
    EXPECT_EQ(error,
              path +
                  ":1: invalid value for 'max_series': expected a whole number of at least 1, "
                  "got '0'");
    for (const char* key : {"max_routes_per_service", "max_connections", "k8s_refresh_seconds"})
        EXPECT_NE(
            config_error(std::string(key) + ": 0\n")
                .find(":1: invalid value for '" + std::string(key) + "': expected a whole number"),
            std::string::npos)
            << key;
    EXPECT_NE(config_error("max_series: -5\n").find("expected a whole number of at least 1"),
              std::string::npos);

    EXPECT_NE(config_error("listen: 9464\n")
                  .find(":1: invalid value for 'listen': expected "
                        "HOST:PORT"),
              std::string::npos);
    EXPECT_NE(config_error("k8s_pods_url: kubelet:10250/pods\n")
                  .find("invalid value for 'k8s_pods_url': expected an http:// or https:// URL"),
              std::string::npos);
    EXPECT_NE(config_error("log_level: loud\n")
                  .find(":1: invalid value for 'log_level': expected trace, debug, info, warn, "
                        "error, critical or off, got 'loud'"),
              std::string::npos);
    EXPECT_NE(config_error("log_format: xml\n").find("expected text or json, got 'xml'"),
              std::string::npos);
}

TEST(AgentConfig, BadConversionsSayWhatWasExpected) {
    EXPECT_NE(config_error("\n\nmax_series: lots\n")
                  .find(":3: invalid value for 'max_series': expected a whole number of at least "
                        "1, got 'lots'"),
              std::string::npos);
    EXPECT_NE(config_error("port: [80, 70000]\n")
                  .find(":1: invalid value in 'port': expected a port number (1-65535) or a list "
                        "of them, got '70000'"),
              std::string::npos);
    EXPECT_NE(config_error("port:\n  - 80\n  - 0\n")
                  .find(":3: invalid value in 'port': expected a port number (1-65535) or a list "
                        "of them, got '0'"),
              std::string::npos);
    EXPECT_NE(config_error("pid: [1, x]\n")
                  .find(":1: invalid value in 'pid': expected a process id or a list of them, got "
                        "'x'"),
              std::string::npos);
    EXPECT_NE(config_error("pid: {a: 1}\n")
                  .find("'pid': expected a process id or a list of them, got 'not a single "
                        "value'"),
              std::string::npos);
    EXPECT_NE(config_error("service_names: [a, b]\n")
                  .find("expected a mapping of process names to service names, got a list"),
              std::string::npos);
    EXPECT_NE(config_error("kubernetes: maybe\n").find("expected auto, on or off, got 'maybe'"),
              std::string::npos);
    EXPECT_NE(config_error("max_serie: 5\n")
                  .find("unknown key 'max_serie' (did you mean "
                        "max_series?)"),
              std::string::npos);
    // Alert rules: the field's type.
    EXPECT_NE(config_error("alerting:\n  rules:\n    - name: A\n      signal: latency_p95\n"
                           "      above: fast\n")
                  .find(":5: invalid value for 'above': expected a number"),
              std::string::npos);
    EXPECT_NE(config_error("alerting:\n  default_rules: maybe\n")
                  .find(":2: invalid value for 'default_rules': expected true or false"),
              std::string::npos);
}

TEST(AgentConfig, AlertingUrlsAndRuleNamesAreChecked) {
    std::string path;
    std::string error = config_error("alerting:\n  alertmanager_url: \"not a url\"\n", &path);
    EXPECT_EQ(error,
              path +
                  ":2: invalid value for 'alertmanager_url': expected an http:// or https:// "
                  "URL such as http://HOST:PORT (without spaces or control characters), got "
                  "'not a url'");
    EXPECT_NE(config_error("alerting:\n  webhook_url: ftp://x/hook\n")
                  .find(":2: invalid value for 'webhook_url': expected an http:// or https://"),
              std::string::npos);
    EXPECT_EQ(config_error("alerting:\n  webhook_url: \"\"\n  alertmanager_url: "
                           "http://127.0.0.1:9093\n"),
              "");
    const std::string rule =
        "    - name: SlowCheckout\n      signal: latency_p95\n      above: 0.5\n";
    error = config_error("alerting:\n  rules:\n" + rule + rule, &path);
    EXPECT_EQ(error, path + ":6: a second rule named 'SlowCheckout' (the first is at line 3)");
}

TEST(AgentConfig, UnreadableFilesSayWhy) {
    AgentConfig c;
    EXPECT_EQ(load_config_file("/nonexistent/loupe.yaml", c).value_or(""),
              "/nonexistent/loupe.yaml: cannot read the config file: No such file or directory");
    EXPECT_EQ(load_config_file("/tmp", c).value_or(""),
              "/tmp: cannot read the config file: it is a directory, expected a YAML file");
}

TEST(AgentConfig, FlagAndEnvironmentChecksAgreeWithTheFile) {
    EXPECT_FALSE(check_ring_buffer_bytes("4194304"));
    EXPECT_TRUE(check_ring_buffer_bytes("3000"));
    EXPECT_TRUE(check_ring_buffer_bytes("4M"));
    EXPECT_FALSE(check_port("443"));
    EXPECT_TRUE(check_port("0"));
    EXPECT_TRUE(check_port("65536"));
    EXPECT_FALSE(check_pid("4194304"));
    EXPECT_TRUE(check_pid("-1"));
    EXPECT_FALSE(check_positive_count("1"));
    EXPECT_TRUE(check_positive_count("0"));
    EXPECT_TRUE(check_positive_count(""));
    EXPECT_FALSE(check_listen("[::1]:0"));
    EXPECT_TRUE(check_listen("localhost"));
    EXPECT_FALSE(check_url_or_empty(""));
    EXPECT_FALSE(check_url_or_empty("https://10.0.0.1:10250/pods"));
    EXPECT_TRUE(check_url_or_empty("10.0.0.1:10250/pods"));
}

TEST(Urls, HttpUrlsAreCheckedPartByPart) {
    for (const char* good : {"http://a", "http://127.0.0.1:9093", "https://am.monitoring.svc/x/y",
                             "http://[::1]:9093/", "http://host:1/hook?x=y"})
        EXPECT_FALSE(util::http_url_problem(good)) << good;
    const std::pair<const char*, const char*> bad[] = {
        {"not a url", "without spaces"},
        {"alertmanager:9093", "such as http://HOST:PORT"},
        {"http://", "no host"},
        {"http://:9093", "no host"},
        {"http://host:", "no port after ':'"},
        {"http://host:99999", "from 1 to 65535"},
        {"http://host:0", "from 1 to 65535"},
        {"http://user:pw@host:9093", "no user or password"},
        {"http://[::1", "unclosed '['"},
        {"http://host\n", "control characters"},
    };
    for (const auto& [url, why] : bad) {
        const auto problem = util::http_url_problem(url);
        ASSERT_TRUE(problem) << url;
        EXPECT_NE(problem->find(why), std::string::npos) << url << ": " << *problem;
    }
}

TEST(Suggestions, NearFlagsAndNames) {
    const std::vector<std::string> flags = {
        "--listen",          "--pid",  "--port", "--comm", "--max-series",
        "--max-connections", "--help", "-h"};
    EXPECT_EQ(util::edit_distance("lisen", "listen"), 1u);
    EXPECT_EQ(util::edit_distance("lsiten", "listen"), 1u);  // a swap is one edit
    EXPECT_EQ(util::edit_distance("", "abc"), 3u);
    EXPECT_EQ(util::did_you_mean("--lisen", flags), " (did you mean --listen?)");
    EXPECT_EQ(util::did_you_mean("-listen", flags), " (did you mean --listen?)");
    EXPECT_EQ(util::did_you_mean("--max-serie", flags), " (did you mean --max-series?)");
    EXPECT_EQ(util::did_you_mean("--pod", flags), " (did you mean --pid?)");
    EXPECT_EQ(util::did_you_mean("--ab", {"--abc", "--abd", "--xyz"}),
              " (did you mean --abc or --abd?)");
    EXPECT_EQ(util::did_you_mean("--verbose", flags), "");
    EXPECT_EQ(util::did_you_mean("--x", flags), "");
    EXPECT_EQ(util::near_names("agnet", {"agent", "top", "doctor"}),
              (std::vector<std::string>{"agent"}));
}

TEST(AgentConfig, ParsesListen) {
    std::string host;
    int port = 0;
    EXPECT_TRUE(parse_listen("127.0.0.1:9464", host, port));
    EXPECT_EQ(host, "127.0.0.1");
    EXPECT_EQ(port, 9464);
    EXPECT_TRUE(parse_listen("[::1]:80", host, port));
    EXPECT_EQ(host, "::1");
    EXPECT_FALSE(parse_listen("9464", host, port));
    EXPECT_TRUE(parse_listen("h:0", host, port));  // 0: any free port
    EXPECT_EQ(port, 0);
    EXPECT_FALSE(parse_listen("h:99999", host, port));
    EXPECT_FALSE(parse_listen("h:12ab", host, port));
}

}  // namespace
}  // namespace loupe::agent

namespace loupe::agent {
namespace {

TEST(AgentConfig, OtlpKeys) {
    const auto path = write_temp(
        "otlp_endpoint: http://collector:4318\n"
        "otlp_traces_endpoint: https://tempo:4318/v1/traces\n"
        "otlp_headers: {api-key: abc}\n"
        "otlp_resource_attributes: {deployment.environment.name: prod}\n"
        "otlp_metrics: false\notlp_compression: none\notlp_sampling_ratio: 0.25\n"
        "otlp_always_keep_over_ms: 500\notlp_metrics_interval_seconds: 30\n"
        "otlp_max_queued_spans: 1000\n"
        "otlp_histograms: explicit\notlp_certificate: /etc/otel/ca.pem\n");
    AgentConfig c;
    EXPECT_FALSE(load_config_file(path, c));
    EXPECT_EQ(c.otlp.endpoint, "http://collector:4318");
    EXPECT_EQ(otlp::traces_url(c.otlp), "https://tempo:4318/v1/traces");
    EXPECT_EQ(otlp::metrics_url(c.otlp), "");
    ASSERT_EQ(c.otlp.headers.size(), 1u);
    EXPECT_EQ(c.otlp.headers[0].second, "abc");
    EXPECT_EQ(c.otlp.resource_attributes.size(), 1u);
    EXPECT_FALSE(c.otlp.gzip);
    EXPECT_DOUBLE_EQ(c.otlp.sampling_ratio, 0.25);
    EXPECT_EQ(c.otlp.always_keep_over, std::chrono::milliseconds(500));
    EXPECT_EQ(c.otlp.metrics_interval, std::chrono::seconds(30));
    EXPECT_EQ(c.otlp.max_queued_spans, 1000u);
    EXPECT_FALSE(c.otlp.exponential_histograms);
    EXPECT_EQ(c.otlp.certificate, "/etc/otel/ca.pem");
    std::remove(path.c_str());

    const auto form = write_temp("otlp_histograms: native\n");
    AgentConfig e;
    const auto form_error = load_config_file(form, e);
    ASSERT_TRUE(form_error.has_value());
    EXPECT_NE(form_error->find("expected exponential or explicit"), std::string::npos);
    std::remove(form.c_str());

    const auto bad = write_temp("listen: 127.0.0.1:1\notlp_sampling_ratio: 2\n");
    AgentConfig d;
    const auto error = load_config_file(bad, d);
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(*error, bad +
                          ":2: invalid value for 'otlp_sampling_ratio': expected a ratio from 0 "
                          "to 1, such as 0.1, got '2'");
    std::remove(bad.c_str());
}

}  // namespace
}  // namespace loupe::agent
