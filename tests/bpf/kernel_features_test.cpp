// Runs the doctor's probes against the running kernel and checks each answer against an
// independent source where one exists.
#include "doctor/kernel_features.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
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
                           "uprobe", "kprobe", "fentry", "perf_event", "cgroup_v2", "sched_info"}) {
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

}  // namespace
}  // namespace loupe::doctor
