// Runs the doctor's probes against the running kernel and checks each answer against an
// independent source where one exists.
#include "doctor/kernel_features.h"

#include <nlohmann/json.hpp>

#include "doctor/doctor_command.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace loupe::doctor {
namespace {

bool bpf_required() {
    const char* v = std::getenv("LOUPE_REQUIRE_BPF");
    return v && std::string(v) == "1";
}

class KernelFeatures : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { report_ = new KernelReport(probe_kernel_features()); }
    static void TearDownTestSuite() { delete report_; }
    void SetUp() override {
        if (::geteuid() != 0) {
            if (bpf_required()) FAIL() << "LOUPE_REQUIRE_BPF=1 but not running as root";
            GTEST_SKIP() << "BPF tests need root";
        }
    }
    static KernelReport* report_;
};
KernelReport* KernelFeatures::report_ = nullptr;

TEST_F(KernelFeatures, EveryFeatureIsReportedWithDetail) {
    for (const char* id : {"bpf", "btf", "tracefs", "ringbuf", "tracepoint", "raw_tp", "tp_btf",
                           "sock_send_length", "sock_recv_length", "inet_sock_set_state", "uprobe",
                           "kprobe", "fentry", "perf_event", "cgroup_v2", "sched_info"}) {
        const FeatureReport* f = report_->find(id);
        ASSERT_NE(f, nullptr) << id;
        EXPECT_FALSE(f->detail.empty()) << id;
        EXPECT_FALSE(f->impact.empty()) << id;
    }
}

TEST_F(KernelFeatures, CaptureEssentialsWork) {
    // What loupe is built on; on a kernel without them loupe must say so, and CI must fail.
    for (const char* id : {"bpf", "btf", "ringbuf", "tracefs", "tracepoint", "raw_tp", "tp_btf"}) {
        const FeatureReport* f = report_->find(id);
        ASSERT_NE(f, nullptr);
        EXPECT_TRUE(f->available) << id << ": " << f->detail;
    }
    EXPECT_TRUE(report_->usable());
    EXPECT_EQ(::access("/sys/kernel/tracing/events/syscalls", F_OK) == 0 ||
                  ::access("/sys/kernel/debug/tracing/events/syscalls", F_OK) == 0,
              true);
}

bool tracefs_event_exists(const std::string& event) {
    return ::access(("/sys/kernel/tracing/events/" + event).c_str(), F_OK) == 0 ||
           ::access(("/sys/kernel/debug/tracing/events/" + event).c_str(), F_OK) == 0;
}

TEST_F(KernelFeatures, SocketTracepointsMatchTracefsAndDecideTheVerdict) {
    // Independent oracle: tracefs lists the kernel's tracepoints. The probes attach and fire one
    // each; a missing one must be listed as what loupe captures without.
    ASSERT_TRUE(report_->available("tracefs"));
    std::size_t missing = 0;
    for (const char* id : {"sock_send_length", "sock_recv_length", "inet_sock_set_state"}) {
        const FeatureReport* f = report_->find(id);
        ASSERT_NE(f, nullptr) << id;
        EXPECT_EQ(f->available, tracefs_event_exists(std::string("sock/") + id))
            << id << ": " << f->detail;
        EXPECT_TRUE(f->degrades) << id;
        EXPECT_FALSE(f->essential) << id;
        if (f->available) {
            EXPECT_NE(f->detail.find("ran"), std::string::npos) << f->detail;
        }
        missing += !f->available;
        const auto degraded = report_->degraded();
        EXPECT_EQ(std::count(degraded.begin(), degraded.end(), f), f->available ? 0 : 1) << id;
    }
    // The HTTP capture needs them: CI's kernel has them.
    EXPECT_EQ(missing, 0u);
}

TEST_F(KernelFeatures, KprobeAnswerMatchesThePmu) {
    // Independent oracle: perf's kprobe PMU exists exactly when kprobes can be attached.
    const bool pmu = ::access("/sys/bus/event_source/devices/kprobe", F_OK) == 0;
    EXPECT_EQ(report_->available("kprobe"), pmu) << report_->find("kprobe")->detail;
}

TEST_F(KernelFeatures, UprobeAnswerMatchesThePmu) {
    const bool pmu = ::access("/sys/bus/event_source/devices/uprobe", F_OK) == 0;
    EXPECT_EQ(report_->available("uprobe"), pmu) << report_->find("uprobe")->detail;
}

TEST_F(KernelFeatures, CgroupV2AnswerMatchesMounts) {
    std::ifstream mounts("/proc/mounts");
    std::string dev, dir, type;
    bool cgroup2 = false;
    while (mounts >> dev >> dir >> type) {
        cgroup2 |= type == "cgroup2";
        mounts.ignore(4096, '\n');
    }
    EXPECT_EQ(report_->available("cgroup_v2"), cgroup2);
}

TEST_F(KernelFeatures, SchedInfoAnswerMatchesSchedstat) {
    // Independent oracle: the schedstat of another process (init) that has run.
    std::ifstream schedstat("/proc/1/schedstat");
    std::uint64_t run_ns = 0, wait_ns = 0, runs = 0;
    const bool kept = static_cast<bool>(schedstat >> run_ns >> wait_ns >> runs) && runs > 0;
    EXPECT_EQ(report_->available("sched_info"), kept) << report_->find("sched_info")->detail;
}

TEST_F(KernelFeatures, ProbingAgainIsIdempotent) {
    const KernelReport again = probe_kernel_features();
    ASSERT_EQ(again.features.size(), report_->features.size());
    for (std::size_t i = 0; i < again.features.size(); ++i)
        EXPECT_EQ(again.features[i].available, report_->features[i].available)
            << again.features[i].id;
}

// The verdict of a kernel where the capture's socket tracepoints are missing, as a report built
// here says (no kernel needed): loupe runs, and says what it cannot capture.
TEST(DoctorVerdict, MissingSocketTracepointsAreNamedWithWhatIsLost) {
    KernelReport report;
    report.kernel_release = "test";
    auto feature = [](const char* id, bool available, bool essential, bool degrades) {
        FeatureReport f;
        f.id = id;
        f.title = id;
        f.available = available;
        f.essential = essential;
        f.degrades = degrades;
        f.detail = "probed";
        f.impact = std::string("no ") + id + " figures";
        return f;
    };
    report.features = {
        feature("bpf", true, true, false), feature("sock_send_length", false, false, true),
        feature("inet_sock_set_state", false, false, true), feature("kprobe", false, false, false)};
    ASSERT_TRUE(report.usable());
    ASSERT_EQ(report.degraded().size(), 2u);
    std::ostringstream text;
    print_text(report, text);
    EXPECT_NE(text.str().find("loupe can run on this kernel, but captures less: without\n"
                              "  - sock_send_length: no sock_send_length figures\n"
                              "  - inet_sock_set_state: no inet_sock_set_state figures\n"),
              std::string::npos)
        << text.str();
    EXPECT_EQ(text.str().find("with everything it captures"), std::string::npos);
    std::ostringstream json;
    print_json(report, json);
    const auto doc = nlohmann::json::parse(json.str());
    EXPECT_TRUE(doc["usable"]);
    EXPECT_FALSE(doc["complete"]);
    EXPECT_EQ(doc["degraded_by"], nlohmann::json({"sock_send_length", "inet_sock_set_state"}));

    report.features[0].available = false;  // no BPF: nothing at all
    std::ostringstream unusable;
    print_text(report, unusable);
    EXPECT_NE(unusable.str().find("loupe cannot capture on this kernel"), std::string::npos);
}

}  // namespace
}  // namespace loupe::doctor
