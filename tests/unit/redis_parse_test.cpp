// RESP framing (protocols/redis/parse.h) and command naming (commands.h), without matching.
#include "protocols/redis/parse.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "protocols/redis/commands.h"

namespace loupe::redis {
namespace {

using Result = RespReader::Result;

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

Text text(std::string_view s) {
    Text t;
    t.size = static_cast<std::uint8_t>(std::min(s.size(), Text::kCapacity));
    std::copy_n(s.data(), t.size, t.bytes.data());
    t.partial = s.size() > Text::kCapacity;
    return t;
}

// What a reader made of one top-level value, in plain types.
struct Seen {
    char type = 0;
    bool null = false;
    std::int64_t integer = 0;
    std::uint32_t null_elements = 0;
    std::string text;
    std::vector<std::string> elements;  // "<type><text>" of the summarised elements
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    bool operator==(const Seen&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Seen& s) {
    os << "{" << s.type << " null=" << s.null << " int=" << s.integer
       << " nulls=" << s.null_elements << " text=" << s.text << " [";
    for (const auto& e : s.elements)
        os << e << ",";
    return os << "] " << s.start << "-" << s.end << "}";
}

Seen seen(const RespReader& r) {
    Seen s;
    s.type = r.top().type;
    s.null = r.top().null;
    s.integer = r.top().integer;
    s.null_elements = r.top().null_elements;
    s.text = std::string(r.top().text.view());
    for (const Value& e : r.elements())
        s.elements.push_back(std::string(1, e.type) + std::string(e.text.view()) +
                             (e.null ? "(nil)" : ""));
    s.start = r.start_ns();
    s.end = r.end_ns();
    return s;
}

// Feeds whole pieces (each a captured segment at ts 10, 20, ...); returns what completed.
struct Feed {
    explicit Feed(RespReader::Mode mode) : reader(mode) {}
    Result piece(std::string_view data, std::uint64_t ts) {
        const View v(bytes(data), ts, ts);
        std::uint64_t pos = 0;
        for (;;) {
            const Result r = reader.next(v, pos);
            if (r == Result::kMessage) {
                out.push_back(seen(reader));
                continue;
            }
            return r;
        }
    }
    // A segment of `length` bytes of which only `head` was captured.
    Result partial(std::string_view head, std::uint64_t length, std::uint64_t ts,
                   std::string_view tail = {}) {
        protocols::Segment s;
        s.timestamp_ns = ts;
        s.length = length;
        s.head = bytes(head);
        s.tail = bytes(tail);
        const View v(s);
        std::uint64_t pos = 0;
        for (;;) {
            const Result r = reader.next(v, pos);
            if (r == Result::kMessage) {
                out.push_back(seen(reader));
                continue;
            }
            return r;
        }
    }
    RespReader reader;
    std::vector<Seen> out;
};

std::vector<Seen> parse_whole(std::string_view data, RespReader::Mode mode) {
    Feed f(mode);
    EXPECT_EQ(f.piece(data, 10), Result::kNeedMore);
    return f.out;
}

const std::string kReplies =
    "+OK\r\n"
    "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    ":42\r\n"
    "$5\r\nhello\r\n"
    "$-1\r\n"
    "*-1\r\n"
    "$0\r\n\r\n"
    "*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:1\r\n$-1\r\n"
    "%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n"
    "_\r\n"
    "#t\r\n"
    ",3.14\r\n"
    "(3492890328409238509324850943850943825024385\r\n"
    "!21\r\nSYNTAX invalid syntax\r\n"
    "=15\r\ntxt:Some string\r\n"
    "~2\r\n+a\r\n+b\r\n"
    ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhey\r\n"
    "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
    "*2\r\n:2039123\r\n:9543892\r\n"
    "*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n$-1\r\n"
    "*0\r\n";

TEST(RedisReader, RepliesOfEveryType) {
    const auto out = parse_whole(kReplies, RespReader::Mode::kReplies);
    ASSERT_EQ(out.size(), 20u);
    EXPECT_EQ(out[0].type, '+');
    EXPECT_EQ(out[0].text, "OK");
    EXPECT_EQ(out[1].type, '-');
    EXPECT_EQ(out[1].text, "WRONGTYPE Operation against a ke");  // the first 32 bytes
    EXPECT_EQ(out[2].integer, 42);
    EXPECT_EQ(out[3].text, "hello");
    EXPECT_EQ(out[3].integer, 5);
    EXPECT_TRUE(out[4].null);
    EXPECT_TRUE(out[5].null);
    EXPECT_EQ(out[5].type, '*');
    EXPECT_FALSE(out[6].null);
    EXPECT_EQ(out[6].text, "");
    // *3: a, nil, [1, nil]: one nil element at the top; the nested nil is the element's.
    EXPECT_EQ(out[7].integer, 3);
    EXPECT_EQ(out[7].null_elements, 1u);
    EXPECT_EQ(out[7].elements, (std::vector<std::string>{"$a", "$(nil)", "*"}));
    EXPECT_EQ(out[8].type, '%');
    EXPECT_EQ(out[8].integer, 2);
    EXPECT_EQ(out[8].elements, (std::vector<std::string>{"+server", "+redis", "+proto"}));
    EXPECT_TRUE(out[9].null);
    EXPECT_EQ(out[9].type, '_');
    EXPECT_EQ(out[10].integer, 1);
    EXPECT_EQ(out[11].type, ',');
    EXPECT_EQ(out[12].type, '(');
    EXPECT_EQ(out[13].type, '!');
    EXPECT_EQ(out[13].text, "SYNTAX invalid syntax");
    EXPECT_EQ(out[14].text, "txt:Some string");
    EXPECT_EQ(out[15].type, '~');
    EXPECT_EQ(out[16].type, '>');
    EXPECT_EQ(out[16].elements[0], "$message");
    // The attribute is left out: the reply is the array after it.
    EXPECT_EQ(out[17].type, '*');
    EXPECT_EQ(out[17].integer, 2);
    EXPECT_EQ(out[17].elements, (std::vector<std::string>{":", ":"}));
    // An attribute inside an aggregate is no element of it.
    EXPECT_EQ(out[18].integer, 2);
    EXPECT_EQ(out[18].elements, (std::vector<std::string>{"$v", "$(nil)"}));
    EXPECT_EQ(out[18].null_elements, 1u);
    EXPECT_EQ(out[19].type, '*');
    EXPECT_EQ(out[19].integer, 0);
}

TEST(RedisReader, EverySplitPointGivesTheSameValues) {
    const auto whole = parse_whole(kReplies, RespReader::Mode::kReplies);
    for (std::size_t cut = 1; cut < kReplies.size(); ++cut) {
        Feed f(RespReader::Mode::kReplies);
        ASSERT_EQ(f.piece(std::string_view(kReplies).substr(0, cut), 10), Result::kNeedMore);
        ASSERT_EQ(f.piece(std::string_view(kReplies).substr(cut), 10), Result::kNeedMore);
        ASSERT_EQ(f.out, whole) << "cut at " << cut;
        EXPECT_TRUE(f.reader.idle());
    }
}

TEST(RedisReader, ByteByByte) {
    const auto whole = parse_whole(kReplies, RespReader::Mode::kReplies);
    Feed f(RespReader::Mode::kReplies);
    for (const char c : kReplies)
        ASSERT_EQ(f.piece(std::string_view(&c, 1), 10), Result::kNeedMore);
    EXPECT_EQ(f.out, whole);
}

TEST(RedisReader, ValueSpanningSegmentsStartsInFirstEndsInLast) {
    Feed f(RespReader::Mode::kReplies);
    EXPECT_EQ(f.piece("*2\r\n$3\r\nfo", 100), Result::kNeedMore);
    EXPECT_FALSE(f.reader.idle());
    EXPECT_EQ(f.piece("o\r\n", 200), Result::kNeedMore);
    EXPECT_EQ(f.piece("$3\r\nbar\r\n+OK\r\n", 300), Result::kNeedMore);
    ASSERT_EQ(f.out.size(), 2u);
    EXPECT_EQ(f.out[0].start, 100u);
    EXPECT_EQ(f.out[0].end, 300u);
    EXPECT_EQ(f.out[0].elements, (std::vector<std::string>{"$foo", "$bar"}));
    EXPECT_EQ(f.out[1].start, 300u);
}

TEST(RedisReader, HundredMegabyteBulkIsSkippedByCount) {
    Feed f(RespReader::Mode::kReplies);
    constexpr std::uint64_t kSize = 100ull << 20;
    const std::string header = "$" + std::to_string(kSize) + "\r\n";
    // First read: the header and 4 KiB captured of 64 KiB; then 1599 reads seen by length only;
    // the last one ends with the CRLF and the next reply, captured.
    const std::string first = header + std::string(4096 - header.size(), 'x');
    EXPECT_EQ(f.partial(first, 65536, 1), Result::kNeedMore);
    std::uint64_t left = kSize + 2 - (65536 - header.size());
    std::uint64_t ts = 2;
    while (left > 65536) {
        EXPECT_EQ(f.partial({}, 65536, ts++), Result::kNeedMore);
        left -= 65536;
    }
    EXPECT_TRUE(f.out.empty());
    const std::string last = std::string(left - 2, 'y') + "\r\n+OK\r\n";
    EXPECT_EQ(f.piece(last, ts), Result::kNeedMore);
    ASSERT_EQ(f.out.size(), 2u);
    EXPECT_EQ(f.out[0].integer, static_cast<std::int64_t>(kSize));
    EXPECT_EQ(f.out[0].start, 1u);
    EXPECT_EQ(f.out[0].end, ts);
    EXPECT_EQ(f.out[1].text, "OK");
    EXPECT_LT(f.reader.memory_bytes(), 1024u);
}

TEST(RedisReader, BulkEndingInTheTail) {
    Feed f(RespReader::Mode::kReplies);
    const std::string header = "$10000\r\n";
    // 10000-byte value in one read: head has the header, the tail the last bytes and the CRLF.
    EXPECT_EQ(f.partial(header + "abc", 10000 + header.size() + 2, 5, "xyz\r\n"),
              Result::kNeedMore);
    ASSERT_EQ(f.out.size(), 1u);
    EXPECT_EQ(f.out[0].text, "abc");  // its first bytes, as far as seen
}

TEST(RedisReader, TypeLineInUnseenBytesIsLost) {
    Feed f(RespReader::Mode::kReplies);
    // Two replies: the second one's header lies beyond the captured head.
    EXPECT_EQ(f.partial("$3\r\nabc\r\n", 100, 1), Result::kLost);
    EXPECT_TRUE(f.reader.failed_at_boundary());
    ASSERT_EQ(f.out.size(), 1u);
}

TEST(RedisReader, LongLinesAreBoundedAndInvalidBeyondTheLimit) {
    Feed f(RespReader::Mode::kReplies);
    const std::string line = "-ERR " + std::string(1000, 'e') + "\r\n";
    EXPECT_EQ(f.piece(line.substr(0, 300), 1), Result::kNeedMore);
    EXPECT_EQ(f.piece(line.substr(300), 2), Result::kNeedMore);
    ASSERT_EQ(f.out.size(), 1u);
    EXPECT_EQ(f.out[0].text.substr(0, 4), "ERR ");
    Feed g(RespReader::Mode::kReplies);
    const std::string chunk(8192, 'a');
    Result r = g.piece("+", 1);
    for (int i = 0; i < 20 && r == Result::kNeedMore; ++i)
        r = g.piece(chunk, 2);
    EXPECT_EQ(r, Result::kInvalid);
    EXPECT_LT(g.reader.memory_bytes(), 1024u);
}

TEST(RedisReader, InvalidInput) {
    for (const std::string_view bad :
         {"hello\r\n", "$abc\r\n", "$3\r\nabcXY", "*2\r\n:1\r\n?\r\n", ":12a\r\n", "$-2\r\n",
          "+OK\n", "#x\r\n", "_x\r\n", "*1\r\n|0\r\n!\r\n"}) {
        Feed f(RespReader::Mode::kReplies);
        EXPECT_EQ(f.piece(bad, 1), Result::kInvalid) << bad;
    }
    Feed f(RespReader::Mode::kReplies);
    EXPECT_EQ(f.piece("\x01\x02garbage", 1), Result::kInvalid);
    EXPECT_TRUE(f.reader.failed_at_boundary());
    Feed g(RespReader::Mode::kReplies);
    EXPECT_EQ(g.piece("*1\r\n\x01", 1), Result::kInvalid);
    EXPECT_FALSE(g.reader.failed_at_boundary());
}

TEST(RedisReader, NestingDeeperThanTheLimitIsInvalid) {
    std::string deep;
    for (std::size_t i = 0; i < RespReader::kMaxDepth; ++i)
        deep += "*1\r\n";
    Feed ok(RespReader::Mode::kReplies);
    EXPECT_EQ(ok.piece(deep + ":1\r\n", 1), Result::kNeedMore);
    EXPECT_EQ(ok.out.size(), 1u);
    Feed f(RespReader::Mode::kReplies);
    EXPECT_EQ(f.piece(deep + "*1\r\n:1\r\n", 1), Result::kInvalid);
}

TEST(RedisReader, KeepsAsManyElementsAsAsked) {
    Feed f(RespReader::Mode::kReplies);
    f.reader.set_keep(5);
    std::string reply = "*8\r\n";
    for (int i = 0; i < 8; ++i)
        reply += i % 2 ? "$-1\r\n" : "-ERR x\r\n";
    EXPECT_EQ(f.piece(reply, 1), Result::kNeedMore);
    ASSERT_EQ(f.out.size(), 1u);
    EXPECT_EQ(f.out[0].elements.size(), 5u);
    EXPECT_EQ(f.out[0].null_elements, 4u);
}

TEST(RedisReader, CommandsArraysAndInline) {
    const auto out = parse_whole(
        "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"
        "PING\r\n"
        "\r\n"
        "  set  a \"b c\"\r\n"
        "*0\r\n"
        "*-1\r\n"
        "*1\r\n$4\r\nPING\r\n",
        RespReader::Mode::kCommands);
    ASSERT_EQ(out.size(), 4u);
    EXPECT_EQ(out[0].type, '*');
    EXPECT_EQ(out[0].integer, 3);
    EXPECT_EQ(out[0].elements, (std::vector<std::string>{"$SET", "$key", "$value"}));
    EXPECT_EQ(out[1].type, 'i');
    EXPECT_EQ(out[1].integer, 1);
    EXPECT_EQ(out[1].elements, (std::vector<std::string>{"$PING"}));
    EXPECT_EQ(out[2].integer, 3);
    EXPECT_EQ(out[2].elements, (std::vector<std::string>{"$set", "$a", "$b c"}));
    EXPECT_EQ(out[3].integer, 1);
}

TEST(RedisReader, CommandsAcceptOnlyBulkStrings) {
    for (const std::string_view bad :
         {"*1\r\n:1\r\n", "*1\r\n$-1\r\n", "+OK\r\n", "\x01\r\n", "*2\r\n*1\r\n$1\r\na\r\n"}) {
        Feed f(RespReader::Mode::kCommands);
        EXPECT_EQ(f.piece(bad, 1), Result::kInvalid) << bad;
    }
}

TEST(RedisReader, PartialCommandWhenArgumentsGoUnseen) {
    Feed f(RespReader::Mode::kCommands);
    // MSET with values large enough that the third header is beyond the captured head.
    EXPECT_EQ(f.partial("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$5000\r\nxxxx", 20000, 1), Result::kLost);
    EXPECT_TRUE(f.reader.has_partial_command());
    EXPECT_EQ(f.reader.elements()[0].text.view(), "MSET");
    EXPECT_EQ(f.reader.top().integer, 5);
}

TEST(RedisProbe, StartsCommand) {
    auto probe = [](std::string_view s, bool known) {
        return starts_command(bytes(s).data(), s.size(), known);
    };
    EXPECT_EQ(probe("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", true), Probe::kYes);
    EXPECT_EQ(probe("*2\r\n$3\r\nget\r\n", true), Probe::kYes);
    EXPECT_EQ(probe("*1\r\n$6\r\nFOOBAR\r\n", true), Probe::kNo);
    EXPECT_EQ(probe("*1\r\n$6\r\nFOOBAR\r\n", false), Probe::kYes);
    EXPECT_EQ(probe("*1\r\n$6\r\nFOO BA\r\n", false), Probe::kNo);
    EXPECT_EQ(probe("PING\r\n", true), Probe::kYes);
    EXPECT_EQ(probe("ping\n", true), Probe::kYes);
    EXPECT_EQ(probe("hello world\r\n", true), Probe::kYes);  // HELLO is a command
    EXPECT_EQ(probe("GET / HTTP/1.1\r\n", true), Probe::kNo);
    EXPECT_EQ(probe("Host: x\r\n", true), Probe::kNo);
    EXPECT_EQ(probe("+OK\r\n", true), Probe::kNo);
    EXPECT_EQ(probe("*0\r\n", true), Probe::kNo);
    EXPECT_EQ(probe("$3\r\nGET\r\n", true), Probe::kNo);
    // A command cut short at any byte is a prefix.
    const std::string full = "*2\r\n$3\r\nGET\r\n";
    for (std::size_t n = 1; n < full.size(); ++n)
        EXPECT_EQ(probe(full.substr(0, n), true), Probe::kPrefix) << n;
    EXPECT_EQ(probe("PIN", true), Probe::kPrefix);
}

TEST(RedisProbe, StartsReply) {
    auto probe = [](std::string_view s) { return starts_reply(bytes(s).data(), s.size()); };
    for (const std::string_view ok : {"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$5\r\nhello\r\n",
                                      "$-1\r\n", "*2\r\n", "%1\r\n", "_\r\n", "#f\r\n", ">3\r\n"})
        EXPECT_TRUE(probe(ok)) << ok;
    for (const std::string_view no :
         {"OK\r\n", "-err\r\n", ":x\r\n", "$5", "*\r\n", "_1\r\n", "\r\n", "+OK"})
        EXPECT_FALSE(probe(no)) << no;
}

TEST(RedisCommands, OperationNames) {
    auto name = [](std::string_view n, std::string_view sub = {}, std::int64_t argc = 1) {
        OpName op;
        const Text a = text(n);
        const Text b = text(sub);
        name_command(a, sub.empty() ? nullptr : &b,
                     sub.empty() ? argc : std::max<std::int64_t>(argc, 2), op);
        return std::string(op.view());
    };
    EXPECT_EQ(name("GET"), "GET");
    EXPECT_EQ(name("get"), "GET");
    EXPECT_EQ(name("GeT"), "GET");
    EXPECT_EQ(name("config", "get"), "CONFIG GET");
    EXPECT_EQ(name("CLIENT", "setname"), "CLIENT SETNAME");
    EXPECT_EQ(name("acl", "WHOAMI"), "ACL WHOAMI");
    EXPECT_EQ(name("XINFO", "stream"), "XINFO STREAM");
    EXPECT_EQ(name("object", "encoding"), "OBJECT ENCODING");
    EXPECT_EQ(name("memory", "usage"), "MEMORY USAGE");
    EXPECT_EQ(name("cluster", "info"), "CLUSTER INFO");
    EXPECT_EQ(name("script", "load"), "SCRIPT LOAD");
    EXPECT_EQ(name("function", "load"), "FUNCTION LOAD");
    EXPECT_EQ(name("command", "docs"), "COMMAND DOCS");
    EXPECT_EQ(name("COMMAND"), "COMMAND");
    EXPECT_EQ(name("config", "bad sub"), "CONFIG _OTHER");
    EXPECT_EQ(name("SET", "key:1"), "SET");  // not a container: the key stays out
    EXPECT_EQ(name("json.get"), "JSON.GET");
    EXPECT_EQ(name("FT.SEARCH"), "FT.SEARCH");
    EXPECT_EQ(name("user:1000 x"), "_OTHER");
    EXPECT_EQ(name("\x01\x02"), "_OTHER");
    EXPECT_EQ(name(std::string(33, 'A')), "_OTHER");
    EXPECT_EQ(name(std::string(32, 'a')), std::string(32, 'A'));
    EXPECT_EQ(name(""), "_OTHER");
}

TEST(RedisCommands, KindsAndKnownNames) {
    EXPECT_EQ(find_command("get")->kind, CommandKind::kLookup);
    EXPECT_EQ(find_command("MGET")->kind, CommandKind::kKeysLookup);
    EXPECT_EQ(find_command("hmget")->kind, CommandKind::kFieldsLookup);
    EXPECT_EQ(find_command("Exists")->kind, CommandKind::kExists);
    EXPECT_EQ(find_command("EXEC")->kind, CommandKind::kExec);
    EXPECT_TRUE(find_command("config")->container);
    EXPECT_EQ(find_command("GETX"), nullptr);
    EXPECT_EQ(find_command("GE"), nullptr);
    OpName op;
    EXPECT_EQ(name_command(text("SRANDMEMBER"), nullptr, 2, op).kind, CommandKind::kLookup);
    EXPECT_EQ(name_command(text("SRANDMEMBER"), nullptr, 3, op).kind, CommandKind::kPlain);
}

TEST(RedisCommands, ErrorPrefixes) {
    auto prefix = [](std::string_view s) {
        char out[kMaxErrorBytes];
        const std::size_t n = error_prefix(text(s), out);
        return std::string(out, n);
    };
    EXPECT_EQ(prefix("ERR unknown command 'FOO'"), "ERR");
    EXPECT_EQ(prefix("WRONGTYPE Operation against a key"), "WRONGTYPE");
    EXPECT_EQ(prefix("NOAUTH Authentication required."), "NOAUTH");
    EXPECT_EQ(prefix("MOVED 3999 127.0.0.1:6381"), "MOVED");
    EXPECT_EQ(prefix("EXECABORT Transaction discarded"), "EXECABORT");
    EXPECT_EQ(prefix("my-error: x"), "MY_ERROR_");
    EXPECT_EQ(prefix(""), "ERR");
    EXPECT_EQ(prefix(" leading"), "ERR");
    EXPECT_EQ(prefix("\xff\xfe"), "__");
    EXPECT_EQ(prefix(std::string(40, 'x')), std::string(32, 'X'));
}

TEST(RedisCommands, PushKinds) {
    EXPECT_EQ(push_kind(text("message")), PushKind::kMessage);
    EXPECT_EQ(push_kind(text("pmessage")), PushKind::kMessage);
    EXPECT_EQ(push_kind(text("smessage")), PushKind::kMessage);
    EXPECT_EQ(push_kind(text("subscribe")), PushKind::kSubscribe);
    EXPECT_EQ(push_kind(text("sunsubscribe")), PushKind::kSunsubscribe);
    EXPECT_EQ(push_kind(text("invalidate")), PushKind::kOther);
    EXPECT_EQ(confirmed_command(PushKind::kPsubscribe), CommandKind::kPsubscribe);
}

}  // namespace
}  // namespace loupe::redis
