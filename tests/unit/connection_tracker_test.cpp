// The tracker on hand-built kernel records: generations, fd reuse, lost open events, malformed
// records, selection.
#include "pipeline/connection_tracker.h"

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "protocols/registry.h"

namespace loupe::pipeline {
namespace {

std::vector<std::uint8_t> open_rec(std::int32_t fd, std::uint64_t gen, std::uint8_t role,
                                   const char* comm = "srv", std::uint16_t local_port = 80,
                                   std::uint16_t remote_port = 40000) {
    loupe_conn_open_event e{};
    e.header.kind = LOUPE_EVENT_CONN_OPEN;
    e.header.conn = {7, fd, gen};
    e.header.timestamp_ns = gen;
    e.role = role;
    e.family = 2;
    e.local_port = local_port;
    e.remote_port = remote_port;
    const std::uint8_t addr[4] = {10, 1, 2, 3};
    std::memcpy(e.remote_addr, addr, 4);
    std::strncpy(e.comm, comm, sizeof(e.comm) - 1);
    std::vector<std::uint8_t> out(sizeof(e));
    std::memcpy(out.data(), &e, sizeof(e));
    return out;
}

std::vector<std::uint8_t> data_rec(std::int32_t fd, std::uint64_t gen, std::uint64_t ts,
                                   std::uint8_t dir, const std::string& bytes,
                                   std::uint8_t protocol = LOUPE_PROTOCOL_UNKNOWN) {
    loupe_data_event e{};
    e.header.kind = LOUPE_EVENT_DATA;
    e.header.protocol = protocol;
    e.header.conn = {7, fd, gen};
    e.header.timestamp_ns = ts;
    e.direction = dir;
    e.length = bytes.size();
    e.head_len = static_cast<std::uint16_t>(bytes.size());
    std::memcpy(e.head, bytes.data(), bytes.size());
    const std::size_t size = offsetof(loupe_data_event, head) + bytes.size();
    std::vector<std::uint8_t> out(size);
    std::memcpy(out.data(), &e, size);
    return out;
}

std::vector<std::uint8_t> close_rec(std::int32_t fd, std::uint64_t gen, std::uint64_t ts) {
    loupe_conn_close_event e{};
    e.header.kind = LOUPE_EVENT_CONN_CLOSE;
    e.header.conn = {7, fd, gen};
    e.header.timestamp_ns = ts;
    std::vector<std::uint8_t> out(sizeof(e));
    std::memcpy(out.data(), &e, sizeof(e));
    return out;
}

const std::string kRequest = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
const std::string kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

// What the sink got, owned: an observation's views are valid during the call only.
struct Seen {
    protocols::Side side;
    std::string service;
    std::string method;
    std::string path;
    int status;
    std::string server_address;
    std::uint16_t server_port;
    std::uint64_t duration_ns;
};

struct Fixture : ::testing::Test {
    std::vector<Seen> seen;
    // A server connection (fd 3, generation 100) reads a request at 1 us and closes at 2 us.
    static void request_then_close(ConnectionTracker& t) {
        t.on_record(open_rec(3, 100, LOUPE_ROLE_SERVER));
        t.on_record(data_rec(3, 100, 1'000, LOUPE_DIR_INGRESS, kRequest));
        t.on_record(close_rec(3, 100, 2'000));
    }
    ConnectionTracker make(Selection sel = {}) {
        return ConnectionTracker(
            std::move(sel), 4,
            [this](const protocols::Request& r, const ConnectionTracker::Origin& o) {
                seen.push_back({r.side, std::string(o.service), std::string(r.operation),
                                std::string(r.target), r.status, std::string(o.server_address),
                                o.server_port, r.end_ns - r.start_ns});
            },
            [](std::uint32_t) { return std::string("from-proc"); });
    }
};

TEST_F(Fixture, ServerExchangeWithKernelTimestamps) {
    auto t = make();
    t.on_record(open_rec(3, 100, LOUPE_ROLE_SERVER));
    t.on_record(data_rec(3, 100, 1'000, LOUPE_DIR_INGRESS, kRequest));
    t.on_record(data_rec(3, 100, 51'000, LOUPE_DIR_EGRESS, kResponse));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].service, "srv");
    EXPECT_EQ(seen[0].side, protocols::Side::kServer);
    EXPECT_EQ(seen[0].duration_ns, 50'000u);
    EXPECT_EQ(seen[0].status, 200);
}

// The capture joins a sendfile to the write of the headers before it (one event, spread_ns
// between the two): a response ends with the last of them, a request starts with the first.
TEST_F(Fixture, JoinedWritesEndResponsesLateAndStartRequestsEarly) {
    auto t = make();
    t.on_record(open_rec(3, 100, LOUPE_ROLE_SERVER));
    t.on_record(data_rec(3, 100, 1'000, LOUPE_DIR_INGRESS, kRequest));
    const std::string headers = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
    auto joined = data_rec(3, 100, 61'000, LOUPE_DIR_EGRESS, headers);
    auto* e = reinterpret_cast<loupe_data_event*>(joined.data());
    e->length = headers.size() + 5000;  // the body went by sendfile
    e->spread_ns = 10'000;              // the headers were written at 51 us
    t.on_record(joined);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].duration_ns, 60'000u);

    t.on_record(open_rec(4, 100, LOUPE_ROLE_CLIENT, "cli", 40000, 8080));
    const std::string post = "POST /up HTTP/1.1\r\nContent-Length: 800\r\n\r\n";
    auto upload = data_rec(4, 100, 5'000, LOUPE_DIR_EGRESS, post);
    auto* u = reinterpret_cast<loupe_data_event*>(upload.data());
    u->length = post.size() + 800;
    u->spread_ns = 4'000;  // request headers at 1 us, body by sendfile until 5 us
    t.on_record(upload);
    t.on_record(data_rec(4, 100, 9'000, LOUPE_DIR_INGRESS, kResponse));
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[1].duration_ns, 8'000u);
}

TEST_F(Fixture, ClientSideCarriesServerAddress) {
    auto t = make();
    t.on_record(open_rec(4, 100, LOUPE_ROLE_CLIENT, "cli", 40000, 8080));
    t.on_record(data_rec(4, 100, 1'000, LOUPE_DIR_EGRESS, kRequest));
    t.on_record(data_rec(4, 100, 9'000, LOUPE_DIR_INGRESS, kResponse));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].side, protocols::Side::kClient);
    EXPECT_EQ(seen[0].server_address, "10.1.2.3");
    EXPECT_EQ(seen[0].server_port, 8080);
}

TEST_F(Fixture, ReusedFdNeverPairsAcrossConnections) {
    auto t = make();
    t.on_record(open_rec(3, 100, LOUPE_ROLE_SERVER));
    t.on_record(data_rec(3, 100, 1'000, LOUPE_DIR_INGRESS, kRequest));
    // The close was lost; the fd comes back as a new connection (new generation).
    t.on_record(open_rec(3, 200, LOUPE_ROLE_SERVER));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].status, 0);  // the old request: closed without response
    t.on_record(data_rec(3, 200, 5'000'000'000, LOUPE_DIR_INGRESS, kRequest));
    t.on_record(data_rec(3, 200, 5'000'001'000, LOUPE_DIR_EGRESS, kResponse));
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[1].duration_ns, 1'000u);  // not 5 s: no stranger's request was paired
    // A late event of the old generation is ignored and counted.
    t.on_record(data_rec(3, 100, 6'000'000'000, LOUPE_DIR_EGRESS, kResponse));
    EXPECT_EQ(t.counters().stale_generation_events, 1u);
    EXPECT_EQ(seen.size(), 2u);
}

TEST_F(Fixture, CloseEndsPendingRequests) {
    auto t = make();
    request_then_close(t);
    t.end_drain();  // the drain the close arrived in: the connection waits for late data
    EXPECT_TRUE(seen.empty());
    t.end_drain();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].status, 0);
    EXPECT_EQ(t.live_connections(), 0u);
}

// The kernel reports a reset (a TCP state change) inside the write that provoked it, before that
// write's own data event: the response still counts.
TEST_F(Fixture, DataAfterCloseInTheSameDrainStillCounts) {
    auto t = make();
    request_then_close(t);
    t.on_record(data_rec(3, 100, 2'100, LOUPE_DIR_EGRESS, kResponse));
    t.end_drain();
    t.end_drain();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].status, 200);
    EXPECT_EQ(seen[0].duration_ns, 1'100u);
    EXPECT_EQ(t.live_connections(), 0u);
}

TEST_F(Fixture, FinalFlushEndsClosedConnections) {
    auto t = make();
    request_then_close(t);
    t.end_all_closed();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(t.live_connections(), 0u);
}

TEST_F(Fixture, LostOpenEventStillTracksWithProcName) {
    auto t = make();
    t.on_record(data_rec(9, 300, 1'000, LOUPE_DIR_INGRESS, kRequest));
    t.on_record(data_rec(9, 300, 2'000, LOUPE_DIR_EGRESS, kResponse));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].service, "from-proc");
}

TEST_F(Fixture, MalformedRecordsAreCountedNotTrusted) {
    auto t = make();
    std::vector<std::uint8_t> tiny(3, 0);
    t.on_record(tiny);
    auto rec = data_rec(3, 1, 1, LOUPE_DIR_INGRESS, kRequest);
    reinterpret_cast<loupe_data_event*>(rec.data())->head_len = 4000;  // lies about its length
    t.on_record(rec);
    auto bad_kind = close_rec(3, 1, 1);
    reinterpret_cast<loupe_event_header*>(bad_kind.data())->kind = 99;
    t.on_record(bad_kind);
    EXPECT_EQ(t.counters().malformed_events, 3u);
    EXPECT_TRUE(seen.empty());
}

TEST_F(Fixture, TableCapEvictsLeastRecentlyUsed) {
    auto t = make();
    for (int fd = 0; fd < 6; ++fd)
        t.on_record(open_rec(fd, 100 + fd, LOUPE_ROLE_SERVER));
    EXPECT_EQ(t.live_connections(), 4u);
    EXPECT_EQ(t.counters().connections_evicted, 2u);
}

TEST_F(Fixture, SelectionByPortAndComm) {
    auto t = make(Selection{{}, {"srv"}, {8080}});
    t.on_record(open_rec(3, 100, LOUPE_ROLE_SERVER, "srv", 80));      // wrong port
    t.on_record(open_rec(4, 100, LOUPE_ROLE_SERVER, "srv", 8080));    // selected
    t.on_record(open_rec(5, 100, LOUPE_ROLE_SERVER, "other", 8080));  // wrong comm
    for (int fd = 3; fd <= 5; ++fd) {
        t.on_record(data_rec(fd, 100, 1'000, LOUPE_DIR_INGRESS, kRequest));
        t.on_record(data_rec(fd, 100, 2'000, LOUPE_DIR_EGRESS, kResponse));
    }
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(t.counters().exchanges, 3u);
}

// A read of two pipelined requests whose second starts past the data event's head: the kernel
// sends the rest in a chunk event, joined back before parsing. Both requests are answered.
TEST_F(Fixture, RequestPastTheHeadArrivesInAChunk) {
    auto t = make();
    const std::string first =
        "GET /first HTTP/1.1\r\nCookie: " + std::string(1100, 'c') + "\r\n\r\n";
    const std::string both = first + "GET /second HTTP/1.1\r\n\r\n";
    t.on_record(open_rec(3, 100, LOUPE_ROLE_SERVER));
    auto head = data_rec(3, 100, 1'000, LOUPE_DIR_INGRESS, both.substr(0, LOUPE_DATA_HEAD_MAX));
    auto* e = reinterpret_cast<loupe_data_event*>(head.data());
    e->length = both.size();
    e->captured = static_cast<std::uint32_t>(both.size());
    loupe_data_chunk_event chunk{};
    chunk.header = e->header;
    chunk.header.kind = LOUPE_EVENT_DATA_CHUNK;
    chunk.offset = LOUPE_DATA_HEAD_MAX;
    chunk.len = static_cast<std::uint16_t>(both.size() - LOUPE_DATA_HEAD_MAX);
    std::memcpy(chunk.data, both.data() + LOUPE_DATA_HEAD_MAX, chunk.len);
    std::vector<std::uint8_t> chunk_record(offsetof(loupe_data_chunk_event, data) + chunk.len);
    std::memcpy(chunk_record.data(), &chunk, chunk_record.size());
    t.on_record(head);
    t.on_record(chunk_record);
    t.on_record(data_rec(3, 100, 2'000, LOUPE_DIR_EGRESS, kResponse + kResponse));
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0].path, "/first");
    EXPECT_EQ(seen[1].path, "/second");
    EXPECT_EQ(t.counters().protocols[LOUPE_PROTOCOL_HTTP1].parser.desyncs, 0u);
}

// Without the chunk (past the copy cap), the second request is lost: the loss is counted.
TEST_F(Fixture, RequestPastTheCaptureIsCountedAsADesync) {
    auto t = make();
    const std::string first = "GET /first HTTP/1.1\r\n\r\n";
    t.on_record(open_rec(3, 100, LOUPE_ROLE_SERVER));
    auto head = data_rec(3, 100, 1'000, LOUPE_DIR_INGRESS, first + "GE");
    reinterpret_cast<loupe_data_event*>(head.data())->length = first.size() + 5000;
    t.on_record(head);
    t.end_drain();
    t.on_record(data_rec(3, 100, 2'000, LOUPE_DIR_EGRESS, kResponse));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(t.counters().protocols[LOUPE_PROTOCOL_HTTP1].parser.desyncs, 1u);
}

// A Redis connection (as the kernel classified it) gets Redis's parser from the registry.
TEST_F(Fixture, RedisConnectionsGetTheRedisParser) {
    std::vector<protocols::Request> requests;
    std::vector<std::string> operations;
    ConnectionTracker t(
        {}, 4,
        [&](const protocols::Request& r, const ConnectionTracker::Origin&) {
            requests.push_back(r);
            operations.emplace_back(r.operation);
        },
        [](std::uint32_t) { return std::string("redis-server"); });
    t.on_record(open_rec(5, 200, LOUPE_ROLE_SERVER));
    t.on_record(data_rec(5, 200, 1'000, LOUPE_DIR_INGRESS, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
                         LOUPE_PROTOCOL_REDIS));
    t.on_record(data_rec(5, 200, 9'000, LOUPE_DIR_EGRESS, "$-1\r\n", LOUPE_PROTOCOL_REDIS));
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0].protocol, protocols::Protocol::kRedis);
    EXPECT_EQ(requests[0].side, protocols::Side::kServer);
    EXPECT_EQ(operations[0], "GET");
    EXPECT_EQ(requests[0].cache_misses, 1u);
    EXPECT_EQ(requests[0].end_ns - requests[0].start_ns, 8'000u);
    EXPECT_EQ(t.counters().protocols[LOUPE_PROTOCOL_REDIS].requests, 1u);
}

// A protocol's own counters (MetricSpec::parser_counters) reach the pipeline's totals, once each,
// live and after the connection ends.
std::uint64_t protocol_counter(const ConnectionTracker& t, protocols::Protocol protocol,
                               std::string_view name) {
    const auto& specs = protocols::find_protocol(protocol)->metrics->parser_counters;
    for (std::size_t i = 0; i < specs.size(); ++i)
        if (specs[i].name == name)
            return t.counters().protocols[static_cast<std::size_t>(protocol)].parser_specific[i];
    ADD_FAILURE() << "no counter " << name;
    return 0;
}

TEST_F(Fixture, ParserCountersReachThePipelinesTotals) {
    ConnectionTracker t = make();
    const std::string ssl_request("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8);
    for (std::int32_t fd : {3, 4}) {
        const std::uint64_t gen = 100 + static_cast<std::uint64_t>(fd);
        t.on_record(open_rec(fd, gen, LOUPE_ROLE_SERVER, "postgres", 5432));
        t.on_record(
            data_rec(fd, gen, 1'000, LOUPE_DIR_INGRESS, ssl_request, LOUPE_PROTOCOL_POSTGRES));
        t.on_record(data_rec(fd, gen, 2'000, LOUPE_DIR_EGRESS, "N", LOUPE_PROTOCOL_POSTGRES));
    }
    EXPECT_EQ(protocol_counter(t, protocols::Protocol::kPostgres, "ssl_requests"), 2u);
    EXPECT_EQ(protocol_counter(t, protocols::Protocol::kPostgres, "ssl_refused"), 2u);
    t.on_record(close_rec(3, 103, 3'000));
    t.end_all_closed();
    EXPECT_EQ(protocol_counter(t, protocols::Protocol::kPostgres, "ssl_refused"), 2u);
    EXPECT_EQ(protocol_counter(t, protocols::Protocol::kPostgres, "tls_connections"), 0u);

    // MySQL: the greeting, then the client's 32-byte SSL request (CLIENT_SSL, sequence id 1).
    std::string greeting(
        "\x0a"
        "10.11.6-MariaDB\0",
        17);
    greeting += std::string("\x01\x00\x00\x00", 4) + "abcdefgh" + std::string(1, '\0') +
                std::string("\xfe\xf7", 2) + "\x2d" + std::string("\x02\x00\xff\x81", 4) +
                std::string(1, '\x15') + std::string(6, '\0') + std::string(4, '\0') +
                "ijklmnopqrst" + std::string(1, '\0') + "mysql_native_password" +
                std::string(1, '\0');
    const auto packet = [](const std::string& payload, char sequence) {
        const auto n = payload.size();
        return std::string{static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                           static_cast<char>(n >> 16), sequence} +
               payload;
    };
    std::string ssl(32, '\0');
    ssl[0] = '\x00';  // CLIENT_PROTOCOL_41 (0x200) | CLIENT_SSL (0x800) | ...
    ssl[1] = '\x0a';
    ssl[2] = '\x08';  // CLIENT_PLUGIN_AUTH, CLIENT_SECURE_CONNECTION...
    ssl[8] = '\x2d';  // character set
    t.on_record(open_rec(6, 300, LOUPE_ROLE_CLIENT, "mariadb", 40000, 3306));
    t.on_record(
        data_rec(6, 300, 1'000, LOUPE_DIR_INGRESS, packet(greeting, 0), LOUPE_PROTOCOL_MYSQL));
    t.on_record(data_rec(6, 300, 2'000, LOUPE_DIR_EGRESS, packet(ssl, 1), LOUPE_PROTOCOL_MYSQL));
    EXPECT_EQ(protocol_counter(t, protocols::Protocol::kMysql, "tls_connections"), 1u);
    EXPECT_EQ(t.counters().protocols[LOUPE_PROTOCOL_MYSQL].parser.unparsed_segments, 0u);
}

}  // namespace
}  // namespace loupe::pipeline
