#include "agent/agent_config.h"

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "capture/hook_set.h"

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
