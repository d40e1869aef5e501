// Fuzzes what loupe reads from outside for attribution: /proc/PID/cgroup text and PodList JSON from
// the API server or kubelet. Input: first byte selects the parser (even: cgroup, odd: PodList),
// the rest is the document. Either must give a result or an error, never a crash or a hang; the
// identity built from a PodList must name a container that is in it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "attribution/cgroup_container.h"
#include "attribution/pod_directory.h"
#include "attribution/service_identities.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    using namespace loupe::attribution;
    if (data[0] % 2 == 0) {
        if (const auto ref = container_of_proc_cgroup(text)) {
            if (ref->container_id.size() != 64) __builtin_trap();
        }
        return 0;
    }
    auto pods = std::make_shared<PodDirectory>(64);
    const std::string error = pods->load_pod_list(text);
    if (!error.empty() && (pods->pods() != 0 || pods->containers() != 0)) __builtin_trap();
    ServiceIdentities identities([](std::uint32_t) -> std::optional<std::string> {
        return "0::/kubepods/burstable/pod3f1c2a9e-5b7d-4e2a-9c1b-2d3e4f5a6b7c/" +
               std::string(64, 'a') + "\n";
    });
    identities.set_pods(pods, "node");
    const std::string key = identities.key_for(1, "comm");
    if (!identities.labels_of(key) && key != "comm") __builtin_trap();
    return 0;
}
