#include "pipeline/connection_tracker.h"

#include <arpa/inet.h>

#include <algorithm>

#include "protocols/registry.h"

namespace loupe::pipeline {

using protocols::Protocol;
using protocols::Side;

// Counts every request of a connection and hands those of a selected one to the sink.
class ConnectionTracker::Emitter final : public protocols::RequestSink {
  public:
    Emitter(ConnectionTracker& tracker, const Connection& conn) : tracker_(tracker), conn_(conn) {}
    void on_request(const protocols::Request& request) override {
        ++tracker_.counters_.exchanges;
        ++tracker_.counters_
              .protocols[static_cast<std::size_t>(request.protocol) % LOUPE_PROTOCOL_COUNT]
              .requests;
        if (!conn_.selected) return;
        Origin origin{conn_.tgid,      conn_.service, {}, 0, conn_.last_tid,
                      conn_.local_end, conn_.peer_end};
        if (request.side == Side::kClient) {
            origin.server_address = conn_.peer_address;
            origin.server_port = conn_.peer_port;
        }
        if (!conn_.tls) {
            tracker_.sink_(request, origin);
            return;
        }
        protocols::Request tls_request = request;
        tls_request.tls = true;
        tracker_.sink_(tls_request, origin);
    }

  private:
    ConnectionTracker& tracker_;
    const Connection& conn_;
};

Endpoint make_endpoint(std::uint8_t family, const std::uint8_t* addr, std::uint16_t port) {
    Endpoint end;
    end.port = port;
    if (family == 2 /* AF_INET */) {
        end.address[10] = end.address[11] = 0xff;
        std::copy(addr, addr + 4, end.address.begin() + 12);
    } else if (family == 10 /* AF_INET6 */) {
        std::copy(addr, addr + 16, end.address.begin());
    } else {
        end.port = 0;
    }
    return end;
}

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

ConnectionTracker::Connection& ConnectionTracker::open(const loupe_conn_ref& ref, Side side,
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
    Connection& conn = conns_[key];
    conn.generation = ref.generation;
    conn.tgid = ref.tgid;
    conn.service = std::move(service);
    conn.last_seen_ns = now_ns;
    conn.side_hint = side;
    return conn;
}

protocols::ConnectionParser* ConnectionTracker::parser_for(Connection& conn, Protocol protocol) {
    // Data the kernel had not classified yet (it sends a connection's first few reads and writes
    // before it gives up on one that is no protocol it knows) goes to the parser the connection
    // has, else to HTTP/1's, which counts what is no HTTP as unparsed.
    if (protocol == Protocol::kUnknown) protocol = conn.parser ? conn.protocol : Protocol::kHttp1;
    if (conn.parser && conn.protocol == protocol) return conn.parser.get();
    const auto* info = protocols::find_protocol(protocol);
    if (!info || !info->make_parser) return nullptr;
    if (conn.parser) account_stats(conn);  // what the old parser counted stays counted
    conn.parser = info->make_parser(conn.side_hint);
    conn.protocol = protocol;
    conn.reported = {};
    conn.reported_specific = {};
    return conn.parser.get();
}

void ConnectionTracker::finish(std::unordered_map<std::uint64_t, Connection>::iterator it,
                               std::uint64_t at_ns) {
    Connection& conn = it->second;
    if (conn.parser) {
        Emitter emitter(*this, conn);
        conn.parser->on_close(std::max(at_ns, conn.last_seen_ns), emitter);
        account_stats(conn);
    }
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
    if (!conn.parser) return;
    const auto& now = conn.parser->stats();
    auto& into =
        counters_.protocols[static_cast<std::size_t>(conn.protocol) % LOUPE_PROTOCOL_COUNT].parser;
    into.unparsed_segments += now.unparsed_segments - conn.reported.unparsed_segments;
    into.unmatched_responses += now.unmatched_responses - conn.reported.unmatched_responses;
    into.dropped_requests += now.dropped_requests - conn.reported.dropped_requests;
    into.desyncs += now.desyncs - conn.reported.desyncs;
    into.pushes += now.pushes - conn.reported.pushes;
    conn.reported = now;
    const auto specific = conn.parser->protocol_counters();
    auto& specific_into =
        counters_.protocols[static_cast<std::size_t>(conn.protocol) % LOUPE_PROTOCOL_COUNT]
            .parser_specific;
    for (std::size_t i = 0; i < specific.size() && i < specific_into.size(); ++i) {
        specific_into[i] += specific[i] - conn.reported_specific[i];
        conn.reported_specific[i] = specific[i];
    }
}

void ConnectionTracker::on_event(const capture::DecodedEvent& event) {
    ++counters_.events;
    if (const auto* open_ev = std::get_if<capture::ConnOpen>(&event)) {
        const auto& e = *open_ev->event;
        const Side role = e.role == LOUPE_ROLE_SERVER   ? Side::kServer
                          : e.role == LOUPE_ROLE_CLIENT ? Side::kClient
                                                        : Side::kUnknown;
        Connection& conn =
            open(e.header.conn, role, std::string(open_ev->comm()), e.header.timestamp_ns);
        conn.peer_address = format_address(e.family, e.remote_addr);
        conn.peer_port = e.remote_port;
        conn.local_port = e.local_port;
        conn.local_end = make_endpoint(e.family, e.local_addr, e.local_port);
        conn.peer_end = make_endpoint(e.family, e.remote_addr, e.remote_port);
        // Role unknown: a selected port may be either end.
        const std::uint16_t port = role == Side::kClient ? e.remote_port : e.local_port;
        conn.selected =
            selected(e.header.conn.tgid, conn.service, port) ||
            (role == Side::kUnknown && selected(e.header.conn.tgid, conn.service, e.remote_port));
        return;
    }
    if (const auto* data = std::get_if<capture::DataSegment>(&event)) {
        const auto& e = *data->event;
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
            conn = &open(e.header.conn, Side::kUnknown, std::move(comm), e.header.timestamp_ns);
            conn->selected =
                selection_.ports.empty() && selected(e.header.conn.tgid, conn->service, 0);
        }
        conn->last_seen_ns = e.header.timestamp_ns;
        conn->last_tid = e.header.tid;
        if (e.header.flags & LOUPE_EVENT_FLAG_TLS) conn->tls = true;
        protocols::ConnectionParser* parser =
            parser_for(*conn, static_cast<Protocol>(e.header.protocol));
        if (!parser) return;
        protocols::Segment segment;
        segment.direction = e.direction == LOUPE_DIR_EGRESS ? protocols::Direction::kEgress
                                                            : protocols::Direction::kIngress;
        segment.timestamp_ns = e.header.timestamp_ns;
        segment.first_timestamp_ns =
            e.header.timestamp_ns - std::min<std::uint64_t>(e.spread_ns, e.header.timestamp_ns);
        segment.length = e.length;
        segment.head = data->head();
        segment.tail = data->tail();
        segment.tls = (e.header.flags & LOUPE_EVENT_FLAG_TLS) != 0;
        Emitter emitter(*this, *conn);
        parser->on_segment(segment, emitter);
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
