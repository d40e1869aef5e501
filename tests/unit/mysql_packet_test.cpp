// MySQL packet framing: headers split across segments, payloads of 16 MB and more spread over
// several packets (sequence ids wrapping), bytes never captured skipped by count.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "protocols/mysql/packet.h"
#include "protocols/mysql/types.h"

namespace loupe::mysql {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes header(std::uint32_t len, std::uint8_t seq) {
    return {static_cast<std::uint8_t>(len), static_cast<std::uint8_t>(len >> 8),
            static_cast<std::uint8_t>(len >> 16), seq};
}

protocols::Segment whole(const Bytes& b, std::uint64_t ts) {
    protocols::Segment s;
    s.timestamp_ns = ts;
    s.length = b.size();
    s.head = b;
    return s;
}

TEST(MysqlPacket, HeaderSplitAcrossSegments) {
    PacketReader r(64);
    Bytes a = {5, 0};
    Bytes b = {0, 0, 3, 'S', 'E', 'L', 'E'};
    std::uint64_t pos = 0;
    EXPECT_EQ(r.next(View(whole(a, 10)), pos), PacketReader::Result::kNeedMore);
    EXPECT_FALSE(r.idle());
    pos = 0;
    ASSERT_EQ(r.next(View(whole(b, 20)), pos), PacketReader::Result::kPacket);
    EXPECT_EQ(r.packet().length, 5u);
    EXPECT_EQ(r.packet().seq, 0);
    EXPECT_EQ(r.packet().start_ns, 10u);
    EXPECT_EQ(r.packet().end_ns, 20u);
    EXPECT_TRUE(r.packet().whole);
    EXPECT_EQ(r.packet().payload.size(), 5u);
    EXPECT_TRUE(r.idle());
}

TEST(MysqlPacket, SeveralPacketsInOneSegmentAndAnEmptyOne) {
    PacketReader r(64);
    Bytes b = header(1, 1);
    b.push_back(0xfe);
    Bytes h = header(0, 2);
    b.insert(b.end(), h.begin(), h.end());
    std::uint64_t pos = 0;
    const View v(whole(b, 5));
    ASSERT_EQ(r.next(v, pos), PacketReader::Result::kPacket);
    EXPECT_EQ(r.packet().seq, 1);
    ASSERT_EQ(r.next(v, pos), PacketReader::Result::kPacket);
    EXPECT_EQ(r.packet().seq, 2);
    EXPECT_EQ(r.packet().length, 0u);
    EXPECT_EQ(r.next(v, pos), PacketReader::Result::kNeedMore);
}

// A 40 MB payload: packets of 0xFFFFFF bytes (ids 255, 0, 1: wrapping) then the rest, captured
// only at each segment's ends.
TEST(MysqlPacket, MultiPacketPayloadSkippedByCountWithWrappingIds) {
    PacketReader r(32);
    const std::uint64_t total = 40u << 20;
    Bytes stream;
    std::uint64_t left = total;
    std::uint8_t seq = 255;
    std::vector<std::pair<std::uint64_t, Bytes>> pieces;  // (offset of a header, header)
    std::uint64_t offset = 0;
    for (;;) {
        const std::uint32_t n =
            left >= kMaxPacketPayload ? kMaxPacketPayload : static_cast<std::uint32_t>(left);
        pieces.push_back({offset, header(n, seq++)});
        offset += 4 + n;
        left -= n;
        if (n < kMaxPacketPayload) break;
    }
    // One segment per wire packet: header + first 8 payload bytes visible, the rest hidden.
    std::uint64_t pos = 0;
    PacketReader::Result res = PacketReader::Result::kNeedMore;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        const std::uint64_t next = i + 1 < pieces.size() ? pieces[i + 1].first : offset;
        Bytes head = pieces[i].second;
        head.resize(12, 'x');
        protocols::Segment s;
        s.timestamp_ns = 100 + i;
        s.length = next - pieces[i].first;
        s.head = head;
        pos = 0;
        res = r.next(View(s), pos);
        EXPECT_EQ(pos, s.length);
    }
    ASSERT_EQ(res, PacketReader::Result::kPacket);
    EXPECT_EQ(r.packet().length, total);
    EXPECT_EQ(r.packet().seq, 255);
    EXPECT_EQ(r.packet().last_seq, static_cast<std::uint8_t>(255 + pieces.size() - 1));
    EXPECT_FALSE(r.packet().whole);
    EXPECT_EQ(r.packet().start_ns, 100u);
    EXPECT_EQ(r.packet().end_ns, 100u + pieces.size() - 1);
}

TEST(MysqlPacket, ContinuationOutOfSequenceIsLost) {
    PacketReader r(32);
    protocols::Segment s;
    Bytes h1 = header(kMaxPacketPayload, 3);
    s.length = 4 + kMaxPacketPayload;
    s.head = h1;
    std::uint64_t pos = 0;
    EXPECT_EQ(r.next(View(s), pos), PacketReader::Result::kNeedMore);
    Bytes h2 = header(1, 9);
    h2.push_back(0);
    pos = 0;
    EXPECT_EQ(r.next(View(whole(h2, 2)), pos), PacketReader::Result::kLost);
}

TEST(MysqlPacket, HeaderInBytesNeverSeenIsLost) {
    PacketReader r(32);
    Bytes head = header(2, 0);
    head.push_back(1);
    head.push_back(2);
    protocols::Segment s;
    s.length = 100;  // the next header falls at byte 6, never captured
    s.head = head;
    std::uint64_t pos = 0;
    const View v(s);
    ASSERT_EQ(r.next(v, pos), PacketReader::Result::kPacket);
    EXPECT_EQ(r.next(v, pos), PacketReader::Result::kLost);
}

}  // namespace
}  // namespace loupe::mysql
