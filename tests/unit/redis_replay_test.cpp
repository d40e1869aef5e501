// The Redis parser on real conversations: tests/unit/redis_conversation.py drives a real
// redis-server through a recording proxy (python3-redis with pipelines, MULTI/EXEC, WATCH,
// SELECT and pub/sub; redis-cli; redis-benchmark -P 1 and -P 16 with random keys; RESP3 with
// client-side caching and inline commands over raw sockets). Every recorded connection is fed to
// the parser as the server and as the client would see it, and what it reports is checked
// against Redis's own INFO commandstats, errorstats and keyspace_hits/misses deltas.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "protocols/redis/commands.h"
#include "protocols/redis/stitcher.h"

#ifndef LOUPE_REDIS_CONVERSATION
#error "LOUPE_REDIS_CONVERSATION: path of tests/unit/redis_conversation.py"
#endif

namespace loupe::redis {
namespace {

using protocols::Direction;
using protocols::Request;
using protocols::Segment;
using protocols::Side;

struct Chunk {
    bool close = false;
    bool to_server = false;
    std::uint64_t ts = 0;
    std::string data;
};

struct Recording {
    std::map<int, std::vector<Chunk>> conns;
    std::map<std::string, std::uint64_t> commands;  // commandstats name -> calls + rejected
    std::map<std::string, std::uint64_t> errors;    // errorstats prefix -> count
    std::uint64_t keyspace_hits = 0;
    std::uint64_t keyspace_misses = 0;
    std::set<int> get_only;
    std::string problem;  // why there is no recording
};

std::string unhex(const std::string& hex) {
    std::string out(hex.size() / 2, '\0');
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    return out;
}

bool has(const std::string& shell_test) {
    return std::system((shell_test + " >/dev/null 2>&1").c_str()) == 0;
}

Recording record() {
    Recording rec;
    for (const char* tool : {"redis-server", "redis-cli", "redis-benchmark"})
        if (!has(std::string("command -v ") + tool)) {
            rec.problem = std::string(tool) + " not found: run tools/install-deps.sh";
            return rec;
        }
    // python3-redis is installed for Debian's python3, which may not be the first on PATH.
    std::string python;
    for (const char* p : {"python3", "/usr/bin/python3"})
        if (has(std::string(p) + " -c 'import redis'")) {
            python = p;
            break;
        }
    if (python.empty()) {
        rec.problem = "no python3 with the redis module (python3-redis): run tools/install-deps.sh";
        return rec;
    }
    char path[] = "/tmp/loupe-redis-conversation-XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) {
        rec.problem = "mkstemp failed";
        return rec;
    }
    const std::string cmd = python + " " + LOUPE_REDIS_CONVERSATION + " " + path +
                            " 2>/tmp/loupe-redis-conversation.err";
    if (std::system(cmd.c_str()) != 0) {
        rec.problem = "redis_conversation.py failed (see /tmp/loupe-redis-conversation.err)";
        std::remove(path);
        return rec;
    }
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string kind;
        words >> kind;
        if (kind == "seg") {
            int conn = 0;
            std::string dir, hex;
            Chunk c;
            words >> conn >> dir >> c.ts >> hex;
            c.to_server = dir == "c2s";
            c.data = unhex(hex);
            rec.conns[conn].push_back(std::move(c));
        } else if (kind == "close") {
            int conn = 0;
            Chunk c;
            c.close = true;
            words >> conn >> c.ts;
            rec.conns[conn].push_back(c);
        } else if (kind == "cmdstat") {
            std::string name;
            std::uint64_t calls = 0, rejected = 0, failed = 0;
            words >> name >> calls >> rejected >> failed;
            if (calls + rejected > 0) rec.commands[name] = calls + rejected;
        } else if (kind == "errstat") {
            std::string name;
            std::uint64_t count = 0;
            words >> name >> count;
            if (count > 0) rec.errors[name] = count;
        } else if (kind == "keyspace") {
            words >> rec.keyspace_hits >> rec.keyspace_misses;
        } else if (kind == "getonly") {
            int conn = 0;
            words >> conn;
            rec.get_only.insert(conn);
        }
    }
    std::remove(path);
    return rec;
}

const Recording& recording() {
    static const Recording rec = record();
    return rec;
}

// "CONFIG GET" -> "config|get", as INFO commandstats names it.
std::string stat_name(std::string_view operation) {
    std::string s(operation);
    for (char& c : s) {
        if (c == ' ') c = '|';
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return s;
}

struct Totals : protocols::RequestSink {
    void on_request(const Request& r) override {
        EXPECT_LE(r.start_ns, r.end_ns);
        EXPECT_NE(r.error, "closed") << r.operation;  // every command here got its reply
        const std::string op(r.operation);
        if (find_command(op.substr(0, op.find(' '))) == nullptr)
            ++unknown[op];
        else
            ++commands[stat_name(op)];
        if (!r.error.empty()) ++errors[std::string(r.error)];
        if (get_only) {
            hits += r.cache_hits;
            misses += r.cache_misses;
        }
    }
    std::map<std::string, std::uint64_t> commands;
    std::map<std::string, std::uint64_t> unknown;
    std::map<std::string, std::uint64_t> errors;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    bool get_only = false;
    std::uint64_t desyncs = 0;
    std::uint64_t unmatched = 0;
    std::uint64_t pushes = 0;
};

// Feeds every connection to a parser as `view` sees it, each read/write captured up to
// head_cap bytes (and its last 16), and adds up what is reported.
Totals replay(const Recording& rec, Side view, Side hint, std::size_t head_cap) {
    Totals t;
    for (const auto& [conn, chunks] : rec.conns) {
        RedisConnection parser(hint);
        t.get_only = rec.get_only.count(conn) > 0;
        for (const Chunk& c : chunks) {
            if (c.close) {
                parser.on_close(c.ts, t);
                continue;
            }
            Segment s;
            s.direction =
                (c.to_server == (view == Side::kServer)) ? Direction::kIngress : Direction::kEgress;
            s.timestamp_ns = c.ts;
            s.length = c.data.size();
            const auto* bytes = reinterpret_cast<const std::uint8_t*>(c.data.data());
            s.head = {bytes, std::min(c.data.size(), head_cap)};
            if (c.data.size() > head_cap) s.tail = {bytes + c.data.size() - 16, 16};
            parser.on_segment(s, t);
        }
        parser.on_close(chunks.empty() ? 0 : chunks.back().ts, t);
        if (hint != Side::kUnknown || parser.side() != Side::kUnknown) {
            EXPECT_EQ(parser.side(), view) << "connection " << conn;
        }
        t.desyncs += parser.stats().desyncs;
        t.unmatched += parser.stats().unmatched_responses;
        t.pushes += parser.stats().pushes;
        EXPECT_EQ(parser.stats().unparsed_segments, 0u) << "connection " << conn;
        EXPECT_EQ(parser.stats().dropped_requests, 0u) << "connection " << conn;
    }
    return t;
}

// One recording (a few seconds), replayed eight ways: as the server and as the client, with
// the side given or inferred, with whole segments and with the first 4 KiB captured.
TEST(RedisReplay, CountsEqualRedisOwnStatistics) {
    const Recording& rec = recording();
    ASSERT_TRUE(rec.problem.empty()) << rec.problem;
    ASSERT_GT(rec.conns.size(), 10u);
    EXPECT_GT(rec.keyspace_hits, 0u);
    EXPECT_GT(rec.keyspace_misses, 0u);
    for (const Side view : {Side::kServer, Side::kClient}) {
        for (const bool inferred : {false, true}) {
            for (const std::size_t head_cap : {std::size_t{1} << 20, std::size_t{4096}}) {
                SCOPED_TRACE(std::string(view == Side::kServer ? "server" : "client") +
                             (inferred ? ", side inferred" : ", side given") + ", head " +
                             std::to_string(head_cap));
                const Totals t = replay(rec, view, inferred ? Side::kUnknown : view, head_cap);
                // Per command: what Redis ran or rejected, as INFO commandstats counts it.
                EXPECT_EQ(t.commands, rec.commands);
                // The one unknown command sent, answered ERR (errorstats counts it,
                // commandstats cannot).
                EXPECT_EQ(t.unknown, (std::map<std::string, std::uint64_t>{{"NOSUCHCOMMAND", 1}}));
                // Per error prefix: every error reply Redis sent.
                EXPECT_EQ(t.errors, rec.errors);
                // A GET-only phase: hits and misses as keyspace_hits / keyspace_misses.
                EXPECT_EQ(t.hits, rec.keyspace_hits);
                EXPECT_EQ(t.misses, rec.keyspace_misses);
                EXPECT_EQ(t.desyncs, 0u);
                EXPECT_EQ(t.unmatched, 0u);
                // Published messages (5 + 5 by pattern, 1 in RESP3) and two invalidation pushes
                // (client tracking: the client's own SET, then another client's).
                EXPECT_EQ(t.pushes, 13u);
            }
        }
    }
}

}  // namespace
}  // namespace loupe::redis
