#include "export/otlp/trace_joiner.h"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "aggregate/request_metrics.h"

namespace loupe::otlp {
namespace {

// How far a server span may stick out of its client's span on the same connection: the two ends
// are stamped by different processes, and a server's write is stamped when its hook runs unless
// the TCP stack already sent every byte (capture's write_time), which on loopback can be after
// the client has read the reply. Consecutive requests of one connection still pick the right
// client span: the one that started last among those that fit.
constexpr std::uint64_t kConnectionSlackNs = 1'000'000;

// Latest spans of a thread or connection looked at for a parent.
constexpr std::size_t kMaxCandidates = 32;

using protocols::Protocol;
using protocols::Side;

std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

std::uint64_t hash_endpoint(const pipeline::Endpoint& e, std::uint64_t seed) {
    std::uint64_t a = 0, b = 0;
    std::memcpy(&a, e.address.data(), 8);
    std::memcpy(&b, e.address.data() + 8, 8);
    return mix(seed ^ mix(a ^ mix(b ^ (std::uint64_t{e.port} << 48))));
}

// (client end, server end) of a connection, the same from either side.
std::uint64_t tuple_key(const pipeline::Endpoint& client, const pipeline::Endpoint& server) {
    return hash_endpoint(server, hash_endpoint(client, 0x9e3779b97f4a7c15ULL));
}

int hex(char c) {
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

template <std::size_t N>
void read_hex(std::string_view text, std::array<std::uint8_t, N>& out) {
    for (std::size_t i = 0; i < N; ++i)
        out[i] = static_cast<std::uint8_t>(hex(text[2 * i]) * 16 + hex(text[2 * i + 1]));
}

template <std::size_t N>
void fill_random(std::mt19937_64& random, std::array<std::uint8_t, N>& out) {
    for (std::size_t i = 0; i < N; i += 8) {
        const std::uint64_t r = random();
        std::memcpy(out.data() + i, &r, std::min<std::size_t>(8, N - i));
    }
    if (std::all_of(out.begin(), out.end(), [](std::uint8_t b) { return b == 0; })) out[0] = 1;
}

std::string_view db_system_of(const protocols::Request& request,
                              const protocols::MetricSpec& spec) {
    if (!request.system_name.empty()) return request.system_name;
    for (const auto& label : spec.server.labels)
        if (label.field == protocols::KeyField::kSystem) return label.constant;
    return spec.system;
}

}  // namespace

bool parse_traceparent(std::string_view text, TraceId& trace, SpanId& parent, bool& sampled) {
    if (text.size() != 55 || text.substr(0, 3) != "00-" || text[35] != '-' || text[52] != '-')
        return false;
    for (std::size_t i = 3; i < 55; ++i) {
        if (i == 35 || i == 52) continue;
        const char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    read_hex(text.substr(3, 32), trace);
    read_hex(text.substr(36, 16), parent);
    sampled = (hex(text[54]) & 1) != 0;
    auto zero = [](const auto& a) {
        return std::all_of(a.begin(), a.end(), [](std::uint8_t b) { return b == 0; });
    };
    return !zero(trace) && !zero(parent);
}

std::int64_t measure_unix_offset() {
    std::int64_t best_offset = 0;
    std::int64_t best_bracket = std::numeric_limits<std::int64_t>::max();
    auto ns = [](const timespec& ts) {
        return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    };
    for (int i = 0; i < 7; ++i) {
        timespec m0{}, r{}, m1{};
        clock_gettime(CLOCK_MONOTONIC, &m0);
        clock_gettime(CLOCK_REALTIME, &r);
        clock_gettime(CLOCK_MONOTONIC, &m1);
        const std::int64_t bracket = ns(m1) - ns(m0);
        if (bracket < best_bracket) {
            best_bracket = bracket;
            best_offset = ns(r) - (ns(m0) + bracket / 2);
        }
    }
    return best_offset;
}

TraceJoiner::TraceJoiner(JoinerOptions options, std::int64_t unix_offset_ns)
    : options_(options), unix_offset_ns_(unix_offset_ns), random_(std::random_device{}()) {}

void TraceJoiner::add(const protocols::Request& request,
                      const pipeline::ConnectionTracker::Origin& origin, std::string_view service,
                      std::uint64_t now_ns, std::uint64_t series_id) {
    const protocols::MetricSpec* spec = aggregate::metric_spec(request.protocol);
    if (!spec) return;
    ++counters_.spans;
    Entry& e = entries_.emplace_back();
    const std::uint64_t seq = first_seq_ + entries_.size() - 1;
    Span& s = e.span;
    s.protocol = request.protocol;
    s.side = request.side == Side::kClient ? Side::kClient : Side::kServer;
    s.service = service;
    s.pid = origin.tgid;
    s.executable = origin.service;
    s.operation = request.operation;
    s.series_id = series_id;
    fill_random(random_, s.span_id);
    e.start_ns = request.start_ns;
    e.end_ns = std::max(request.end_ns, request.start_ns);
    e.arrived_ns = now_ns;
    s.start_unix_ns =
        static_cast<std::uint64_t>(static_cast<std::int64_t>(e.start_ns) + unix_offset_ns_);
    s.end_unix_ns =
        static_cast<std::uint64_t>(static_cast<std::int64_t>(e.end_ns) + unix_offset_ns_);
    if (s.side == Side::kClient) {
        s.server_address = origin.server_address;
        s.server_port = origin.server_port;
    }
    std::array<char, 16> scratch{};
    const std::string_view status = spec->status ? spec->status(request, scratch) : "";
    const bool failed = spec->is_error && spec->is_error(s.side, status);
    if (request.protocol == Protocol::kHttp1) {
        if (spec->normalize_target && !request.target.empty())
            s.route = spec->normalize_target(request.target);
        s.http_status = request.status;
        s.name = s.route.empty() ? s.operation : s.operation + " " + s.route;
        if (failed) s.error_type = request.status == 0 ? "closed" : std::string(status);
    } else {
        s.db_system = db_system_of(request, *spec);
        s.db_namespace = request.db_namespace;
        s.db_summary = request.target;
        s.db_collection = request.collection;
        if (!s.db_summary.empty())
            s.name = s.db_summary;
        else if (!s.db_collection.empty())
            s.name = s.operation + " " + s.db_collection;
        else
            s.name = s.operation.empty() ? s.db_system : s.operation;
        if (!request.error.empty()) s.error_type = request.error;
    }
    if (s.side == Side::kServer && !request.traceparent.empty())
        e.has_remote = parse_traceparent(request.traceparent, e.remote_trace, e.remote_parent,
                                         s.sampled_by_caller);
    // Indexes for the spans that arrive later to find this one.
    if (s.side == Side::kServer) {
        e.thread_key = (std::uint64_t{origin.tgid} << 32) | origin.tid;
        if (origin.tid != 0) servers_by_thread_[e.thread_key].push_back(seq);
        if (origin.local.port != 0 && origin.peer.port != 0) {
            e.tuple_key = tuple_key(origin.peer, origin.local);
            if (e.has_remote) remote_servers_by_tuple_[e.tuple_key].push_back(seq);
        }
    } else {
        e.thread_key = (std::uint64_t{origin.tgid} << 32) | origin.tid;
        if (origin.local.port != 0 && origin.peer.port != 0) {
            e.tuple_key = tuple_key(origin.local, origin.peer);
            clients_by_tuple_[e.tuple_key].push_back(seq);
        }
    }
}

TraceJoiner::Entry* TraceJoiner::find(std::uint64_t seq) {
    if (seq < first_seq_ || seq - first_seq_ >= entries_.size()) return nullptr;
    return &entries_[seq - first_seq_];
}

void TraceJoiner::resolve_parent(std::uint64_t seq) {
    Entry* e = find(seq);
    if (!e || e->parent_resolved) return;
    e->parent_resolved = true;
    // The innermost enclosing span of `side` under `key` (the latest start); its seq, or none.
    auto enclosing = [&](auto& index, std::uint64_t key, Side side,
                         std::uint64_t slack_ns) -> std::optional<std::uint64_t> {
        std::optional<std::uint64_t> best;
        std::uint64_t best_start = 0;
        const auto found = index.find(key);
        if (found == index.end()) return best;
        const auto& seqs = found->second;
        std::size_t looked = 0;
        for (auto it = seqs.rbegin(); it != seqs.rend() && looked < kMaxCandidates;
             ++it, ++looked) {
            if (*it == seq) continue;
            const Entry* candidate = find(*it);
            if (!candidate || candidate->span.side != side) continue;
            if (candidate->start_ns > e->start_ns + slack_ns ||
                candidate->end_ns + slack_ns < e->end_ns)
                continue;
            if (!best || candidate->start_ns > best_start) {
                best = *it;
                best_start = candidate->start_ns;
            }
        }
        return best;
    };
    std::optional<std::uint64_t> parent;
    if (e->span.side == Side::kServer) {
        // An incoming traceparent wins over the client span on this host: it names the caller's
        // own span.
        if (e->tuple_key != 0 && !e->has_remote)
            parent = enclosing(clients_by_tuple_, e->tuple_key, Side::kClient, kConnectionSlackNs);
        if (parent) ++counters_.parent_connection;
    } else if ((e->thread_key & 0xffffffffu) != 0) {
        parent = enclosing(servers_by_thread_, e->thread_key, Side::kServer, 0);
        if (parent) ++counters_.parent_thread;
    }
    if (parent) {
        e->has_local_parent = true;
        e->parent_seq = *parent;
        e->span.parent_span_id = find(*parent)->span.span_id;
    } else if (e->has_remote) {
        e->span.parent_span_id = e->remote_parent;
        ++counters_.parent_traceparent;
    }
}

const TraceId& TraceJoiner::trace_of(std::uint64_t seq, int depth) {
    Entry* e = find(seq);
    resolve_parent(seq);
    if (e->trace_fixed) return e->span.trace_id;
    e->trace_fixed = true;  // before recursing: a cycle ends here
    if (e->has_local_parent && depth < 64 && find(e->parent_seq)) {
        e->span.trace_id = trace_of(e->parent_seq, depth + 1);
        e = find(seq);
    } else if (e->has_remote) {
        e->span.trace_id = e->remote_trace;
    } else {
        fill_random(random_, e->span.trace_id);
        if (e->span.side == Side::kClient && e->tuple_key != 0) {
            // The server it called continued a traceparent (this process sent it): that trace.
            const auto found = remote_servers_by_tuple_.find(e->tuple_key);
            if (found != remote_servers_by_tuple_.end())
                for (const std::uint64_t server_seq : found->second) {
                    const Entry* server = find(server_seq);
                    if (server && server->start_ns >= e->start_ns && server->end_ns <= e->end_ns) {
                        e->span.trace_id = server->remote_trace;
                        break;
                    }
                }
        }
    }
    return e->span.trace_id;
}

bool TraceJoiner::keep(const Entry& entry) const {
    if (!entry.span.error_type.empty()) return true;
    if (entry.end_ns - entry.start_ns >= options_.always_keep_over_ns) return true;
    if (options_.sampling_ratio >= 1.0) return true;
    if (options_.sampling_ratio <= 0.0) return false;
    // TraceIdRatioBased: the trace id's last 8 bytes against the ratio, the same for every span.
    std::uint64_t low = 0;
    for (std::size_t i = 8; i < 16; ++i)
        low = (low << 8) | entry.span.trace_id[i];
    return static_cast<double>(low >> 11) <
           options_.sampling_ratio * static_cast<double>(std::uint64_t{1} << 53);
}

void TraceJoiner::release(std::uint64_t now_ns, std::vector<Span>& out, bool everything) {
    const bool over = entries_.size() > options_.max_held;
    while (next_release_ < entries_.size()) {
        Entry& e = entries_[next_release_];
        const bool due = everything || e.arrived_ns + options_.hold_ns <= now_ns;
        const bool forced = !due && entries_.size() - next_release_ > options_.max_held / 2 && over;
        if (!due && !forced) break;
        if (forced) ++counters_.released_early;
        const std::uint64_t seq = first_seq_ + next_release_;
        trace_of(seq);
        Entry& entry = entries_[next_release_];
        entry.released = true;
        if (keep(entry))
            out.push_back(std::move(entry.span));
        else
            ++counters_.sampled_out;
        // What later spans still look up: ids, times and the trace (span moved out above).
        ++next_release_;
    }
    // Released spans stay for another hold to be found as parents, then go.
    while (!entries_.empty() && entries_.front().released &&
           (everything || entries_.front().arrived_ns + 2 * options_.hold_ns <= now_ns ||
            entries_.size() > options_.max_held)) {
        forget_front();
    }
}

void TraceJoiner::forget_front() {
    const Entry& e = entries_.front();
    const std::uint64_t seq = first_seq_;
    auto erase = [seq](Index& index, std::uint64_t key) {
        const auto it = index.find(key);
        if (it == index.end()) return;
        if (!it->second.empty() && it->second.front() == seq) it->second.pop_front();
        if (it->second.empty()) index.erase(it);
    };
    if (e.span.side == Side::kServer) {
        erase(servers_by_thread_, e.thread_key);
        if (e.has_remote && e.tuple_key != 0) erase(remote_servers_by_tuple_, e.tuple_key);
    } else if (e.tuple_key != 0) {
        erase(clients_by_tuple_, e.tuple_key);
    }
    entries_.pop_front();
    ++first_seq_;
    if (next_release_ > 0) --next_release_;
}

}  // namespace loupe::otlp
