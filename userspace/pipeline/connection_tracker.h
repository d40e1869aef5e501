// Turns decoded capture events into requests: one protocol parser per live connection (made from
// the registry by the protocol the kernel classified it as), keyed by (tgid, fd) and checked
// against the connection's generation.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include <array>
#include <memory>

#include "capture/event_decoder.h"
#include "capture/segment_assembler.h"
#include "protocols/protocol.h"

namespace loupe::pipeline {

// Which processes and connections are reported (--pid, --comm, --port). Empty = everything.
struct Selection {
    std::vector<std::uint32_t> pids;
    std::vector<std::string> comms;
    std::vector<std::uint16_t> ports;  // local port of a server connection, remote of a client
};

// Per protocol (index: protocols::Protocol).
struct ProtocolCounters {
    std::uint64_t requests = 0;  // requests/operations reported (selected or not)
    protocols::ParserStats parser;
    // The protocol's own counters (its MetricSpec::parser_counters, same order).
    std::array<std::uint64_t, protocols::kMaxParserCounters> parser_specific{};
};

struct PipelineCounters {
    std::uint64_t events = 0;
    std::uint64_t malformed_events = 0;
    std::uint64_t exchanges = 0;  // requests of every protocol
    std::array<ProtocolCounters, LOUPE_PROTOCOL_COUNT> protocols{};
    std::uint64_t stale_generation_events = 0;  // data for a generation we no longer track
    std::uint64_t connections_evicted = 0;      // table full: the least recently used went
    std::uint64_t connections_opened = 0;
};

// One end of a TCP connection: IPv4 as v4-mapped IPv6, so that both ends of a loopback
// connection compare equal whatever socket family each side used. Port 0: unknown.
struct Endpoint {
    std::array<std::uint8_t, 16> address{};
    std::uint16_t port = 0;
    bool operator==(const Endpoint&) const = default;
};

// An address of an open event (AF_INET: 4 bytes, AF_INET6: 16) as an Endpoint.
Endpoint make_endpoint(std::uint8_t family, const std::uint8_t* addr, std::uint16_t port);

class ConnectionTracker {
  public:
    // Where a request happened: the process, its service name (comm) and, for client-side
    // requests, the server called; for tracing, the thread whose read or write finished the
    // request and both ends of the connection.
    struct Origin {
        std::uint32_t tgid = 0;
        std::string_view service;
        std::string_view server_address;
        std::uint16_t server_port = 0;
        std::uint32_t tid = 0;
        Endpoint local{};
        Endpoint peer{};
    };
    // Gets each finished request of a selected connection; views valid during the call only.
    using Sink = std::function<void(const protocols::Request&, const Origin&)>;
    // Where a process's name comes from when its open event was missed (/proc/PID/comm in the
    // agent).
    using CommLookup = std::function<std::string(std::uint32_t tgid)>;

    ConnectionTracker(Selection selection, std::size_t max_connections, Sink sink,
                      CommLookup comm_lookup);

    void on_record(std::span<const std::uint8_t> record);
    void on_event(const capture::DecodedEvent& event);
    // Called after each drain of the ring buffer: ends the connections whose close arrived in an
    // earlier drain. A close is seen by the kernel in TCP state changes, which can run before the
    // closing process's own last read or write is reported (a reset on loopback is handled inside
    // the write that provoked it), so a connection stays open for late data until one more drain.
    void end_drain();
    // Ends every closed connection now (final flush).
    void end_all_closed();

    const PipelineCounters& counters() const { return counters_; }
    std::size_t live_connections() const { return conns_.size(); }

  private:
    struct Connection {
        std::uint64_t generation = 0;
        std::uint32_t tgid = 0;
        std::string service;
        bool selected = true;
        std::string peer_address;  // the server's address, for client-side series
        std::uint16_t peer_port = 0;
        std::uint16_t local_port = 0;
        Endpoint local_end{}, peer_end{};
        std::uint32_t last_tid = 0;  // of the latest read or write
        bool tls = false;            // its data is TLS plaintext (LOUPE_EVENT_FLAG_TLS)
        std::uint64_t last_seen_ns = 0;
        std::uint64_t closed_ns = 0;  // close event seen: ends at the next end_drain()
        std::uint64_t closed_in_drain = 0;
        protocols::Side side_hint = protocols::Side::kUnknown;
        protocols::Protocol protocol = protocols::Protocol::kUnknown;  // of `parser`
        std::unique_ptr<protocols::ConnectionParser> parser;           // made at its first data
        protocols::ParserStats reported{};  // parser stats already added to counters_
        // protocol_counters() already added to counters_ (as many as the protocol has).
        std::array<std::uint64_t, protocols::kMaxParserCounters> reported_specific{};
    };
    class Emitter;
    static std::uint64_t key_of(std::uint32_t tgid, std::int32_t fd) {
        return (std::uint64_t{tgid} << 32) | static_cast<std::uint32_t>(fd);
    }

    Connection& open(const loupe_conn_ref& ref, protocols::Side side, std::string service,
                     std::uint64_t now_ns);
    // The connection's parser for data of `protocol` (a newly classified connection gets one of
    // its protocol); null when no parser is registered for it.
    protocols::ConnectionParser* parser_for(Connection& conn, protocols::Protocol protocol);
    void account_stats(Connection& conn);
    bool selected(std::uint32_t tgid, const std::string& comm, std::uint16_t port) const;
    void evict_one();
    // Ends a connection: what it had pending is reported as closed at `at_ns`.
    void finish(std::unordered_map<std::uint64_t, Connection>::iterator it, std::uint64_t at_ns);

    Selection selection_;
    std::size_t max_connections_;
    Sink sink_;
    CommLookup comm_lookup_;
    std::unordered_map<std::uint64_t, Connection> conns_;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> closing_;  // (key, generation)
    std::uint64_t drain_ = 0;
    capture::SegmentAssembler assembler_;  // joins a read or write's chunks to its data event
    PipelineCounters counters_;
};

std::string format_address(std::uint8_t family, const std::uint8_t* addr);

}  // namespace loupe::pipeline
