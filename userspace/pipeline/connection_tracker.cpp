#include "pipeline/connection_tracker.h"

#include <arpa/inet.h>

#include <algorithm>

namespace loupe::pipeline {

std::string format_address(std::uint8_t family, const std::uint8_t* addr) {
    char text[INET6_ADDRSTRLEN] = {};
    if (family == 2 /* AF_INET */) {
        inet_ntop(AF_INET, addr, text, sizeof(text));
    } else if (family == 10 /* AF_INET6 */) {
        // An IPv4 client on a dual-stack socket shows up v4-mapped: print it as IPv4.
        static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::equal(kMapped, kMapped + 12, addr))
            inet_ntop(AF_INET, addr + 12, text, sizeof(text));
        else
            inet_ntop(AF_INET6, addr, text, sizeof(text));
    }
    return text;
}

ConnectionTracker::ConnectionTracker(Selection selection, std::size_t max_connections, Sink sink,
                                     CommLookup comm_lookup)
    : selection_(std::move(selection)),
      max_connections_(std::max<std::size_t>(max_connections, 1)),
      sink_(std::move(sink)),
      comm_lookup_(std::move(comm_lookup)) {}

bool ConnectionTracker::selected(std::uint32_t tgid, const std::string& comm,
                                 std::uint16_t port) const {
    auto contains = [](const auto& v, const auto& x) {
        return std::find(v.begin(), v.end(), x) != v.end();
    };
    if (!selection_.pids.empty() && !contains(selection_.pids, tgid)) return false;
    if (!selection_.comms.empty() && !contains(selection_.comms, comm)) return false;
    if (!selection_.ports.empty() && !contains(selection_.ports, port)) return false;
    return true;
}

void ConnectionTracker::on_record(std::span<const std::uint8_t> record) {
    assembler_.add(capture::decode_event(record),
                   [this](const capture::DecodedEvent& event) { on_event(event); });
}

ConnectionTracker::Connection& ConnectionTracker::open(const loupe_conn_ref& ref, http1::Role role,
                                                       std::string service, std::uint64_t now_ns) {
    const std::uint64_t key = key_of(ref.tgid, ref.fd);
    auto it = conns_.find(key);
    if (it != conns_.end()) {
        // A reused fd: whatever the old connection had pending ends as closed without response.
        finish(it, it->second.closed_ns ? it->second.closed_ns : it->second.last_seen_ns);
    } else if (conns_.size() >= max_connections_) {
        evict_one();
    }
    ++counters_.connections_opened;
    Connection& conn = conns_
                           .try_emplace(key, Connection{ref.generation,
                                                        ref.tgid,
                                                        std::move(service),
                                                        true,
                                                        {},
                                                        0,
                                                        0,
                                                        now_ns,
                                                        0,
                                                        0,
                                                        http1::Http1Connection(role),
                                                        {},
                                                        0})
                           .first->second;
    return conn;
}

void ConnectionTracker::finish(std::unordered_map<std::uint64_t, Connection>::iterator it,
                               std::uint64_t at_ns) {
    scratch_.clear();
    it->second.parser.on_close(std::max(at_ns, it->second.last_seen_ns), scratch_);
    emit(it->second, scratch_);
    account_stats(it->second);
    conns_.erase(it);
}

void ConnectionTracker::end_drain() {
    // A drain releases a data event's chunks with it: one still waiting for them gets none.
    assembler_.flush([this](const capture::DecodedEvent& event) { on_event(event); });
    std::erase_if(closing_, [this](const std::pair<std::uint64_t, std::uint64_t>& entry) {
        auto it = conns_.find(entry.first);
        if (it == conns_.end() || it->second.generation != entry.second) return true;  // gone
        if (it->second.closed_in_drain == drain_) return false;  // closed in this drain: wait
        finish(it, it->second.closed_ns);
        return true;
    });
    ++drain_;
}

void ConnectionTracker::end_all_closed() {
    ++drain_;  // every close now lies in an earlier drain
    end_drain();
}

void ConnectionTracker::evict_one() {
    auto oldest = std::min_element(conns_.begin(), conns_.end(), [](const auto& a, const auto& b) {
        return a.second.last_seen_ns < b.second.last_seen_ns;
    });
    if (oldest == conns_.end()) return;
    account_stats(oldest->second);
    conns_.erase(oldest);
    ++counters_.connections_evicted;
}

void ConnectionTracker::account_stats(Connection& conn) {
    const auto& now = conn.parser.stats();
    counters_.unparsed_segments += now.unparsed_segments - conn.reported.unparsed_segments;
    counters_.unmatched_responses += now.unmatched_responses - conn.reported.unmatched_responses;
    counters_.dropped_requests += now.dropped_requests - conn.reported.dropped_requests;
    conn.reported = now;
    counters_.desyncs += conn.parser.framing_stats().desyncs - conn.reported_desyncs;
    conn.reported_desyncs = conn.parser.framing_stats().desyncs;
}

void ConnectionTracker::emit(Connection& conn, std::vector<http1::Exchange>& exchanges) {
    for (const auto& ex : exchanges) {
        ++counters_.exchanges;
        if (!conn.selected) continue;
        aggregate::HttpObservation obs;
        obs.side = ex.role == http1::Role::kClient ? aggregate::HttpSide::kClient
                                                   : aggregate::HttpSide::kServer;
        obs.tgid = conn.tgid;
        obs.service = conn.service;
        obs.method = ex.method;
        obs.path = ex.path;
        obs.status = ex.status;
        if (obs.side == aggregate::HttpSide::kClient) {
            obs.server_address = conn.peer_address;
            obs.server_port = conn.peer_port;
        }
        obs.duration_ns = ex.end_ns >= ex.start_ns ? ex.end_ns - ex.start_ns : 0;
        sink_(obs);
    }
    exchanges.clear();
}

void ConnectionTracker::on_event(const capture::DecodedEvent& event) {
    ++counters_.events;
    if (const auto* open_ev = std::get_if<capture::ConnOpen>(&event)) {
        const auto& e = *open_ev->event;
        const http1::Role role = e.role == LOUPE_ROLE_SERVER   ? http1::Role::kServer
                                 : e.role == LOUPE_ROLE_CLIENT ? http1::Role::kClient
                                                               : http1::Role::kUnknown;
        Connection& conn =
            open(e.header.conn, role, std::string(open_ev->comm()), e.header.timestamp_ns);
        conn.peer_address = format_address(e.family, e.remote_addr);
        conn.peer_port = e.remote_port;
        conn.local_port = e.local_port;
        // Role unknown: a selected port may be either end.
        const std::uint16_t port = role == http1::Role::kClient ? e.remote_port : e.local_port;
        conn.selected = selected(e.header.conn.tgid, conn.service, port) ||
                        (role == http1::Role::kUnknown &&
                         selected(e.header.conn.tgid, conn.service, e.remote_port));
        return;
    }
    if (const auto* data = std::get_if<capture::DataSegment>(&event)) {
        const auto& e = *data->event;
        // Only HTTP/1 has a parser here so far: another protocol's data is not HTTP garbage.
        if (e.header.protocol != LOUPE_PROTOCOL_UNKNOWN &&
            e.header.protocol != LOUPE_PROTOCOL_HTTP1)
            return;
        const std::uint64_t key = key_of(e.header.conn.tgid, e.header.conn.fd);
        auto it = conns_.find(key);
        Connection* conn = it == conns_.end() ? nullptr : &it->second;
        if (conn && conn->generation != e.header.conn.generation) {
            if (e.header.conn.generation < conn->generation) {
                ++counters_.stale_generation_events;  // a late event of a closed connection
                return;
            }
            conn = nullptr;  // newer generation whose open event was lost: start over
        }
        if (!conn) {
            // Open event missed (ring buffer full): track it anyway; addresses stay unknown.
            std::string comm = comm_lookup_ ? comm_lookup_(e.header.conn.tgid) : std::string();
            conn =
                &open(e.header.conn, http1::Role::kUnknown, std::move(comm), e.header.timestamp_ns);
            conn->selected =
                selection_.ports.empty() && selected(e.header.conn.tgid, conn->service, 0);
        }
        conn->last_seen_ns = e.header.timestamp_ns;
        http1::Segment segment;
        segment.direction = e.direction == LOUPE_DIR_EGRESS ? http1::Direction::kEgress
                                                            : http1::Direction::kIngress;
        segment.timestamp_ns = e.header.timestamp_ns;
        segment.first_timestamp_ns =
            e.header.timestamp_ns - std::min<std::uint64_t>(e.spread_ns, e.header.timestamp_ns);
        segment.length = e.length;
        segment.head = data->head();
        segment.tail = data->tail();
        scratch_.clear();
        conn->parser.on_segment(segment, scratch_);
        emit(*conn, scratch_);
        account_stats(*conn);
        return;
    }
    if (const auto* close_ev = std::get_if<capture::ConnClose>(&event)) {
        const auto& e = *close_ev->event;
        const std::uint64_t key = key_of(e.header.conn.tgid, e.header.conn.fd);
        auto it = conns_.find(key);
        if (it == conns_.end() || it->second.generation != e.header.conn.generation ||
            it->second.closed_ns != 0)
            return;
        it->second.closed_ns = e.header.timestamp_ns;
        it->second.closed_in_drain = drain_;
        closing_.emplace_back(key, e.header.conn.generation);
        return;
    }
    ++counters_.malformed_events;
}

}  // namespace loupe::pipeline
