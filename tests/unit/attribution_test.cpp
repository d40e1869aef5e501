// Container and pod attribution: cgroup layouts of the container runtimes, PodList documents (a
// kube-apiserver and a kubelet response, tests/fixtures/k8s) and the identities built from them.
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <unistd.h>

#include <gtest/gtest.h>

#include "attribution/cgroup_container.h"
#include "attribution/cgroup_limits.h"
#include "attribution/pod_directory.h"
#include "attribution/service_identities.h"

namespace loupe::attribution {
namespace {

// sha256("checkout/app") etc.: the container ids of the fixtures.
const std::string kCheckoutApp = "c605080ad54e3c1e2ada78e25329342b2839c2cedc7d07e443db7faab0b8177c";
const std::string kCheckoutMigrate =
    "7569c94dc14d53da778be2cb2a29719f5fb203fa7719a7880d0a88a6bd6f2e8e";

std::string fixture(const std::string& name) {
    std::ifstream in(std::string(LOUPE_FIXTURES_DIR) + "/k8s/" + name);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

const std::string kId(64, 'a');

TEST(CgroupContainer, ContainerdSystemdDriverWithPodUid) {
    const auto ref = container_of_cgroup_path(
        "/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod3f1c2a9e_5b7d_4e2a_9c1b_2d3e4f5a6b7c.slice/cri-containerd-" +
        kId + ".scope");
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->container_id, kId);
    EXPECT_EQ(ref->runtime, "containerd");
    EXPECT_EQ(ref->pod_uid, "3f1c2a9e-5b7d-4e2a-9c1b-2d3e4f5a6b7c");
}

TEST(CgroupContainer, GuaranteedPodHasNoQosSlice) {
    const auto ref = container_of_cgroup_path(
        "/kubepods.slice/kubepods-pod8a7b6c5d_4e3f_4a2b_9c8d_7e6f5a4b3c2d.slice/crio-" + kId +
        ".scope");
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->runtime, "cri-o");
    EXPECT_EQ(ref->pod_uid, "8a7b6c5d-4e3f-4a2b-9c8d-7e6f5a4b3c2d");
}

TEST(CgroupContainer, CgroupfsDriverLayouts) {
    auto ref = container_of_cgroup_path(
        "/kubepods/besteffort/podc0ffee00-1234-4abc-8def-0123456789ab/" + kId);
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->container_id, kId);
    EXPECT_EQ(ref->runtime, "");
    EXPECT_EQ(ref->pod_uid, "c0ffee00-1234-4abc-8def-0123456789ab");
    ref = container_of_cgroup_path(
        "/kubepods/burstable/pod3f1c2a9e-5b7d-4e2a-9c1b-2d3e4f5a6b7c/crio-" + kId);
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->runtime, "cri-o");
}

TEST(CgroupContainer, DockerAndPodmanOutsideKubernetes) {
    auto ref = container_of_cgroup_path("/system.slice/docker-" + kId + ".scope");
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->runtime, "docker");
    EXPECT_EQ(ref->pod_uid, "");
    ref = container_of_cgroup_path("/docker/" + kId);
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->container_id, kId);
    ref = container_of_cgroup_path("/machine.slice/libpod-" + kId + ".scope/container");
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->runtime, "podman");
}

TEST(CgroupContainer, PathFromAnotherCgroupNamespace) {
    // The agent in its own cgroup namespace sees other pods' paths relative to its own.
    const auto ref = container_of_cgroup_path(
        "/../../kubepods-besteffort-podc0ffee00_1234_4abc_8def_0123456789ab.slice/cri-containerd-" +
        kId + ".scope");
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->container_id, kId);
    EXPECT_EQ(ref->pod_uid, "c0ffee00-1234-4abc-8def-0123456789ab");
}

TEST(CgroupContainer, NotContainers) {
    EXPECT_FALSE(container_of_cgroup_path("/"));
    EXPECT_FALSE(container_of_cgroup_path("/user.slice/user-1000.slice/session-3.scope"));
    EXPECT_FALSE(container_of_cgroup_path("/system.slice/nginx.service"));
    // 32 hex digits (a job id, not a container id) and CRI-O's monitor process.
    EXPECT_FALSE(container_of_cgroup_path("/process_api/0f57ef1123e5ea1255e25059259c5e66"));
    EXPECT_FALSE(container_of_cgroup_path("/kubepods.slice/crio-conmon-" + kId + ".scope"));
    EXPECT_FALSE(container_of_cgroup_path("/docker/" + std::string(64, 'A')));  // not lower hex
    EXPECT_FALSE(container_of_cgroup_path("/docker/" + std::string(63, 'a')));
}

TEST(CgroupContainer, ProcCgroupPrefersV2ThenV1) {
    // cgroup v1 (and hybrid hosts like this one, where v2 holds nothing): the v1 hierarchies.
    const std::string v1 =
        "12:pids:/kubepods/besteffort/podc0ffee00-1234-4abc-8def-0123456789ab/" + kId +
        "\n4:memory:/kubepods/besteffort/podc0ffee00-1234-4abc-8def-0123456789ab/" + kId +
        "\n1:name=systemd:/kubepods/besteffort/podc0ffee00-1234-4abc-8def-0123456789ab/" + kId +
        "\n0::/\n";
    auto ref = container_of_proc_cgroup(v1);
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->container_id, kId);
    // v2 wins when it names a container.
    const std::string other(64, 'b');
    ref = container_of_proc_cgroup("4:memory:/docker/" + kId + "\n0::/system.slice/docker-" +
                                   other + ".scope\n");
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->container_id, other);
    EXPECT_FALSE(container_of_proc_cgroup("0::/user.slice\n"));
    EXPECT_FALSE(container_of_proc_cgroup("garbage without colons\n\n"));
}

void expect_fixture_pods(const PodDirectory& pods) {
    const PodContainer* app = pods.find_container(kCheckoutApp);
    ASSERT_NE(app, nullptr);
    EXPECT_EQ(app->pod_name, "checkout-7d9f8b6c5d-x2x7q");
    EXPECT_EQ(app->namespace_name, "shop");
    EXPECT_EQ(app->container_name, "app");
    EXPECT_EQ(app->node_name, "loupe-test-node");
    EXPECT_EQ(app->workload_kind, "Deployment");
    EXPECT_EQ(app->workload_name, "checkout");
    EXPECT_EQ(app->pod_uid, "3f1c2a9e-5b7d-4e2a-9c1b-2d3e4f5a6b7c");

    struct Expected {
        std::string pod_uid, kind, workload;
    };
    const std::map<std::string, Expected> by_pod = {
        {"orders-db-0", {"8a7b6c5d-4e3f-4a2b-9c8d-7e6f5a4b3c2d", "StatefulSet", "orders-db"}},
        {"node-agent-5jq2k", {"c0ffee00-1234-4abc-8def-0123456789ab", "DaemonSet", "node-agent"}},
        {"report-29391840-kq8zd", {"5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716", "CronJob", "report"}},
        {"etcd-loupe-test-node",
         {"9f8e7d6c-5b4a-4392-8817-06f5e4d3c2b1", "Pod", "etcd-loupe-test-node"}}};
    for (const auto& [pod_name, expected] : by_pod) {
        const PodContainer* pod = pods.find_pod(expected.pod_uid);
        ASSERT_NE(pod, nullptr) << pod_name;
        EXPECT_EQ(pod->pod_name, pod_name);
        EXPECT_EQ(pod->workload_kind, expected.kind) << pod_name;
        EXPECT_EQ(pod->workload_name, expected.workload) << pod_name;
        EXPECT_EQ(pod->container_name, "") << pod_name;
    }
}

TEST(PodDirectory, ApiServerPodList) {
    PodDirectory pods;
    ASSERT_EQ(pods.load_pod_list(fixture("apiserver-pods.json")), "");
    expect_fixture_pods(pods);
    // 5 running pods (7 containers incl. one finished init container) + 1 pending pod.
    EXPECT_EQ(pods.pods(), 6u);
    EXPECT_EQ(pods.containers(), 7u);
    // The pending pod is known by uid, its container (no containerID yet) is not.
    EXPECT_NE(pods.find_pod("7b6a5948-3726-4150-8f9e-8d7c6b5a4938"), nullptr);
}

TEST(PodDirectory, KubeletPodList) {
    PodDirectory pods;
    ASSERT_EQ(pods.load_pod_list(fixture("kubelet-pods.json")), "");
    expect_fixture_pods(pods);
    EXPECT_EQ(pods.pods(), 5u);
}

TEST(PodDirectory, InitContainersAndRuntimeSchemes) {
    PodDirectory pods;
    ASSERT_EQ(pods.load_pod_list(fixture("apiserver-pods.json")), "");
    EXPECT_EQ(strip_runtime_scheme("cri-o://" + kId), kId);
    EXPECT_EQ(strip_runtime_scheme("docker://" + kId), kId);
    EXPECT_EQ(strip_runtime_scheme(kId), kId);
    // A finished init container still has processes to account for until they are reaped.
    const PodContainer* migrate = pods.find_container(kCheckoutMigrate);
    ASSERT_NE(migrate, nullptr);
    EXPECT_EQ(migrate->container_name, "migrate");
    EXPECT_EQ(migrate->workload_name, "checkout");
}

TEST(PodDirectory, BadDocumentsGiveErrorsNotCrashes) {
    PodDirectory pods;
    EXPECT_EQ(pods.load_pod_list("not json {"), "not JSON");
    EXPECT_EQ(pods.load_pod_list("{}"), "not a PodList (no items array)");
    EXPECT_EQ(pods.load_pod_list(R"({"items": {}})"), "not a PodList (no items array)");
    // Malformed pods are skipped, good ones kept.
    EXPECT_EQ(pods.load_pod_list(R"({"items": [1, {"metadata": 2}, {"metadata": {"uid": "u"}},
        {"metadata": {"uid": "u1", "name": "p", "namespace": "n", "ownerReferences": [7]},
         "status": {"containerStatuses": [3, {"name": "c", "containerID": 9},
                                          {"name": "c", "containerID": "containerd://abc"}]}}]})"),
              "");
    EXPECT_EQ(pods.skipped(), 3u);
    ASSERT_NE(pods.find_container("abc"), nullptr);
    EXPECT_EQ(pods.find_container("abc")->workload_name, "p");
}

TEST(PodDirectory, CapsContainers) {
    PodDirectory pods(3);
    ASSERT_EQ(pods.load_pod_list(fixture("apiserver-pods.json")), "");
    EXPECT_LE(pods.containers(), 3u);
    EXPECT_LE(pods.pods(), 3u);
    EXPECT_GT(pods.skipped(), 0u);
}

struct Identities : ::testing::Test {
    std::map<std::uint32_t, std::string> cgroups;
    ServiceIdentities identities{[this](std::uint32_t pid) -> std::optional<std::string> {
        const auto it = cgroups.find(pid);
        if (it == cgroups.end()) return std::nullopt;
        return it->second;
    }};
    std::shared_ptr<PodDirectory> fixture_pods() {
        auto pods = std::make_shared<PodDirectory>();
        EXPECT_EQ(pods->load_pod_list(fixture("apiserver-pods.json")), "");
        return pods;
    }
};

TEST_F(Identities, PlainProcessesKeepTheirName) {
    cgroups[10] = "0::/user.slice\n";
    EXPECT_EQ(identities.key_for(10, "nginx"), "nginx");
    EXPECT_EQ(identities.key_for(11, "gone"), "gone");  // no /proc entry any more
    EXPECT_EQ(identities.labels_of("nginx"), nullptr);
    EXPECT_EQ(identities.service_name_of("nginx"), "nginx");
}

TEST_F(Identities, PodContainerGetsWorkloadNameAndResourceLabels) {
    identities.set_pods(fixture_pods(), "configured-node");
    cgroups[20] =
        "0::/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod3f1c2a9e_5b7d_4e2a_9c1b_2d3e4f5a6b7c.slice/"
        "cri-containerd-" +
        kCheckoutApp + ".scope\n";
    const std::string key = identities.key_for(20, "python3");
    EXPECT_EQ(key, "shop/checkout-7d9f8b6c5d-x2x7q/app");
    const Labels* labels = identities.labels_of(key);
    ASSERT_NE(labels, nullptr);
    const Labels expected = {{"service_name", "checkout"},
                             {"container_id", kCheckoutApp},
                             {"k8s_namespace_name", "shop"},
                             {"k8s_pod_name", "checkout-7d9f8b6c5d-x2x7q"},
                             {"k8s_container_name", "app"},
                             {"k8s_node_name", "loupe-test-node"}};  // the pod's own spec
    EXPECT_EQ(*labels, expected);
    EXPECT_EQ(identities.service_name_of(key), "checkout");
    EXPECT_FALSE(identities.take_unknown_containers());
}

TEST_F(Identities, UnknownContainerUntilThePodListKnowsIt) {
    const std::string id(64, 'c');
    cgroups[30] =
        "0::/kubepods.slice/kubepods-pod8a7b6c5d_4e3f_4a2b_9c8d_7e6f5a4b3c2d.slice/crio-" + id +
        ".scope\n";
    // No pod list yet: told apart by container id, and the source is asked to refresh.
    EXPECT_EQ(identities.key_for(30, "postgres"), "postgres@cccccccccccc");
    EXPECT_EQ(*identities.labels_of("postgres@cccccccccccc"),
              (Labels{{"service_name", "postgres"}, {"container_id", id}}));
    EXPECT_TRUE(identities.take_unknown_containers());
    EXPECT_FALSE(identities.take_unknown_containers());
    // The pod is listed but this container is not in its status yet: found by the pod uid.
    identities.set_pods(fixture_pods(), "configured-node");
    const std::string key = identities.key_for(30, "postgres");
    EXPECT_EQ(key, "shop/orders-db-0/postgres");
    const Labels* labels = identities.labels_of(key);
    ASSERT_NE(labels, nullptr);
    EXPECT_EQ(labels->front(), (std::pair<std::string, std::string>{"service_name", "orders-db"}));
    for (const auto& [name, value] : *labels)
        EXPECT_NE(name, "k8s_container_name");
}

TEST_F(Identities, ForgetsGoneProcessesAndCapsIdentities) {
    ServiceIdentities capped(
        [](std::uint32_t pid) -> std::optional<std::string> {
            return "0::/docker/" + std::string(63, 'a') + std::to_string(pid % 10) + "\n";
        },
        2);
    EXPECT_EQ(capped.key_for(1, "a"), "a@aaaaaaaaaaaa");
    EXPECT_NE(capped.key_for(2, "b"), "b");
    EXPECT_EQ(capped.key_for(3, "c"), "c");  // over the cap: by name only, and counted
    EXPECT_EQ(capped.identities_dropped(), 1u);
    EXPECT_EQ(capped.identities(), 2u);

    cgroups[40] = "0::/docker/" + kId + "\n";
    EXPECT_EQ(identities.key_for(40, "x"), "x@aaaaaaaaaaaa");
    identities.retain({});
    cgroups[40] = "0::/\n";  // pid 40 reused by a host process
    EXPECT_EQ(identities.key_for(40, "y"), "y");
}

TEST_F(Identities, ForgetsIdentitiesNothingRefersTo) {
    cgroups[50] = "0::/docker/" + kId + "\n";
    cgroups[51] = "0::/docker/" + std::string(64, 'b') + "\n";
    const std::string gone = identities.key_for(50, "a");
    const std::string kept = identities.key_for(51, "b");
    identities.retain({51});     // pid 50 exited
    identities.retain_keys({});  // no series names either: only the live process keeps its own
    EXPECT_EQ(identities.labels_of(gone), nullptr);
    EXPECT_NE(identities.labels_of(kept), nullptr);
    identities.retain({});
    identities.retain_keys({kept});  // a series still names it
    EXPECT_NE(identities.labels_of(kept), nullptr);
    EXPECT_EQ(identities.identities(), 1u);
}

// A cgroup v2 and a v1 (cpu, memory) hierarchy in a temporary directory, and a mountinfo file
// naming them, as /proc/self/mountinfo does.
struct CgroupTree : ::testing::Test {
    std::filesystem::path root;
    std::string mountinfo;
    void SetUp() override {
        root = std::filesystem::temp_directory_path() /
               ("loupe-cgroup-test-" + std::to_string(::getpid()));
        std::filesystem::create_directories(root / "unified");
        std::filesystem::create_directories(root / "cpu");
        std::filesystem::create_directories(root / "memory");
        mountinfo = (root / "mountinfo").string();
        std::ofstream(mountinfo) << "25 1 0:23 / /proc rw,nosuid - proc proc rw\n"
                                 << "35 30 0:30 / " << (root / "unified").string()
                                 << " rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
                                 << "36 30 0:31 / " << (root / "cpu").string()
                                 << " rw,nosuid - cgroup cgroup rw,cpu\n"
                                 << "37 30 0:32 / " << (root / "memory").string()
                                 << " rw,nosuid - cgroup cgroup rw,memory\n"
                                 << "38 30 0:33 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
    }
    void TearDown() override { std::filesystem::remove_all(root); }
    void write(const std::filesystem::path& file, const std::string& text) {
        std::filesystem::create_directories(file.parent_path());
        std::ofstream(file) << text << "\n";
    }
};

TEST_F(CgroupTree, FindsTheCgroupMounts) {
    const CgroupLimitReader reader(mountinfo);
    ASSERT_EQ(reader.mounts().size(), 3u);  // not proc, not the pids-only hierarchy
    EXPECT_TRUE(reader.mounts()[0].v2);
    EXPECT_TRUE(reader.mounts()[1].cpu);
    EXPECT_TRUE(reader.mounts()[2].memory);
}

TEST_F(CgroupTree, V2LimitsAreTheTightestUpTheTree) {
    const std::string pod = "kubepods.slice/kubepods-podx.slice";
    const std::string container = pod + "/cri-containerd-" + kId + ".scope";
    write(root / "unified" / container / "cpu.max", "50000 100000");
    write(root / "unified" / container / "memory.max", "max");
    write(root / "unified" / pod / "cpu.max", "max 100000");
    write(root / "unified" / pod / "memory.max", "268435456");
    const CgroupLimitReader reader(mountinfo);
    const auto limits = reader.read("0::/" + container + "\n");
    EXPECT_DOUBLE_EQ(limits.cpu_cores, 0.5);
    EXPECT_EQ(limits.memory_bytes, 268435456u);
    // Seen from another cgroup namespace: found by the container's own cgroup name.
    const auto relative =
        reader.read("0::/../../kubepods-podx.slice/cri-containerd-" + kId + ".scope\n");
    EXPECT_DOUBLE_EQ(relative.cpu_cores, 0.5);
    EXPECT_EQ(relative.memory_bytes, 268435456u);
}

TEST_F(CgroupTree, V1LimitsAndUnlimitedValues) {
    const std::string container = "kubepods/burstable/podx/" + kId;
    write(root / "cpu" / container / "cpu.cfs_quota_us", "200000");
    write(root / "cpu" / container / "cpu.cfs_period_us", "100000");
    write(root / "memory" / container / "memory.limit_in_bytes", "9223372036854771712");
    const CgroupLimitReader reader(mountinfo);
    auto limits = reader.read("4:memory:/" + container + "\n1:cpu:/" + container + "\n0::/\n");
    EXPECT_DOUBLE_EQ(limits.cpu_cores, 2.0);
    EXPECT_EQ(limits.memory_bytes, 0u);  // v1's "no limit"
    write(root / "cpu" / container / "cpu.cfs_quota_us", "-1");
    write(root / "memory" / container / "memory.limit_in_bytes", "536870912");
    limits = reader.read("4:memory:/" + container + "\n1:cpu:/" + container + "\n");
    EXPECT_DOUBLE_EQ(limits.cpu_cores, 0.0);
    EXPECT_EQ(limits.memory_bytes, 536870912u);
}

TEST_F(CgroupTree, MissingOrGarbageGivesNoLimit) {
    write(root / "unified" / "bad" / "cpu.max", "lots");
    write(root / "unified" / "bad" / "memory.max", "-5");
    const CgroupLimitReader reader(mountinfo);
    EXPECT_EQ(reader.read("0::/bad\n").cpu_cores, 0.0);
    EXPECT_EQ(reader.read("0::/bad\n").memory_bytes, 0u);
    EXPECT_EQ(reader.read("0::/gone\n").memory_bytes, 0u);
    EXPECT_EQ(CgroupLimitReader("/nonexistent").read("0::/bad\n").cpu_cores, 0.0);
}

TEST_F(CgroupTree, IdentitiesCarryTheirContainersLimits) {
    const std::string container = "system.slice/docker-" + kId + ".scope";
    write(root / "unified" / container / "cpu.max", "150000 100000");
    write(root / "unified" / container / "memory.max", "1073741824");
    ServiceIdentities identities(
        [&](std::uint32_t pid) -> std::optional<std::string> {
            return pid == 1 ? "0::/" + container + "\n" : "0::/\n";
        },
        100, std::make_shared<CgroupLimitReader>(mountinfo));
    const std::string key = identities.key_for(1, "app");
    EXPECT_DOUBLE_EQ(identities.limits_of(key).cpu_cores, 1.5);
    EXPECT_EQ(identities.limits_of(key).memory_bytes, 1073741824u);
    EXPECT_EQ(identities.limits_of(identities.key_for(2, "host")).cpu_cores, 0.0);
}

}  // namespace
}  // namespace loupe::attribution
