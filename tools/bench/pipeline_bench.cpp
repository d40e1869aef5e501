// The whole user-space pipeline on synthetic kernel records: decode -> per-connection HTTP/1.x
// parse and match -> aggregation into series (route normalisation, histogram, windowed sketch).
// Target: >= 2 M events/s on one core (docs/BENCHMARKS.md).
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "aggregate/request_metrics.h"
#include "capture/event_merger.h"
#include "loupe_abi.h"
#include "pipeline/connection_tracker.h"

namespace {

std::vector<std::uint8_t> data_record(std::uint32_t tgid, std::int32_t fd, std::uint64_t ts,
                                      std::uint8_t dir, const std::string& payload,
                                      std::uint64_t length, std::uint32_t spread_ns = 0,
                                      std::uint8_t protocol = LOUPE_PROTOCOL_HTTP1) {
    loupe_data_event e{};
    e.header.kind = LOUPE_EVENT_DATA;
    e.header.protocol = protocol;
    e.header.timestamp_ns = ts;
    e.header.conn = {tgid, fd, 1};
    e.length = length;
    e.spread_ns = spread_ns;
    e.direction = dir;
    e.head_len =
        static_cast<std::uint16_t>(std::min<std::size_t>(payload.size(), LOUPE_DATA_HEAD_MAX));
    std::memcpy(e.head, payload.data(), e.head_len);
    const auto size = offsetof(loupe_data_event, head) + e.head_len;
    std::vector<std::uint8_t> out(size);
    std::memcpy(out.data(), &e, size);
    return out;
}

std::vector<std::uint8_t> open_record(std::uint32_t tgid, std::int32_t fd,
                                      const char* comm = "nginx") {
    loupe_conn_open_event e{};
    e.header.kind = LOUPE_EVENT_CONN_OPEN;
    e.header.conn = {tgid, fd, 1};
    e.role = LOUPE_ROLE_SERVER;
    e.family = 2;
    e.local_port = 80;
    std::strncpy(e.comm, comm, sizeof(e.comm) - 1);
    std::vector<std::uint8_t> out(sizeof(e));
    std::memcpy(out.data(), &e, sizeof(e));
    return out;
}

void BM_PipelineHttpServer(benchmark::State& state) {
    // 64 keep-alive connections, each serving requests on 16 routes with a mix of statuses: a
    // request read, a header write and a sendfile body per exchange (nginx's pattern). Arg 1:
    // the capture joined the sendfile to the header write (two events an exchange, not three).
    const bool joined = state.range(0) == 1;
    const int kConns = 64;
    loupe::aggregate::RequestMetricsStore store;
    std::chrono::nanoseconds now{std::chrono::seconds(1000)};
    loupe::pipeline::ConnectionTracker tracker(
        {}, 100'000,
        [&](const loupe::protocols::Request& r,
            const loupe::pipeline::ConnectionTracker::Origin& o) {
            store.record(r, {o.service, o.server_address, o.server_port}, now);
        },
        [](std::uint32_t) { return std::string("nginx"); });
    for (int c = 0; c < kConns; ++c)
        tracker.on_record(open_record(100, c));
    std::vector<std::vector<std::uint8_t>> records;
    const char* statuses[] = {"200 OK", "200 OK", "200 OK", "404 Not Found",
                              "500 Internal Server Error"};
    std::uint64_t ts = 1'000'000'000'000;
    for (int i = 0; i < 4096; ++i) {
        const int conn = i % kConns;
        const std::string path =
            "/api/v1/items/" + std::to_string(i % 16) + "/detail?user=" + std::to_string(i);
        records.push_back(data_record(100, conn, ts += 1000, LOUPE_DIR_INGRESS,
                                      "GET " + path +
                                          " HTTP/1.1\r\nHost: example\r\nUser-Agent: bench\r\n"
                                          "Accept: */*\r\n\r\n",
                                      80 + path.size()));
        const std::string head =
            std::string("HTTP/1.1 ") + statuses[i % 5] +
            "\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 612\r\n"
            "Connection: keep-alive\r\n\r\n";
        if (joined) {
            records.push_back(data_record(100, conn, ts += 25'000, LOUPE_DIR_EGRESS, head,
                                          head.size() + 612, 5'000));
        } else {
            records.push_back(
                data_record(100, conn, ts += 20'000, LOUPE_DIR_EGRESS, head, head.size()));
            records.push_back(data_record(100, conn, ts += 5'000, LOUPE_DIR_EGRESS, "", 612));
        }
    }
    std::size_t i = 0;
    for (auto _ : state) {
        tracker.on_record(records[i]);
        if (++i == records.size()) i = 0;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["exchanges"] = static_cast<double>(tracker.counters().exchanges);
    state.counters["series"] = static_cast<double>(store.series().size());
}
BENCHMARK(BM_PipelineHttpServer)->Arg(0)->Arg(1);

std::string resp_command(const std::string& a, const std::string& b, const std::string& c = "") {
    auto bulk = [](const std::string& w) {
        return "$" + std::to_string(w.size()) + "\r\n" + w + "\r\n";
    };
    return (c.empty() ? "*2\r\n" : "*3\r\n") + bulk(a) + bulk(b) + (c.empty() ? "" : bulk(c));
}

void BM_PipelineRedisServer(benchmark::State& state) {
    // redis-server's side of redis-benchmark: 64 connections, GET and SET on random keys, Arg
    // commands a read (-P), all replies of a read in one write. Items: operations.
    const int pipeline = static_cast<int>(state.range(0));
    const int kConns = 64;
    loupe::aggregate::RequestMetricsStore store;
    std::chrono::nanoseconds now{std::chrono::seconds(1000)};
    loupe::pipeline::ConnectionTracker tracker(
        {}, 100'000,
        [&](const loupe::protocols::Request& r,
            const loupe::pipeline::ConnectionTracker::Origin& o) {
            store.record(r, {o.service, o.server_address, o.server_port}, now);
        },
        [](std::uint32_t) { return std::string("redis-server"); });
    for (int c = 0; c < kConns; ++c)
        tracker.on_record(open_record(200, c, "redis-server"));
    std::vector<std::vector<std::uint8_t>> records;
    std::uint64_t ts = 1'000'000'000'000;
    for (int i = 0; i < 2048; ++i) {
        const int conn = i % kConns;
        std::string commands, replies;
        for (int k = 0; k < pipeline; ++k) {
            const std::string key = "key:" + std::to_string((i * 31 + k * 7) % 100000);
            if (k % 2) {
                commands += resp_command("SET", key, "xxx");
                replies += "+OK\r\n";
            } else {
                commands += resp_command("GET", key);
                replies += k % 4 ? "$3\r\nxxx\r\n" : "$-1\r\n";
            }
        }
        records.push_back(data_record(200, conn, ts += 1000, LOUPE_DIR_INGRESS, commands,
                                      commands.size(), 0, LOUPE_PROTOCOL_REDIS));
        records.push_back(data_record(200, conn, ts += 5000, LOUPE_DIR_EGRESS, replies,
                                      replies.size(), 0, LOUPE_PROTOCOL_REDIS));
    }
    std::size_t i = 0;
    for (auto _ : state) {
        tracker.on_record(records[i]);
        if (++i == records.size()) i = 0;
    }
    state.SetItemsProcessed(state.iterations() * pipeline / 2);  // two records a pipeline
    state.counters["operations"] = static_cast<double>(tracker.counters().exchanges);
}
BENCHMARK(BM_PipelineRedisServer)->Arg(1)->Arg(16);

void BM_EventMergerDrain(benchmark::State& state) {
    // The agent's pattern: a drain every 30 ms takes ~2,600 records from two per-CPU rings and
    // holds the last 40 ms of them (SocketCapture's hold-back) for the next drain.
    constexpr std::uint64_t kDrainNs = 30'000'000;
    constexpr int kPerRing = 1'300;
    const std::string head = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 612\r\n\r\n";
    loupe::capture::EventMerger merger(40'000'000);
    std::uint64_t handed = 0;
    const loupe::capture::EventMerger::Handler count = [&](std::span<const std::uint8_t> r) {
        handed += r.size();
    };
    // Built once; each drain restamps them (offset within the drain, the second ring 0.5 us
    // after the first).
    std::vector<std::vector<std::uint8_t>> records;
    std::vector<std::uint64_t> offsets;
    for (int ring = 0; ring < 2; ++ring)
        for (int i = 0; i < kPerRing; ++i) {
            records.push_back(data_record(100, i % 64, 0, LOUPE_DIR_EGRESS, head, head.size()));
            offsets.push_back(static_cast<std::uint64_t>(i) * (kDrainNs / kPerRing) +
                              static_cast<std::uint64_t>(ring) * 500);
        }
    std::uint64_t drain_start = 1'000'000'000'000;
    for (auto _ : state) {
        for (std::size_t i = 0; i < records.size(); ++i) {
            const std::uint64_t ts = drain_start + offsets[i];
            std::memcpy(records[i].data() + offsetof(loupe_event_header, timestamp_ns), &ts,
                        sizeof(ts));
            merger.add(records[i]);
        }
        drain_start += kDrainNs;
        merger.release(drain_start, count);
    }
    benchmark::DoNotOptimize(handed);
    state.SetItemsProcessed(state.iterations() * 2 * kPerRing);
}
BENCHMARK(BM_EventMergerDrain);

}  // namespace
