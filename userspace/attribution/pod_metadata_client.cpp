#include "attribution/pod_metadata_client.h"

#include <cstdlib>
#include <filesystem>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "util/read_file.h"
#include "util/url.h"

namespace loupe::attribution {
namespace {

// A token file, without the line end editors and `kubectl create secret` leave after it.
std::string read_token(const std::string& path) {
    std::string s = util::read_file(path).value_or(std::string());
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
        s.pop_back();
    return s;
}

}  // namespace

PodMetadataClient::PodMetadataClient(PodMetadataOptions options, OnUpdate on_update)
    : options_(std::move(options)), on_update_(std::move(on_update)) {
    thread_ = std::thread([this] { loop(); });
}

PodMetadataClient::~PodMetadataClient() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
}

std::string PodMetadataClient::in_cluster_pods_url(const std::string& node_name) {
    const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host) return "";
    std::string h = host;
    if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6 service address
    std::string url = "https://" + h + ":" + (port && *port ? port : "443") + "/api/v1/pods";
    if (!node_name.empty()) url += "?fieldSelector=spec.nodeName=" + node_name;
    return url;
}

void PodMetadataClient::request_refresh() {
    {
        std::lock_guard lock(mutex_);
        refresh_requested_ = true;
    }
    wake_.notify_all();
}

PodMetadataStatus PodMetadataClient::status() const {
    std::lock_guard lock(mutex_);
    return status_;
}

std::shared_ptr<const PodDirectory> PodMetadataClient::fetch(std::string& error) const {
    const auto [base, path] = util::split_url(options_.pods_url);
    httplib::Client client(base);
    client.set_connection_timeout(std::chrono::seconds(3));
    client.set_read_timeout(std::chrono::seconds(10));
    if (!options_.ca_file.empty() && std::filesystem::exists(options_.ca_file))
        client.set_ca_cert_path(options_.ca_file.c_str());
    if (!options_.token_file.empty() && std::filesystem::exists(options_.token_file))
        client.set_bearer_token_auth(read_token(options_.token_file).c_str());
    std::shared_ptr<PodDirectory> directory;
    if (!client.is_valid()) {
        error = "unusable URL " + options_.pods_url;
    } else if (auto res = client.Get(path.c_str()); !res) {
        error = "GET " + options_.pods_url + ": " + httplib::to_string(res.error());
    } else if (res->status != 200) {
        error = "GET " + options_.pods_url + ": HTTP " + std::to_string(res->status);
    } else {
        directory = std::make_shared<PodDirectory>();
        if (auto parse_error = directory->load_pod_list(res->body); !parse_error.empty()) {
            error = options_.pods_url + ": " + parse_error;
            directory.reset();
        }
    }
    return directory;
}

void PodMetadataClient::loop() {
    auto last_fetch = std::chrono::steady_clock::time_point{};
    while (true) {
        {
            std::unique_lock lock(mutex_);
            if (stopping_) return;
        }
        std::string error;
        if (auto directory = fetch(error)) {
            const std::size_t pods = directory->pods();
            {
                std::lock_guard lock(mutex_);
                if (pods != status_.pods || status_.fetches_ok == 0)
                    spdlog::info("pod metadata: {} pods, {} containers on this node", pods,
                                 directory->containers());
            }
            on_update_(std::move(directory));
            // Counted once applied: whoever sees the success sees the attribution too.
            std::lock_guard lock(mutex_);
            ++status_.fetches_ok;
            status_.pods = pods;
            status_.last_error.clear();
        } else {
            std::lock_guard lock(mutex_);
            ++status_.fetches_failed;
            if (error != status_.last_error) spdlog::warn("pod metadata: {}", error);
            status_.last_error = error;
        }
        last_fetch = std::chrono::steady_clock::now();
        std::unique_lock lock(mutex_);
        wake_.wait_until(lock, last_fetch + options_.refresh_interval,
                         [&] { return stopping_ || refresh_requested_; });
        if (stopping_) return;
        // An on-demand refresh still waits min_interval after the last fetch, so a stream of
        // unknown containers costs the API server at most one list per min_interval.
        wake_.wait_until(lock, last_fetch + options_.min_interval, [&] { return stopping_; });
        refresh_requested_ = false;
    }
}

}  // namespace loupe::attribution
