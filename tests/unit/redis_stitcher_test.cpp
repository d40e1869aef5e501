// Redis commands matched to replies over captured segments (protocols/redis/stitcher.h).
#include "protocols/redis/stitcher.h"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "protocols/redis/redis.h"

namespace loupe::redis {
namespace {

using protocols::Direction;
using protocols::Protocol;
using protocols::Request;
using protocols::Segment;
using protocols::Side;

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string bulk(std::string_view s) {
    return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

// A command as clients send it: an array of bulk strings.
std::string cmd(std::initializer_list<std::string_view> words) {
    std::string out = "*" + std::to_string(words.size()) + "\r\n";
    for (const auto w : words)
        out += bulk(w);
    return out;
}

const std::string kOk = "+OK\r\n";
const std::string kNil = "$-1\r\n";

// One finished operation, copied out of the Request.
struct Op {
    std::string operation;
    std::string error;
    std::string db;
    Side side = Side::kUnknown;
    std::uint32_t hits = 0;
    std::uint32_t misses = 0;
    std::uint64_t start = 0;
    std::uint64_t end = 0;
};

std::ostream& operator<<(std::ostream& os, const Op& o) {
    return os << o.operation << " err=" << o.error << " db=" << o.db << " h/m=" << o.hits << "/"
              << o.misses << " " << o.start << "-" << o.end;
}

// Feeds one connection the way the capture does and collects what it reports.
class Conn : public protocols::RequestSink {
  public:
    explicit Conn(Side hint = Side::kServer, std::size_t head_cap = 4096)
        : parser(hint), head_cap_(head_cap) {}

    void on_request(const Request& r) override {
        EXPECT_EQ(r.protocol, Protocol::kRedis);
        EXPECT_TRUE(r.target.empty());
        EXPECT_LE(r.start_ns, r.end_ns);
        ops.push_back(Op{std::string(r.operation), std::string(r.error),
                         std::string(r.db_namespace), r.side, r.cache_hits, r.cache_misses,
                         r.start_ns, r.end_ns});
    }

    // A read/write that moved exactly `data`: its first head_cap bytes and last 16 captured.
    void data(Direction d, std::uint64_t ts, std::string_view data) {
        const std::string_view head = data.substr(0, std::min(data.size(), head_cap_));
        std::string_view tail;
        if (data.size() > head.size())
            tail = data.substr(data.size() - std::min<std::size_t>(16, data.size()));
        raw(d, ts, head, data.size(), tail);
    }
    void in(std::uint64_t ts, std::string_view d) { data(kIn, ts, d); }
    void out(std::uint64_t ts, std::string_view d) { data(kOut, ts, d); }
    // `length` bytes moved, of which only head (and tail) were captured.
    void raw(Direction d, std::uint64_t ts, std::string_view head, std::uint64_t length,
             std::string_view tail = {}) {
        Segment s;
        s.direction = d;
        s.timestamp_ns = ts;
        s.length = length;
        s.head = bytes(head);
        s.tail = bytes(tail);
        parser.on_segment(s, *this);
    }
    void close(std::uint64_t ts) { parser.on_close(ts, *this); }

    const protocols::ParserStats& stats() const { return parser.stats(); }
    const RedisStats& redis() const { return parser.redis_stats(); }
    std::vector<std::string> names() const {
        std::vector<std::string> n;
        for (const Op& o : ops)
            n.push_back(o.operation);
        return n;
    }

    RedisConnection parser;
    std::vector<Op> ops;

  private:
    std::size_t head_cap_;
};

void expect_clean(const Conn& c) {
    EXPECT_EQ(c.stats().unparsed_segments, 0u);
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
    EXPECT_EQ(c.stats().dropped_requests, 0u);
    EXPECT_EQ(c.stats().desyncs, 0u);
    EXPECT_EQ(c.redis().skipped_segments, 0u);
}

void expect_op(const Op& o, std::string_view op, std::uint64_t start, std::uint64_t end,
               std::string_view error = "", std::string_view db = "0") {
    EXPECT_EQ(o.operation, op);
    EXPECT_EQ(o.start, start);
    EXPECT_EQ(o.end, end);
    EXPECT_EQ(o.error, error);
    EXPECT_EQ(o.db, db);
}

TEST(RedisStitcher, ServerRequestReply) {
    Conn c(Side::kServer);
    c.in(100, cmd({"SET", "k", "v"}));
    c.out(150, kOk);
    c.in(200, cmd({"GET", "k"}));
    c.out(260, bulk("v"));
    ASSERT_EQ(c.ops.size(), 2u);
    expect_op(c.ops[0], "SET", 100, 150);
    expect_op(c.ops[1], "GET", 200, 260);
    EXPECT_EQ(c.ops[1].side, Side::kServer);
    EXPECT_EQ(c.ops[1].hits, 1u);
    EXPECT_EQ(c.ops[0].hits + c.ops[0].misses, 0u);
    expect_clean(c);
    EXPECT_EQ(c.parser.pending_commands(), 0u);
}

TEST(RedisStitcher, ClientRequestReply) {
    Conn c(Side::kClient);
    c.out(100, cmd({"GET", "missing"}));
    c.in(180, kNil);
    ASSERT_EQ(c.ops.size(), 1u);
    expect_op(c.ops[0], "GET", 100, 180);
    EXPECT_EQ(c.ops[0].side, Side::kClient);
    EXPECT_EQ(c.ops[0].misses, 1u);
    expect_clean(c);
}

TEST(RedisStitcher, FactoryMakesARedisParser) {
    auto p = make_parser(Side::kClient);
    EXPECT_EQ(p->side(), Side::kClient);
    EXPECT_GT(p->memory_bytes(), 0u);
}

TEST(RedisStitcher, SideInferredFromTheFirstCommand) {
    {
        Conn c(Side::kUnknown);
        c.in(100, cmd({"PING"}));
        EXPECT_EQ(c.parser.side(), Side::kServer);
        c.out(110, "+PONG\r\n");
        ASSERT_EQ(c.ops.size(), 1u);
        expect_op(c.ops[0], "PING", 100, 110);
        expect_clean(c);
    }
    {
        Conn c(Side::kUnknown);
        c.out(100, "PING\r\n");  // inline
        EXPECT_EQ(c.parser.side(), Side::kClient);
        c.in(110, "+PONG\r\n");
        ASSERT_EQ(c.ops.size(), 1u);
        expect_op(c.ops[0], "PING", 100, 110);
    }
    {
        // An MGET reply looks like a command but its first word is no command: not inferred.
        Conn c(Side::kUnknown);
        c.in(100, "*2\r\n$3\r\nabc\r\n$-1\r\n");
        EXPECT_EQ(c.parser.side(), Side::kUnknown);
        c.out(110, cmd({"GET", "a"}));
        EXPECT_EQ(c.parser.side(), Side::kClient);
        c.in(120, bulk("x"));
        ASSERT_EQ(c.ops.size(), 1u);
        expect_op(c.ops[0], "GET", 110, 120);
        EXPECT_EQ(c.stats().unparsed_segments, 0u);
    }
}

TEST(RedisStitcher, PipelineSharesStartsAndEnds) {
    Conn c(Side::kClient, 1 << 20);
    std::string commands;
    std::string replies1;
    std::string replies2;
    constexpr int kN = 100;
    for (int i = 0; i < kN; ++i) {
        const std::string key = "key:" + std::to_string(i);
        commands += i % 2 ? cmd({"SET", key, "value"}) : cmd({"GET", key});
        std::string& r = i < 60 ? replies1 : replies2;
        r += i % 2 ? kOk : (i % 4 ? kNil : bulk("value"));
    }
    c.out(1000, commands);  // all written at once
    c.in(2000, replies1);   // read in two parts
    c.in(3000, replies2);
    ASSERT_EQ(c.ops.size(), static_cast<std::size_t>(kN));
    std::uint32_t hits = 0, misses = 0;
    for (int i = 0; i < kN; ++i) {
        expect_op(c.ops[i], i % 2 ? "SET" : "GET", 1000, i < 60 ? 2000 : 3000);
        hits += c.ops[i].hits;
        misses += c.ops[i].misses;
    }
    EXPECT_EQ(hits, 25u);
    EXPECT_EQ(misses, 25u);
    expect_clean(c);
}

// A conversation whose every message is split in two at every byte: the same operations.
TEST(RedisStitcher, EverySplitPointOfEveryMessage) {
    const std::vector<std::pair<Direction, std::string>> talk = {
        {kIn, cmd({"HELLO", "3"})},
        {kOut, "%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"},
        {kIn, cmd({"SET", "k", std::string(100, 'v')})},
        {kOut, kOk},
        {kIn, cmd({"MGET", "k", "x", "y"})},
        {kOut, "*3\r\n" + bulk(std::string(100, 'v')) + "_\r\n_\r\n"},
        {kIn, "PING\r\n"},
        {kOut, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+PONG\r\n"},
        {kIn, cmd({"CONFIG", "GET", "maxmemory"})},
        {kOut, "|1\r\n+ttl\r\n:1\r\n%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"},
        {kIn, cmd({"LPUSH", "k", "a"})},
        {kOut, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
    };
    const std::vector<std::string> names = {"HELLO", "SET", "MGET", "PING", "CONFIG GET", "LPUSH"};
    for (std::size_t m = 0; m < talk.size(); ++m) {
        for (std::size_t cut = 1; cut < talk[m].second.size(); ++cut) {
            Conn c(Side::kServer);
            std::uint64_t ts = 100;
            for (std::size_t i = 0; i < talk.size(); ++i) {
                const auto& [dir, data] = talk[i];
                if (i == m) {
                    c.data(dir, ts, std::string_view(data).substr(0, cut));
                    c.data(dir, ts + 5, std::string_view(data).substr(cut));
                } else {
                    c.data(dir, ts, data);
                }
                ts += 100;
            }
            ASSERT_EQ(c.names(), names) << "message " << m << " cut at " << cut;
            EXPECT_EQ(c.ops[5].error, "WRONGTYPE");
            EXPECT_EQ(c.ops[2].hits, 1u);
            EXPECT_EQ(c.ops[2].misses, 2u);
            EXPECT_EQ(c.stats().pushes, 1u);
            EXPECT_EQ(c.ops[m / 2].start, 100 * (m / 2) * 2 + 100) << m << "/" << cut;
            const std::uint64_t end = 100 * ((m / 2) * 2 + 1) + 100 + (m % 2 ? 5 : 0);
            EXPECT_EQ(c.ops[m / 2].end, end) << m << "/" << cut;
            expect_clean(c);
            EXPECT_TRUE(c.parser.resp3());
        }
    }
}

TEST(RedisStitcher, ByteByByteBothDirections) {
    Conn c(Side::kClient);
    const std::string commands = cmd({"SET", "a", "1"}) + cmd({"GET", "a"}) + cmd({"INCR", "a"});
    const std::string replies = kOk + bulk("1") + ":2\r\n";
    std::uint64_t ts = 100;
    for (const char ch : commands)
        c.out(ts++, std::string_view(&ch, 1));
    for (const char ch : replies)
        c.in(ts++, std::string_view(&ch, 1));
    ASSERT_EQ(c.names(), (std::vector<std::string>{"SET", "GET", "INCR"}));
    EXPECT_EQ(c.ops[0].start, 100u);
    EXPECT_EQ(c.ops[2].end, ts - 1);
    expect_clean(c);
}

TEST(RedisStitcher, FirstReplySplitOnAFreshConnection) {
    Conn c(Side::kClient);
    c.out(100, cmd({"PING"}));
    c.in(200, "+");
    c.in(210, "PONG\r");
    c.in(220, "\n");
    ASSERT_EQ(c.ops.size(), 1u);
    expect_op(c.ops[0], "PING", 100, 220);
    expect_clean(c);
}

TEST(RedisStitcher, InlineCommandsPipelined) {
    Conn c(Side::kServer);
    std::string pings;
    std::string pongs;
    for (int i = 0; i < 16; ++i) {
        pings += "PING\r\n";
        pongs += "+PONG\r\n";
    }
    c.in(100, pings);
    c.out(200, pongs);
    c.in(300, "exists a b c\r\n");
    c.out(400, ":1\r\n");
    ASSERT_EQ(c.ops.size(), 17u);
    EXPECT_EQ(c.ops[15].operation, "PING");
    EXPECT_EQ(c.ops[16].operation, "EXISTS");
    EXPECT_EQ(c.ops[16].hits, 1u);
    EXPECT_EQ(c.ops[16].misses, 2u);
    expect_clean(c);
}

TEST(RedisStitcher, CacheLookups) {
    Conn c(Side::kServer);
    struct Case {
        std::string command;
        std::string reply;
        std::uint32_t hits;
        std::uint32_t misses;
    };
    const std::vector<Case> cases = {
        {cmd({"GET", "a"}), bulk("x"), 1, 0},
        {cmd({"GET", "b"}), kNil, 0, 1},
        {cmd({"GET", "b"}), "_\r\n", 0, 1},  // RESP3 null
        {cmd({"GET", "l"}), "-WRONGTYPE Operation\r\n", 0, 0},
        {cmd({"GETEX", "a", "EX", "10"}), bulk("x"), 1, 0},
        {cmd({"GETDEL", "a"}), kNil, 0, 1},
        {cmd({"HGET", "h", "f"}), kNil, 0, 1},
        {cmd({"LINDEX", "l", "0"}), bulk("x"), 1, 0},
        {cmd({"ZSCORE", "z", "m"}), bulk("1.5"), 1, 0},
        {cmd({"MGET", "a", "b", "c", "d"}), "*4\r\n$1\r\nx\r\n$-1\r\n$1\r\ny\r\n$-1\r\n", 2, 2},
        {cmd({"HMGET", "h", "f1", "f2", "f3"}), "*3\r\n$-1\r\n$-1\r\n$1\r\nv\r\n", 1, 2},
        {cmd({"EXISTS", "a", "b", "c"}), ":2\r\n", 2, 1},
        {cmd({"EXISTS", "a", "a"}), ":2\r\n", 2, 0},
        {cmd({"SRANDMEMBER", "s"}), kNil, 0, 1},
        {cmd({"SRANDMEMBER", "s", "3"}), "*0\r\n", 0, 0},
        {cmd({"SET", "a", "b"}), kOk, 0, 0},
        {cmd({"LPOP", "nolist"}), kNil, 0, 0},  // a write: not a lookup
        {cmd({"GETRANGE", "a", "0", "1"}), bulk(""), 0, 0},
    };
    std::uint64_t ts = 100;
    for (const Case& k : cases) {
        c.in(ts, k.command);
        c.out(ts + 10, k.reply);
        ts += 100;
    }
    ASSERT_EQ(c.ops.size(), cases.size());
    for (std::size_t i = 0; i < cases.size(); ++i) {
        EXPECT_EQ(c.ops[i].hits, cases[i].hits) << c.ops[i];
        EXPECT_EQ(c.ops[i].misses, cases[i].misses) << c.ops[i];
    }
    EXPECT_EQ(c.ops[3].error, "WRONGTYPE");
    expect_clean(c);
}

TEST(RedisStitcher, ErrorPrefixes) {
    Conn c(Side::kClient);
    c.out(100, cmd({"GET", "a"}) + cmd({"FOO"}) + cmd({"GET", "b"}) + cmd({"SET", "x", "y"}) +
                   cmd({"ZADD", "z", "x"}) + cmd({"GET", "c"}));
    c.in(200,
         "-NOAUTH Authentication required.\r\n"
         "-ERR unknown command 'FOO', with args beginning with: \r\n"
         "-MOVED 3999 127.0.0.1:6381\r\n"
         "-OOM command not allowed when used memory > 'maxmemory'.\r\n"
         "!21\r\nSYNTAX invalid syntax\r\n"
         "-\r\n");
    ASSERT_EQ(c.ops.size(), 6u);
    EXPECT_EQ(c.ops[0].error, "NOAUTH");
    EXPECT_EQ(c.ops[1].error, "ERR");
    EXPECT_EQ(c.ops[1].operation, "FOO");
    EXPECT_EQ(c.ops[2].error, "MOVED");
    EXPECT_EQ(c.ops[3].error, "OOM");
    EXPECT_EQ(c.ops[4].error, "SYNTAX");
    EXPECT_EQ(c.ops[5].error, "ERR");
    for (const Op& o : c.ops)
        EXPECT_EQ(o.hits + o.misses, 0u);
    expect_clean(c);
}

TEST(RedisStitcher, OperationNamesNeverCarryKeys) {
    Conn c(Side::kServer);
    c.in(100, cmd({"config", "get", "maxmemory"}) + cmd({"client", "setname", "app"}) +
                  cmd({"user:1234", "x"}) + cmd({"CLIENT"}) + cmd({"object", "encoding", "k"}) +
                  "acl whoami\r\n");
    c.out(200, "*0\r\n+OK\r\n-ERR unknown command\r\n-ERR wrong number\r\n$6\r\nembstr\r\n" +
                   bulk("default"));
    EXPECT_EQ(c.names(), (std::vector<std::string>{"CONFIG GET", "CLIENT SETNAME", "USER:1234",
                                                   "CLIENT", "OBJECT ENCODING", "ACL WHOAMI"}));
    Conn d(Side::kServer);
    d.in(100, cmd({"GET", "k"}));
    d.in(110, cmd({"a key with spaces", "x"}));
    d.out(200, bulk("v") + "-ERR unknown command\r\n");
    EXPECT_EQ(d.names(), (std::vector<std::string>{"GET", "_OTHER"}));
}

TEST(RedisStitcher, SelectSetsTheNamespace) {
    Conn c(Side::kServer);
    c.in(100, cmd({"GET", "a"}) + cmd({"SELECT", "3"}) + cmd({"GET", "a"}));
    c.out(200, kNil + kOk + kNil);
    c.in(300, cmd({"SELECT", "99"}));
    c.out(310, "-ERR DB index is out of range\r\n");
    c.in(400, cmd({"GET", "a"}));
    c.out(410, kNil);
    ASSERT_EQ(c.ops.size(), 5u);
    EXPECT_EQ(c.ops[0].db, "0");
    EXPECT_EQ(c.ops[1].db, "0");  // SELECT itself ran in the database it left
    EXPECT_EQ(c.ops[2].db, "3");
    EXPECT_EQ(c.ops[3].error, "ERR");
    EXPECT_EQ(c.ops[4].db, "3");
    EXPECT_EQ(c.parser.db_namespace(), "3");
}

TEST(RedisStitcher, MultiExecReportsEachQueuedCommandWithItsRealReply) {
    Conn c(Side::kClient);
    c.out(100, cmd({"MULTI"}));
    c.in(110, kOk);
    c.out(200, cmd({"SET", "a", "x"}));
    c.in(210, "+QUEUED\r\n");
    c.out(300, cmd({"INCR", "a"}) + cmd({"GET", "a"}) + cmd({"SELECT", "2"}) + cmd({"GET", "b"}));
    c.in(310, "+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n");
    EXPECT_EQ(c.ops.size(), 1u);  // MULTI only, so far
    EXPECT_EQ(c.parser.queued_commands(), 5u);
    c.out(400, cmd({"EXEC"}));
    c.in(450,
         "*5\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$1\r\nx\r\n+OK\r\n$-1\r\n");
    ASSERT_EQ(c.ops.size(), 7u);
    expect_op(c.ops[0], "MULTI", 100, 110);
    expect_op(c.ops[1], "SET", 200, 450);
    expect_op(c.ops[2], "INCR", 300, 450, "ERR");
    expect_op(c.ops[3], "GET", 300, 450);
    EXPECT_EQ(c.ops[3].hits, 1u);
    expect_op(c.ops[4], "SELECT", 300, 450);
    expect_op(c.ops[5], "GET", 300, 450, "", "2");  // ran after the SELECT inside
    EXPECT_EQ(c.ops[5].misses, 1u);
    expect_op(c.ops[6], "EXEC", 400, 450, "", "2");
    EXPECT_EQ(c.redis().queued_commands, 5u);
    EXPECT_EQ(c.parser.queued_commands(), 0u);
    expect_clean(c);
}

TEST(RedisStitcher, MultiExecPipelinedInOneWrite) {
    // What redis-py sends for a transaction pipeline: everything in one write.
    Conn c(Side::kServer);
    c.in(100, cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"GET", "a"}) + cmd({"EXEC"}));
    c.out(200, "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n1\r\n");
    EXPECT_EQ(c.names(), (std::vector<std::string>{"MULTI", "SET", "GET", "EXEC"}));
    for (const Op& o : c.ops)
        expect_op(o, o.operation, 100, 200);
    expect_clean(c);
}

TEST(RedisStitcher, ExecAbortAndWatchFailureRunNothing) {
    Conn c(Side::kServer);
    c.in(100, cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"NOSUCH"}) + cmd({"EXEC"}));
    c.out(200,
          "+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH'\r\n"
          "-EXECABORT Transaction discarded because of previous errors.\r\n");
    EXPECT_EQ(c.names(), (std::vector<std::string>{"MULTI", "NOSUCH", "EXEC"}));
    EXPECT_EQ(c.ops[1].error, "ERR");
    EXPECT_EQ(c.ops[2].error, "EXECABORT");

    c.in(300, cmd({"WATCH", "a"}) + cmd({"MULTI"}) + cmd({"INCR", "a"}) + cmd({"EXEC"}));
    c.out(400, "+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n");
    EXPECT_EQ(c.names(),
              (std::vector<std::string>{"MULTI", "NOSUCH", "EXEC", "WATCH", "MULTI", "EXEC"}));
    EXPECT_EQ(c.ops.back().error, "");

    c.in(500, cmd({"MULTI"}) + cmd({"INCR", "a"}) + cmd({"DISCARD"}));
    c.out(600, "+OK\r\n+QUEUED\r\n+OK\r\n");
    EXPECT_EQ(c.ops.back().operation, "DISCARD");
    EXPECT_EQ(c.ops.size(), 8u);
    EXPECT_EQ(c.redis().aborted_transactions, 3u);
    EXPECT_EQ(c.redis().discarded_commands, 3u);
    EXPECT_EQ(c.parser.queued_commands(), 0u);
    expect_clean(c);
}

TEST(RedisStitcher, ExecPickedUpMidTransactionAlignsOnTheLast) {
    Conn c(Side::kServer);
    // The agent started after MULTI and the first queued command.
    c.in(100, cmd({"GET", "b"}));
    c.out(110, "+QUEUED\r\n");
    c.in(200, cmd({"EXEC"}));
    c.out(210, "*2\r\n+OK\r\n$-1\r\n");
    EXPECT_EQ(c.names(), (std::vector<std::string>{"GET", "EXEC"}));
    EXPECT_EQ(c.ops[0].misses, 1u);
}

TEST(RedisStitcher, PubSubResp2) {
    Conn c(Side::kClient);
    c.out(100, cmd({"SUBSCRIBE", "news", "sport"}));
    c.in(150,
         "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
         "*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n");
    ASSERT_EQ(c.ops.size(), 1u);
    expect_op(c.ops[0], "SUBSCRIBE", 100, 150);
    EXPECT_TRUE(c.parser.subscribed());
    c.in(200, "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
    c.in(210, "*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n" + bulk(std::string(5000, 'x')));
    c.out(300, cmd({"PSUBSCRIBE", "n*"}));
    // A message published before the confirmation arrives in the same read.
    c.in(310,
         "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$1\r\na\r\n"
         "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n"
         "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nb\r\n");
    c.out(400, cmd({"PING"}));
    c.in(410, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    c.out(500, cmd({"UNSUBSCRIBE"}));
    c.in(510,
         "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:2\r\n"
         "*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:1\r\n");
    c.out(600, cmd({"PUNSUBSCRIBE", "n*"}));
    c.in(610, "*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:0\r\n");
    EXPECT_FALSE(c.parser.subscribed());
    c.out(700, cmd({"GET", "message"}));
    c.in(710, "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n");  // a reply: no longer subscribed
    EXPECT_EQ(c.names(), (std::vector<std::string>{"SUBSCRIBE", "PSUBSCRIBE", "PING", "UNSUBSCRIBE",
                                                   "PUNSUBSCRIBE", "GET"}));
    expect_op(c.ops[1], "PSUBSCRIBE", 300, 310);
    expect_op(c.ops[3], "UNSUBSCRIBE", 500, 510);
    EXPECT_EQ(c.stats().pushes, 4u);
    EXPECT_EQ(c.redis().confirmations, 6u);
    expect_clean(c);
}

TEST(RedisStitcher, PubSubResp3PushesAreNoReplies) {
    Conn c(Side::kServer);
    c.in(100, cmd({"HELLO", "3"}));
    c.out(110, "%1\r\n$5\r\nproto\r\n:3\r\n");
    c.in(200, cmd({"SUBSCRIBE", "ch"}));
    c.out(210, ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    c.in(300, cmd({"GET", "k"}));
    // Pushes may come before the reply of the next command.
    c.out(310, ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
    c.out(320, ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nho\r\n_\r\n");
    c.in(400, cmd({"UNSUBSCRIBE"}));
    c.out(410, ">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n");
    EXPECT_EQ(c.names(), (std::vector<std::string>{"HELLO", "SUBSCRIBE", "GET", "UNSUBSCRIBE"}));
    expect_op(c.ops[2], "GET", 300, 320);
    EXPECT_EQ(c.ops[2].misses, 1u);
    EXPECT_EQ(c.stats().pushes, 2u);
    EXPECT_TRUE(c.parser.resp3());
    expect_clean(c);
}

TEST(RedisStitcher, UnsubscribeFromAllEndsWithItsRead) {
    Conn c(Side::kClient);
    c.out(100, cmd({"SUBSCRIBE", "a"}) + cmd({"PSUBSCRIBE", "p*"}));
    c.in(110,
         "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:2\r\n");
    c.out(200, cmd({"UNSUBSCRIBE"}));
    // Patterns remain: the count stays above 0.
    c.in(210, "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n");
    ASSERT_EQ(c.ops.size(), 3u);
    expect_op(c.ops[2], "UNSUBSCRIBE", 200, 210);
    c.out(300, cmd({"UNSUBSCRIBE"}));
    c.in(310, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:1\r\n");  // nothing to unsubscribe from
    ASSERT_EQ(c.ops.size(), 4u);
    expect_op(c.ops[3], "UNSUBSCRIBE", 300, 310);
    expect_clean(c);
}

TEST(RedisStitcher, UnsubscribeAndPunsubscribeTogether) {
    Conn c(Side::kClient);
    c.out(100, cmd({"SUBSCRIBE", "a", "b"}) + cmd({"PSUBSCRIBE", "p*"}));
    c.in(110,
         "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
         "*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n");
    c.out(200, cmd({"UNSUBSCRIBE"}) + cmd({"PUNSUBSCRIBE"}));
    c.in(
        210,
        "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n"
        "*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n");
    EXPECT_EQ(c.names(),
              (std::vector<std::string>{"SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE"}));
    EXPECT_EQ(c.redis().stray_confirmations, 0u);
    EXPECT_FALSE(c.parser.subscribed());
    expect_clean(c);
}

TEST(RedisStitcher, AttributeBeforeAReply) {
    Conn c(Side::kClient);
    c.out(100, cmd({"GET", "k"}));
    c.in(110, "|1\r\n+key-popularity\r\n%1\r\n$1\r\nk\r\n,0.19\r\n$1\r\nv\r\n");
    ASSERT_EQ(c.ops.size(), 1u);
    EXPECT_EQ(c.ops[0].hits, 1u);
    expect_clean(c);
}

TEST(RedisStitcher, HundredMegabyteValuesNeverDesync) {
    Conn c(Side::kClient, 4096);
    constexpr std::uint64_t kSize = 100ull << 20;
    const std::string header =
        cmd({"SET", "big"}).replace(1, 1, "3") + "$" + std::to_string(kSize) + "\r\n";
    // The client writes the command in 64 KiB writes; the capture keeps 4 KiB of the first.
    std::uint64_t total = header.size() + kSize + 2;
    std::uint64_t ts = 100;
    c.raw(kOut, ts, header + std::string(4096 - header.size(), 'z'), 65536);
    total -= 65536;
    while (total > 65536) {
        c.raw(kOut, ++ts, {}, 65536);
        total -= 65536;
    }
    const std::string end_and_get = std::string(total - 2, 'z') + "\r\n" + cmd({"GET", "big"});
    c.raw(kOut, ++ts, end_and_get.substr(0, std::min<std::size_t>(4096, end_and_get.size())),
          end_and_get.size(), end_and_get.substr(end_and_get.size() - 16));
    const std::uint64_t written = ts;
    EXPECT_LE(c.parser.memory_bytes(), 8192u);
    c.in(++ts, kOk);
    // The reply of GET: 100 MB read in 64 KiB reads.
    const std::string reply_header = "$" + std::to_string(kSize) + "\r\n";
    total = reply_header.size() + kSize + 2;
    c.raw(kIn, ++ts, reply_header + std::string(4096 - reply_header.size(), 'z'), 65536);
    total -= 65536;
    while (total > 0) {
        const std::uint64_t n = std::min<std::uint64_t>(total, 65536);
        c.raw(kIn, ++ts, {}, n, n == total ? "zzzzzzzzzzzzzz\r\n" : "");
        total -= n;
    }
    c.out(++ts, cmd({"PING"}));
    c.in(++ts, "+PONG\r\n");
    ASSERT_EQ(c.names(), (std::vector<std::string>{"SET", "GET", "PING"}));
    expect_op(c.ops[0], "SET", 100, written + 1);
    EXPECT_EQ(c.ops[1].start, written);
    EXPECT_EQ(c.ops[1].end, ts - 2);
    EXPECT_EQ(c.ops[1].hits, 1u);
    expect_clean(c);
    EXPECT_LE(c.parser.memory_bytes(), 8192u);
}

TEST(RedisStitcher, RepliesBeyondTheCapturedHeadEndWithTheirRead) {
    Conn c(Side::kClient, 4096);
    std::string commands;
    std::string replies;
    for (int i = 0; i < 16; ++i) {
        commands += cmd({"GET", "key:" + std::to_string(i)});
        replies += bulk(std::string(1000, 'v'));
    }
    c.out(100, commands);
    // A 16 KiB read of which 4 KiB are captured: 4 replies seen whole, the header of the fifth
    // too (its value is skipped by count), the sixth header is beyond.
    c.in(200, replies);
    ASSERT_EQ(c.ops.size(), 16u);
    for (int i = 0; i < 16; ++i) {
        expect_op(c.ops[i], "GET", 100, 200);
        EXPECT_EQ(c.ops[i].hits, i < 5 ? 1u : 0u) << i;
    }
    EXPECT_EQ(c.stats().desyncs, 1u);
    EXPECT_EQ(c.redis().unseen_replies, 11u);
    // In step again at the next exchange.
    c.out(300, cmd({"GET", "a"}) + cmd({"GET", "b"}));
    c.in(400, kNil + bulk("x"));
    ASSERT_EQ(c.ops.size(), 18u);
    EXPECT_EQ(c.ops[16].misses, 1u);
    EXPECT_EQ(c.ops[17].hits, 1u);
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
}

TEST(RedisStitcher, CommandsBeyondTheCapturedHeadAreAGap) {
    Conn c(Side::kServer, 1024);
    std::string commands;
    std::string replies;
    for (int i = 0; i < 100; ++i) {
        commands += cmd({"SET", "key:" + std::to_string(1000 + i), "value"});
        replies += kOk;
    }
    c.in(100, commands);  // ~4 KiB read, 1 KiB captured
    const std::size_t seen = c.parser.pending_commands();
    EXPECT_GT(seen, 20u);
    EXPECT_LT(seen, 40u);
    EXPECT_EQ(c.stats().desyncs, 1u);
    c.out(200, replies);
    ASSERT_EQ(c.ops.size(), seen);
    EXPECT_EQ(c.redis().gap_replies, 100 - seen);
    // The next command pairs with its own reply, not with one of the lost commands'.
    c.in(300, cmd({"GET", "a"}));
    c.out(400, bulk("x"));
    ASSERT_EQ(c.ops.size(), seen + 1);
    expect_op(c.ops.back(), "GET", 300, 400);
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
}

TEST(RedisStitcher, GapRepliesStillArrivingAfterTheNextCommand) {
    Conn c(Side::kServer, 30);
    const std::string commands = cmd({"SET", "a", "1"}) + cmd({"SET", "b", "2"}) +
                                 cmd({"SET", "c", "3"}) + cmd({"SET", "d", "4"});
    c.in(100, commands);  // only the first is seen
    EXPECT_EQ(c.parser.pending_commands(), 1u);
    c.out(150, kOk + kOk);  // replies of the first and of a lost one
    c.in(200, cmd({"GET", "a"}));
    c.out(250, kOk + kOk + bulk("1"));  // two lost commands' replies, then GET's
    // The gap's replies written after GET was read are taken as GET's: a known limit, written
    // in the documentation; the count of operations stays right.
    ASSERT_EQ(c.ops.size(), 2u);
    EXPECT_EQ(c.ops[1].operation, "GET");
}

TEST(RedisStitcher, MidStreamServerPickupInsideAValue) {
    Conn c(Side::kServer);
    // Picked up inside a SET's value, then its reply and a pipelined reply, then new commands.
    c.in(100, std::string(300, 'x') + "\r\n" + cmd({"GET", "k"}));
    c.out(110, kOk + bulk("x"));
    c.in(200, cmd({"GET", "k"}) + cmd({"INCR", "n"}));
    c.out(210, bulk("x") + ":5\r\n");
    ASSERT_EQ(c.names(), (std::vector<std::string>{"GET", "INCR"}));
    expect_op(c.ops[0], "GET", 200, 210);
    EXPECT_EQ(c.redis().skipped_segments, 2u);
    EXPECT_EQ(c.stats().unparsed_segments, 1u);  // the first: no RESP at all
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
}

TEST(RedisStitcher, MidStreamClientPickupInsideAReply) {
    Conn c(Side::kUnknown);
    constexpr std::uint64_t kSize = 1 << 20;
    // Inside a large reply (seen by length only), then a command written, then its reply.
    c.raw(kIn, 100, std::string(4096, 'v'), 65536);
    c.raw(kIn, 101, {}, kSize);
    c.raw(kIn, 102, std::string(100, 'v'), 4000, "vvvvvvvvvvvvvv\r\n");
    c.out(200, cmd({"GET", "k"}));
    EXPECT_EQ(c.parser.side(), Side::kClient);
    c.in(210, bulk("x"));
    ASSERT_EQ(c.ops.size(), 1u);
    expect_op(c.ops[0], "GET", 200, 210);
    EXPECT_FALSE(c.redis().not_redis);
}

TEST(RedisStitcher, MidStreamRepliesBeforeTheFirstCommandAreSkipped) {
    Conn c(Side::kClient);
    c.in(50, kOk);  // a reply to a command sent before the agent started
    c.out(100, cmd({"GET", "k"}));
    c.in(110, bulk("x"));
    ASSERT_EQ(c.ops.size(), 1u);
    expect_op(c.ops[0], "GET", 100, 110);
    EXPECT_EQ(c.redis().skipped_segments, 1u);
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
}

TEST(RedisStitcher, FirstCommandSplitAtEveryByte) {
    const std::string first = cmd({"SET", "key", "value"});
    for (std::size_t cut = 1; cut < first.size(); ++cut) {
        Conn c(Side::kServer);
        c.in(100, first.substr(0, cut));
        c.in(105, first.substr(cut));
        c.out(110, kOk);
        ASSERT_EQ(c.ops.size(), 1u) << cut;
        expect_op(c.ops[0], "SET", 100, 110);
        expect_clean(c);
    }
    // Byte by byte, inline.
    Conn c(Side::kServer);
    std::uint64_t ts = 100;
    for (const char ch : std::string("PING\r\n"))
        c.in(ts++, std::string_view(&ch, 1));
    c.out(200, "+PONG\r\n");
    ASSERT_EQ(c.ops.size(), 1u);
    expect_op(c.ops[0], "PING", 100, 200);
    expect_clean(c);
}

TEST(RedisStitcher, NotRedisGivesUpAfterAFewSegments) {
    Conn c(Side::kServer);
    for (int i = 0; i < 20; ++i)
        c.in(100 + i, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
    EXPECT_TRUE(c.redis().not_redis);
    EXPECT_EQ(c.stats().unparsed_segments, RedisConnection::kProbeBudget);
    c.in(200, cmd({"GET", "k"}));
    c.out(210, bulk("x"));
    EXPECT_TRUE(c.ops.empty());
    EXPECT_LT(c.parser.memory_bytes(), 1024u);

    Conn h(Side::kUnknown);
    for (int i = 0; i < 10; ++i) {
        h.in(100 + i, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        h.out(200 + i, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    EXPECT_TRUE(h.ops.empty());
    EXPECT_EQ(h.parser.side(), Side::kUnknown);
    EXPECT_TRUE(h.redis().not_redis);
}

TEST(RedisStitcher, GarbageInASyncedStreamIsCountedAndResynced) {
    Conn c(Side::kServer);
    c.in(100, cmd({"GET", "a"}));
    c.out(110, bulk("x"));
    c.in(200, "\x01\x02\x03 binary junk\r\n");
    c.out(210, "-ERR Protocol error: invalid\r\n");
    c.in(300, cmd({"GET", "b"}));
    c.out(310, kNil);
    ASSERT_EQ(c.names(), (std::vector<std::string>{"GET", "GET"}));
    expect_op(c.ops[1], "GET", 300, 310);
    EXPECT_EQ(c.stats().unparsed_segments, 1u);
    EXPECT_EQ(c.redis().gap_replies, 1u);
    EXPECT_EQ(c.stats().unmatched_responses, 0u);

    Conn r(Side::kClient);
    r.out(100, cmd({"GET", "a"}));
    r.in(110, "garbage\r\n");
    r.out(200, cmd({"GET", "b"}));
    r.in(210, kNil);
    ASSERT_EQ(r.ops.size(), 2u);
    EXPECT_EQ(r.ops[0].end, 110u);  // reported without outcome
    expect_op(r.ops[1], "GET", 200, 210);
    EXPECT_EQ(r.stats().unparsed_segments, 1u);
}

TEST(RedisStitcher, UnmatchedReplyIsCounted) {
    Conn c(Side::kServer);
    c.in(100, cmd({"GET", "a"}));
    c.out(110, bulk("x") + kOk);
    EXPECT_EQ(c.ops.size(), 1u);
    EXPECT_EQ(c.stats().unmatched_responses, 1u);
}

TEST(RedisStitcher, PendingQueueIsBoundedAndStaysAligned) {
    Conn c(Side::kClient);
    const std::size_t n = RedisConnection::kMaxPending + 10;
    std::uint64_t ts = 100;
    for (std::size_t i = 0; i < n; ++i)
        c.out(ts++, cmd({"GET", "k" + std::to_string(i)}));
    EXPECT_EQ(c.stats().dropped_requests, 10u);
    std::size_t replies = 0;
    for (std::size_t i = 0; i < n; ++i, ++replies)
        c.in(ts++, i % 2 ? kNil : bulk("x"));
    EXPECT_EQ(c.ops.size(), RedisConnection::kMaxPending);
    // Then in step: the next command gets its own reply.
    c.out(ts++, cmd({"INCR", "n"}));
    c.in(ts++, ":7\r\n");
    EXPECT_EQ(c.ops.back().operation, "INCR");
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
    EXPECT_LT(c.parser.memory_bytes(), 16384u);  // the queue shrank once drained
}

TEST(RedisStitcher, CloseReportsPendingCommands) {
    Conn c(Side::kClient);
    c.out(100, cmd({"BLPOP", "q", "0"}) + cmd({"GET", "a"}));
    c.close(500);
    ASSERT_EQ(c.ops.size(), 2u);
    expect_op(c.ops[0], "BLPOP", 100, 500, "closed");
    expect_op(c.ops[1], "GET", 100, 500, "closed");
    EXPECT_EQ(c.parser.pending_commands(), 0u);
    // Usable again afterwards.
    c.out(600, cmd({"PING"}));
    c.in(610, "+PONG\r\n");
    EXPECT_EQ(c.ops.size(), 3u);
}

TEST(RedisStitcher, ClientReplyOffAndSkip) {
    Conn c(Side::kClient);
    c.out(100, cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "a", "1"}) + cmd({"SET", "b", "2"}));
    c.out(200, cmd({"CLIENT", "REPLY", "ON"}));
    c.in(210, kOk);
    c.out(300, cmd({"CLIENT", "REPLY", "SKIP"}) + cmd({"SET", "c", "3"}) + cmd({"GET", "c"}));
    c.in(310, bulk("3"));
    EXPECT_EQ(c.names(), (std::vector<std::string>{"CLIENT REPLY", "SET", "SET", "CLIENT REPLY",
                                                   "CLIENT REPLY", "SET", "GET"}));
    expect_op(c.ops[1], "SET", 100, 100);
    expect_op(c.ops[3], "CLIENT REPLY", 200, 210);
    expect_op(c.ops[6], "GET", 300, 310);
    EXPECT_EQ(c.redis().no_reply_commands, 5u);
    expect_clean(c);
}

TEST(RedisStitcher, MonitorFeedIsPushes) {
    Conn c(Side::kClient);
    c.out(100, cmd({"MONITOR"}));
    c.in(110, kOk);
    c.in(120, "+1700000000.123456 [0 127.0.0.1:5000] \"GET\" \"k\"\r\n");
    c.in(130, "+1700000000.223456 [0 127.0.0.1:5000] \"SET\" \"k\" \"v\"\r\n");
    EXPECT_EQ(c.names(), (std::vector<std::string>{"MONITOR"}));
    EXPECT_EQ(c.stats().pushes, 2u);
    expect_clean(c);
}

TEST(RedisStitcher, ResetRestoresTheSession) {
    Conn c(Side::kServer);
    c.in(100, cmd({"SELECT", "5"}) + cmd({"HELLO", "3"}));
    c.out(110, kOk + "%1\r\n$5\r\nproto\r\n:3\r\n");
    EXPECT_EQ(c.parser.db_namespace(), "5");
    EXPECT_TRUE(c.parser.resp3());
    c.in(200, cmd({"RESET"}));
    c.out(210, "+RESET\r\n");
    EXPECT_EQ(c.parser.db_namespace(), "0");
    EXPECT_FALSE(c.parser.resp3());
    c.in(300, cmd({"HELLO", "2"}) + cmd({"AUTH", "user", "secret"}));
    c.out(310, "*2\r\n$5\r\nproto\r\n:2\r\n-WRONGPASS invalid username-password pair\r\n");
    EXPECT_FALSE(c.parser.resp3());
    EXPECT_EQ(c.ops.back().operation, "AUTH");
    EXPECT_EQ(c.ops.back().error, "WRONGPASS");
}

TEST(RedisStitcher, ReplyBeforeItsCommandIsUnmatched) {
    Conn c(Side::kServer);
    c.in(100, cmd({"GET", "a"}));
    c.out(110, bulk("x"));
    c.in(300, cmd({"GET", "b"}));
    // Delivered out of order with an earlier timestamp: cannot be GET b's reply.
    c.out(200, kNil);
    EXPECT_EQ(c.ops.size(), 1u);
    EXPECT_EQ(c.stats().unmatched_responses, 1u);
}

TEST(RedisStitcher, SendfileLikeSegmentWithoutBytes) {
    Conn c(Side::kServer);
    c.in(100, cmd({"GET", "a"}));
    c.raw(kOut, 110, {}, 20);  // nothing captured where a reply had to start
    EXPECT_EQ(c.ops.size(), 1u);
    EXPECT_EQ(c.stats().desyncs, 1u);
}

}  // namespace
}  // namespace loupe::redis
