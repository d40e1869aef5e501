// PostgreSQL protocol 3.0 framing (protocols/postgres/messages.h).
#include "protocols/postgres/messages.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "postgres_wire.h"

namespace loupe::postgres {
namespace {

using namespace wire;

protocols::Segment segment(const std::string& s, std::uint64_t ts = 100) {
    protocols::Segment seg;
    seg.timestamp_ns = ts;
    seg.length = s.size();
    seg.head = {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
    return seg;
}

// A message with its body copied (Message::body is valid until the next message).
struct Read : Message {
    std::string kept;
};

std::vector<Read> read_all(MessageReader& r, const std::string& s,
                           MessageReader::Result* last = nullptr) {
    std::vector<Read> out;
    const View v(segment(s));
    std::uint64_t pos = 0;
    for (;;) {
        const auto res = r.next(v, pos);
        if (res != MessageReader::Result::kMessage) {
            if (last) *last = res;
            return out;
        }
        Read m{r.message(), std::string(r.message().body)};
        m.body = {};
        out.push_back(std::move(m));
    }
}

TEST(PostgresMessages, ReadsTypedMessagesAndKeepsBodies) {
    MessageReader r(true);
    const auto ms = read_all(r, query("SELECT 1") + parse("s1", "SELECT $1") + sync());
    ASSERT_EQ(ms.size(), 3u);
    EXPECT_EQ(ms[0].type, 'Q');
    EXPECT_EQ(ms[0].kept, std::string("SELECT 1\0", 9));
    EXPECT_EQ(ms[1].kept.substr(0, 3), std::string("s1\0", 3));
    EXPECT_EQ(ms[1].type, 'P');
    EXPECT_EQ(ms[2].type, 'S');
    EXPECT_EQ(ms[2].length, 0u);
}

TEST(PostgresMessages, StartupFramingReadsUntypedMessages) {
    MessageReader r(true);
    r.set_framing(MessageReader::Framing::kStartup);
    const auto ms = read_all(r, ssl_request());
    ASSERT_EQ(ms.size(), 1u);
    EXPECT_EQ(ms[0].type, 0);
    EXPECT_EQ(ms[0].code, kSslRequestCode);
}

TEST(PostgresMessages, SslAnswerIsOneByteAndTheRestFollows) {
    MessageReader r(false);
    r.set_framing(MessageReader::Framing::kSslReply);
    const auto ms = read_all(r, "N" + auth_ok());
    ASSERT_EQ(ms.size(), 2u);
    EXPECT_TRUE(ms[0].answer);
    EXPECT_EQ(ms[0].type, 'N');
    EXPECT_EQ(ms[1].type, 'R');
    EXPECT_FALSE(ms[1].answer);
}

TEST(PostgresMessages, MessageSplitAtEveryByte) {
    const std::string all = complete("SELECT 1") + ready();
    MessageReader r(false);
    std::vector<Message> ms;
    for (std::size_t i = 0; i < all.size(); ++i) {
        const std::string one(1, all[i]);
        const View v(segment(one, 100 + i));
        std::uint64_t pos = 0;
        while (r.next(v, pos) == MessageReader::Result::kMessage) {
            ms.push_back(r.message());
            if (ms.size() == 1) {
                EXPECT_EQ(std::string(r.message().body), cstr("SELECT 1"));
            }
        }
    }
    ASSERT_EQ(ms.size(), 2u);
    EXPECT_EQ(ms[0].start_ns, 100u);
    EXPECT_EQ(ms[1].type, 'Z');
    EXPECT_EQ(ms[1].end_ns, 100 + all.size() - 1);
}

TEST(PostgresMessages, SkipsBodyBytesNeverCaptured) {
    // A 1 MB DataRow of which only 1 KiB was copied, then its CommandComplete read whole.
    std::string big = data_row(std::string(1 << 20, 'x'));
    protocols::Segment seg;
    seg.timestamp_ns = 10;
    seg.length = big.size();
    seg.head = {reinterpret_cast<const std::uint8_t*>(big.data()), 1024};
    MessageReader r(false);
    const View v(seg);
    std::uint64_t pos = 0;
    ASSERT_EQ(r.next(v, pos), MessageReader::Result::kMessage);
    EXPECT_EQ(r.message().type, 'D');
    EXPECT_EQ(pos, big.size());
    const auto ms = read_all(r, complete("SELECT 1"));
    ASSERT_EQ(ms.size(), 1u);
    EXPECT_EQ(ms[0].type, 'C');
}

TEST(PostgresMessages, HeaderInBytesNeverSeenIsLost) {
    std::string two = data_row(std::string(4000, 'x')) + complete("SELECT 1");
    protocols::Segment seg;
    seg.timestamp_ns = 10;
    seg.length = two.size();
    seg.head = {reinterpret_cast<const std::uint8_t*>(two.data()), 1024};
    MessageReader r(false);
    const View v(seg);
    std::uint64_t pos = 0;
    ASSERT_EQ(r.next(v, pos), MessageReader::Result::kMessage);
    EXPECT_EQ(r.next(v, pos), MessageReader::Result::kLost);
}

TEST(PostgresMessages, GarbageIsInvalid) {
    MessageReader r(true);
    MessageReader::Result last{};
    EXPECT_TRUE(read_all(r, "GET / HTTP/1.1\r\n\r\n", &last).empty());
    EXPECT_EQ(last, MessageReader::Result::kInvalid);
}

TEST(PostgresMessages, Probes) {
    const std::string s = startup({{"user", "u"}, {"database", "d"}});
    EXPECT_TRUE(starts_startup_message(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
    const std::string ssl = ssl_request();
    EXPECT_TRUE(starts_startup_message(reinterpret_cast<const std::uint8_t*>(ssl.data()), 8));
    const std::string http = "GET / HTTP/1.1\r\n";
    EXPECT_FALSE(starts_startup_message(reinterpret_cast<const std::uint8_t*>(http.data()), 16));
    const std::string q = query("SELECT 1");
    EXPECT_TRUE(
        starts_typed_message(reinterpret_cast<const std::uint8_t*>(q.data()), q.size(), true));
    EXPECT_FALSE(
        starts_typed_message(reinterpret_cast<const std::uint8_t*>(http.data()), 16, true));
}

TEST(PostgresMessages, ErrorSqlstate) {
    const std::string e = error("23505");
    EXPECT_EQ(error_sqlstate(std::string_view(e).substr(5)), "23505");
    EXPECT_EQ(error_sqlstate(std::string_view("SERROR\0Cbad\0\0", 13)), "");
}

}  // namespace
}  // namespace loupe::postgres
