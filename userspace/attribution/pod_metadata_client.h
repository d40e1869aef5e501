// Keeps this node's pod directory fresh: lists the node's pods from the API server (or the
// kubelet) every refresh interval, and sooner when a process shows up in an unknown container.
// It runs on its own thread so that a slow or unreachable API server never delays capture.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "attribution/pod_directory.h"

namespace loupe::attribution {

struct PodMetadataOptions {
    // A PodList URL: the API server's "/api/v1/pods?fieldSelector=spec.nodeName=<node>" or the
    // kubelet's "/pods". http:// and https:// are accepted.
    std::string pods_url;
    std::string token_file;  // bearer token, re-read at every request (tokens are rotated)
    std::string ca_file;     // verifies https servers when present
    std::chrono::milliseconds refresh_interval{15'000};
    std::chrono::milliseconds min_interval{2'000};  // floor between two on-demand refreshes
};

struct PodMetadataStatus {
    std::uint64_t fetches_ok = 0;
    std::uint64_t fetches_failed = 0;
    std::size_t pods = 0;
    std::string last_error;
};

class PodMetadataClient {
  public:
    using OnUpdate = std::function<void(std::shared_ptr<const PodDirectory>)>;

    PodMetadataClient(PodMetadataOptions options, OnUpdate on_update);
    ~PodMetadataClient();
    PodMetadataClient(const PodMetadataClient&) = delete;
    PodMetadataClient& operator=(const PodMetadataClient&) = delete;

    // Ask for a refresh soon (a process in a container the directory does not know).
    void request_refresh();
    PodMetadataStatus status() const;

    // The in-cluster API server URL listing `node_name`'s pods, from KUBERNETES_SERVICE_HOST/PORT;
    // "" outside a cluster.
    static std::string in_cluster_pods_url(const std::string& node_name);

  private:
    void loop();
    // One fetch: a parsed directory, or nullptr and the error.
    std::shared_ptr<const PodDirectory> fetch(std::string& error) const;

    PodMetadataOptions options_;
    OnUpdate on_update_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool refresh_requested_ = false;
    bool stopping_ = false;
    PodMetadataStatus status_;
    std::thread thread_;
};

}  // namespace loupe::attribution
