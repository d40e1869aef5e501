#include <cstring>

#include <gtest/gtest.h>

#include "resources/procfs.h"
#include "resources/resource_tracker.h"

namespace loupe::resources {
namespace {

using std::chrono::seconds;

TEST(ProcFs, ParsesStatWithAwkwardComm) {
    // comm with spaces and parentheses; utime 150, stime 50 ticks; rss 1000 pages; flags 0.
    const std::string stat =
        "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0 100 1000000 "
        "1000 "
        "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    bool kthread = true;
    const auto s = ProcFs::parse_stat(4242, stat, 100, 4096, &kthread);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->comm, "my (odd) proc");
    EXPECT_EQ(s->cpu_ns, 2'000'000'000u);
    EXPECT_EQ(s->rss_bytes, 1000u * 4096u);
    EXPECT_FALSE(kthread);
    const std::string kstat = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0";
    ProcFs::parse_stat(2, kstat, 100, 4096, &kthread);
    EXPECT_TRUE(kthread);
    EXPECT_FALSE(ProcFs::parse_stat(1, "garbage", 100, 4096, nullptr));
}

TEST(ProcFs, ParsesIo) {
    ProcessSample s;
    ProcFs::parse_io(
        "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 67108864\n"
        "cancelled_write_bytes: 0\n",
        s);
    EXPECT_EQ(s.io_read_bytes, 4096u);
    EXPECT_EQ(s.io_write_bytes, 67108864u);
}

TEST(ProcFs, ReadsThisMachine) {
    ProcFs proc;
    const auto self = proc.process(static_cast<std::uint32_t>(getpid()));
    ASSERT_TRUE(self);
    EXPECT_GT(self->rss_bytes, 0u);
    const auto node = proc.node();
    EXPECT_GT(node.cpus, 0u);
    EXPECT_GT(node.mem_total_bytes, node.mem_available_bytes);
    EXPECT_GT(node.cpu_total_ticks, node.cpu_busy_ticks);
    EXPECT_TRUE(node.interfaces.contains("lo"));
}

ProcessSample proc(std::uint32_t pid, const char* comm, std::uint64_t cpu_ns,
                   std::uint64_t rss = 1000) {
    ProcessSample p;
    p.pid = pid;
    p.comm = comm;
    p.cpu_ns = cpu_ns;
    p.rss_bytes = rss;
    return p;
}

loupe_proc_exit_event exit_event(std::uint32_t pid, const char* comm, std::uint64_t cpu_ns) {
    loupe_proc_exit_event e{};
    e.tgid = pid;
    std::strncpy(e.comm, comm, sizeof(e.comm) - 1);
    e.cpu_ns = cpu_ns;
    e.has_stats = 1;
    e.stats.tcp_retransmits = 3;
    return e;
}

struct Tracker : ::testing::Test {
    ResourceTracker tracker{[](std::uint32_t, const std::string& comm) {
        return comm == "python3" ? std::string("checkout") : comm;
    }};
};

TEST_F(Tracker, SumsProcessesOfAServiceAndRenames) {
    tracker.on_sample(
        {proc(1, "nginx", 1'000'000'000), proc(2, "nginx", 3'000'000'000), proc(3, "python3", 5)},
        {}, {}, seconds(10));
    const auto& s = tracker.services();
    EXPECT_EQ(s.at("nginx").totals.cpu_ns, 4'000'000'000u);
    EXPECT_EQ(s.at("nginx").processes, 2u);
    EXPECT_EQ(s.at("nginx").rss_bytes, 2000u);
    EXPECT_TRUE(s.contains("checkout"));
}

TEST_F(Tracker, CpuRateInCores) {
    tracker.on_sample({proc(1, "burn", 0)}, {}, {}, seconds(10));
    tracker.on_sample({proc(1, "burn", 2'000'000'000)}, {}, {}, seconds(12));
    EXPECT_DOUBLE_EQ(tracker.services().at("burn").cpu_cores, 1.0);
}

TEST_F(Tracker, ExitedProcessesStayCountedAndMonotonic) {
    tracker.on_sample({proc(1, "job", 1'000'000'000)}, {}, {}, seconds(10));
    // Exits between two samples with its final total (higher than the last sample).
    tracker.on_exit(exit_event(1, "job", 1'500'000'000));
    // A process that lived entirely between two samples.
    tracker.on_exit(exit_event(2, "job", 200'000'000));
    tracker.on_sample({proc(1, "job", 1'400'000'000)}, {}, {},
                      seconds(11));  // stale scan row: ignored
    const auto& job = tracker.services().at("job");
    EXPECT_EQ(job.totals.cpu_ns, 1'700'000'000u);
    EXPECT_EQ(job.exited, 2u);
    EXPECT_EQ(job.processes, 0u);
    EXPECT_EQ(job.totals.tcp_retransmits, 6u);
    EXPECT_EQ(tracker.live_processes(), 0u);
}

TEST_F(Tracker, VanishedWithoutExitRecordKeepsLastSample) {
    tracker.on_sample({proc(7, "lost", 900)}, {}, {}, seconds(1));
    tracker.on_sample({}, {}, {}, seconds(2));
    EXPECT_EQ(tracker.services().at("lost").totals.cpu_ns, 900u);
    EXPECT_EQ(tracker.services().at("lost").exited, 1u);
}

TEST_F(Tracker, ServicesWithoutProcessesExpire) {
    // 15 minutes by default: a pod's service ends like its HTTP series do.
    tracker.on_sample({proc(1, "job", 100), proc(2, "web", 100)}, {}, {}, seconds(10));
    tracker.on_exit(exit_event(1, "job", 200));
    tracker.on_sample({proc(2, "web", 300)}, {}, {}, seconds(11));
    tracker.on_sample({proc(2, "web", 400)}, {}, {}, seconds(11 + 899));
    EXPECT_TRUE(tracker.services().contains("job"));
    tracker.on_sample({proc(2, "web", 500)}, {}, {}, seconds(11 + 900));
    EXPECT_FALSE(tracker.services().contains("job"));
    EXPECT_TRUE(tracker.services().contains("web"));  // alive: never expires
    // A process of the expired service later starts it again from zero.
    tracker.on_sample({proc(2, "web", 500), proc(3, "job", 50)}, {}, {}, seconds(2000));
    EXPECT_EQ(tracker.services().at("job").totals.cpu_ns, 50u);
    EXPECT_EQ(tracker.services().at("job").exited, 0u);
}

TEST_F(Tracker, KernelCountersJoinTheirProcess) {
    loupe_proc_stats k{};
    k.net_tx_bytes = 100;
    k.tcp_accepted = 2;
    k.disk_latency_us[5] = 4;
    tracker.on_sample({proc(1, "srv", 0), proc(2, "srv", 0)}, {{1, k}, {2, k}}, {{1, 3}},
                      seconds(1));
    const auto& s = tracker.services().at("srv");
    EXPECT_EQ(s.totals.net_tx_bytes, 200u);
    EXPECT_EQ(s.totals.tcp_accepted, 4u);
    EXPECT_EQ(s.totals.disk_latency[5], 8u);
    EXPECT_EQ(s.active_connections, 3u);
}

// A name storm: processes that live between two samples, each under a new name, must not push
// live services out, nor grow the tables past their cap.
TEST(ResourceTrackerCaps, ExitedServicesCountAndLiveOnesComeFirst) {
    ResourceTracker tracker([](std::uint32_t, const std::string& comm) { return comm; }, 3);
    tracker.on_sample({proc(1, "web", 100)}, {}, {}, seconds(1));
    for (std::uint32_t i = 0; i < 10; ++i)  // each exits before any sample sees it
        tracker.on_exit(exit_event(100 + i, ("storm" + std::to_string(i)).c_str(), 10));
    tracker.on_sample({proc(1, "web", 200)}, {}, {}, seconds(2));
    // web, and two of the storm's services; the other 8 exits found no room.
    EXPECT_EQ(tracker.services().size(), 3u);
    EXPECT_TRUE(tracker.services().contains("web"));
    EXPECT_EQ(tracker.services_dropped(), 8u);
    // A new live service takes the place of the service that departed longest ago.
    tracker.on_sample({proc(1, "web", 300), proc(2, "api", 50)}, {}, {}, seconds(3));
    EXPECT_TRUE(tracker.services().contains("api"));
    EXPECT_TRUE(tracker.services().contains("web"));
    EXPECT_EQ(tracker.services().size(), 3u);
    EXPECT_EQ(tracker.services_evicted(), 1u);
    // With every place held by a live service, a new live one is refused (once), and admitted
    // when one goes.
    tracker.on_sample({proc(1, "web", 300), proc(2, "api", 50), proc(3, "db", 1)}, {}, {},
                      seconds(4));
    tracker.on_sample({proc(1, "web", 300), proc(2, "api", 50), proc(3, "db", 1), proc(4, "x", 1)},
                      {}, {}, seconds(5));
    EXPECT_FALSE(tracker.services().contains("x"));
    EXPECT_EQ(tracker.services_refused(), 1u);
    const auto dropped = tracker.services_dropped();
    tracker.on_sample({proc(1, "web", 300), proc(2, "api", 50), proc(3, "db", 1), proc(4, "x", 1)},
                      {}, {}, seconds(6));
    EXPECT_EQ(tracker.services_dropped(), dropped);  // counted when refused, not every round
    tracker.on_exit(exit_event(3, "db", 1));
    tracker.on_sample({proc(1, "web", 300), proc(2, "api", 50), proc(4, "x", 1)}, {}, {},
                      seconds(7));
    EXPECT_TRUE(tracker.services().contains("x"));
    EXPECT_FALSE(tracker.services().contains("db"));
    EXPECT_EQ(tracker.services_refused(), 0u);
}

TEST(ResourceTrackerCaps, SharedBudgetMakesRoomForNewSeries) {
    stats::SeriesBudget budget(3 * kSamplesPerService);
    ResourceTracker tracker([](std::uint32_t, const std::string& comm) { return comm; }, 100, {},
                            std::chrono::minutes(15), &budget);
    budget.set_reclaimer([&](std::size_t samples) { return tracker.evict_departed(samples); });
    tracker.on_sample({proc(1, "web", 1)}, {}, {}, seconds(1));
    tracker.on_exit(exit_event(2, "gone1", 1));
    tracker.on_exit(exit_event(3, "gone2", 1));
    tracker.on_sample({proc(1, "web", 1)}, {}, {}, seconds(2));
    EXPECT_EQ(budget.used(), 3 * kSamplesPerService);
    // Another user of the budget (an HTTP series) gets room from the oldest departed service.
    EXPECT_TRUE(budget.try_take(27));
    EXPECT_EQ(tracker.services().size(), 2u);
    EXPECT_TRUE(tracker.services().contains("web"));
    EXPECT_EQ(tracker.services_evicted(), 1u);
    // Expiry gives the budget back.
    tracker.on_sample({}, {}, {}, seconds(2) + std::chrono::minutes(16));
    tracker.on_sample({}, {}, {}, seconds(3) + std::chrono::minutes(32));
    EXPECT_TRUE(tracker.services().empty());
    EXPECT_EQ(budget.used(), 27u);
}

TEST(NodeTracker, UtilisationFromDeltas) {
    NodeTracker n;
    NodeSample a;
    a.cpus = 2;
    a.cpu_total_ticks = 1000;
    a.cpu_busy_ticks = 100;
    a.mem_total_bytes = 1000;
    a.mem_available_bytes = 250;
    a.disks["vda"] = {5000, 0, 0};
    n.on_sample(a, 0, seconds(1));
    NodeSample b = a;
    b.cpu_total_ticks = 1200;
    b.cpu_busy_ticks = 250;
    b.disks["vda"] = {5500, 0, 0};
    n.on_sample(b, 7, seconds(2));
    EXPECT_DOUBLE_EQ(n.node().cpu_utilization, 0.75);
    EXPECT_DOUBLE_EQ(n.node().mem_utilization, 0.75);
    EXPECT_DOUBLE_EQ(n.node().disk_busy.at("vda"), 0.5);
    EXPECT_EQ(n.node().tcp_retransmits, 7u);
}

}  // namespace
}  // namespace loupe::resources

namespace loupe::resources {
namespace {

TEST(ResourceTrackerNaming, ExecAndRenameMoveOnlyTheRest) {
    ResourceTracker tracker([](std::uint32_t, const std::string& comm) { return comm; });
    ProcessSample p;
    p.pid = 9;
    p.comm = "bash";  // forked, not yet exec'd
    p.cpu_ns = 100;
    tracker.on_sample({p}, {}, {}, std::chrono::seconds(1));
    p.comm = "job";  // exec'd
    p.cpu_ns = 250;
    tracker.on_sample({p}, {}, {}, std::chrono::seconds(2));
    EXPECT_EQ(tracker.services().at("bash").totals.cpu_ns, 100u);  // stays: monotonic
    EXPECT_EQ(tracker.services().at("bash").processes, 0u);
    EXPECT_EQ(tracker.services().at("job").totals.cpu_ns, 150u);
    EXPECT_EQ(tracker.services().at("job").processes, 1u);
    loupe_proc_exit_event e{};
    e.tgid = 9;
    std::strncpy(e.comm, "job", sizeof(e.comm) - 1);
    e.cpu_ns = 400;
    tracker.on_exit(e);
    tracker.on_sample({}, {}, {}, std::chrono::seconds(3));
    EXPECT_EQ(tracker.services().at("job").totals.cpu_ns, 300u);
    EXPECT_EQ(tracker.services().at("job").exited, 1u);
    EXPECT_EQ(tracker.services().at("bash").exited, 0u);
    EXPECT_EQ(
        tracker.services().at("bash").totals.cpu_ns + tracker.services().at("job").totals.cpu_ns,
        400u);
}

}  // namespace
}  // namespace loupe::resources
