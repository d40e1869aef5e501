// The chunk events of a read or write joined to its data event, in the order the capture hands
// events over: whole, with chunks missing, interleaved with other connections' events.
#include "capture/segment_assembler.h"

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace loupe::capture {
namespace {

// A record as the kernel lays it out, 8-byte aligned for the decoder's casts.
struct Record {
    std::vector<std::uint64_t> words;
    std::size_t size = 0;
    std::span<const std::uint8_t> span() const {
        return {reinterpret_cast<const std::uint8_t*>(words.data()), size};
    }
};

template <typename Event>
Record record_of(const Event& e, std::size_t size) {
    Record r;
    r.words.resize((size + 7) / 8);
    std::memcpy(r.words.data(), &e, size);
    r.size = size;
    return r;
}

loupe_event_header header(std::uint16_t kind, std::int32_t fd, std::uint64_t ts) {
    loupe_event_header h{};
    h.kind = kind;
    h.protocol = LOUPE_PROTOCOL_HTTP1;
    h.tid = 7;
    h.timestamp_ns = ts;
    h.conn = {7, fd, 100};
    return h;
}

// A data event whose head holds the first head_len bytes of `data` and that announces
// `captured` bytes in all (chunks follow with the rest).
Record data_event(std::int32_t fd, std::uint64_t ts, const std::string& data, std::size_t head_len,
                  std::size_t captured) {
    loupe_data_event e{};
    e.header = header(LOUPE_EVENT_DATA, fd, ts);
    e.length = data.size();
    e.head_len = static_cast<std::uint16_t>(head_len);
    e.captured = static_cast<std::uint32_t>(captured);
    std::memcpy(e.head, data.data(), head_len);
    if (captured < data.size()) {
        e.tail_len = LOUPE_DATA_TAIL_MAX;
        std::memcpy(e.tail, data.data() + data.size() - LOUPE_DATA_TAIL_MAX, LOUPE_DATA_TAIL_MAX);
    }
    return record_of(e, offsetof(loupe_data_event, head) + head_len);
}

Record chunk_event(std::int32_t fd, std::uint64_t ts, const std::string& data, std::size_t offset,
                   std::size_t len) {
    loupe_data_chunk_event c{};
    c.header = header(LOUPE_EVENT_DATA_CHUNK, fd, ts);
    c.offset = static_cast<std::uint32_t>(offset);
    c.len = static_cast<std::uint16_t>(len);
    std::memcpy(c.data, data.data() + offset, len);
    return record_of(c, offsetof(loupe_data_chunk_event, data) + len);
}

Record close_event(std::int32_t fd, std::uint64_t ts) {
    loupe_conn_close_event e{};
    e.header = header(LOUPE_EVENT_CONN_CLOSE, fd, ts);
    return record_of(e, sizeof(e));
}

// What was handed on, owned.
struct Out {
    std::uint16_t kind = 0;
    std::int32_t fd = -1;
    std::string head;
    std::string tail;
};

struct Assembly {
    SegmentAssembler assembler;
    std::vector<Out> out;
    void add(const Record& r) {
        assembler.add(decode_event(r.span()), [this](const DecodedEvent& e) { take(e); });
    }
    void flush() {
        assembler.flush([this](const DecodedEvent& e) { take(e); });
    }
    void take(const DecodedEvent& e) {
        Out o;
        if (const auto* d = std::get_if<DataSegment>(&e)) {
            o.kind = LOUPE_EVENT_DATA;
            o.fd = d->event->header.conn.fd;
            o.head.assign(d->head().begin(), d->head().end());
            o.tail.assign(d->tail().begin(), d->tail().end());
        } else if (const auto* c = std::get_if<ConnClose>(&e)) {
            o.kind = LOUPE_EVENT_CONN_CLOSE;
            o.fd = c->event->header.conn.fd;
        } else {
            ADD_FAILURE() << "unexpected event handed on";
        }
        out.push_back(std::move(o));
    }
};

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + i * 7 % 26);
    return s;
}

TEST(SegmentAssembler, EventsWithoutChunksPassStraightThrough) {
    Assembly a;
    const std::string data = "GET / HTTP/1.1\r\n\r\n";
    a.add(data_event(3, 10, data, data.size(), data.size()));
    ASSERT_EQ(a.out.size(), 1u);
    EXPECT_EQ(a.out[0].head, data);
    EXPECT_TRUE(a.out[0].tail.empty());
    EXPECT_EQ(a.assembler.waiting(), 0u);
}

TEST(SegmentAssembler, JoinsTheChunksOfAReadToItsHead) {
    Assembly a;
    const std::string data = pattern(2500);
    a.add(data_event(3, 10, data, 1024, 2500));
    a.add(chunk_event(3, 10, data, 1024, 1024));
    EXPECT_TRUE(a.out.empty());  // waits for the last chunk
    a.add(chunk_event(3, 10, data, 2048, 452));
    ASSERT_EQ(a.out.size(), 1u);
    EXPECT_EQ(a.out[0].head, data);
    EXPECT_TRUE(a.out[0].tail.empty());  // every byte is in the head
    EXPECT_EQ(a.assembler.stats().joined, 1u);
}

// Past the copy cap the data is counted, not copied: the head stops there, the tail is the
// data's last bytes.
TEST(SegmentAssembler, DataLongerThanTheCapKeepsItsTail) {
    Assembly a;
    const std::string data = pattern(10000);
    a.add(data_event(3, 10, data, 1024, 4096));
    for (std::size_t at = 1024; at < 4096; at += 1024)
        a.add(chunk_event(3, 10, data, at, 1024));
    ASSERT_EQ(a.out.size(), 1u);
    EXPECT_EQ(a.out[0].head, data.substr(0, 4096));
    EXPECT_EQ(a.out[0].tail, data.substr(10000 - LOUPE_DATA_TAIL_MAX));
}

// A chunk lost on the way (a full ring): the data event is handed on with the bytes before the
// gap when the next chunk shows the gap, or when an event with another timestamp comes.
TEST(SegmentAssembler, MissingChunkHandsOnTheBytesBeforeIt) {
    Assembly a;
    const std::string data = pattern(3000);
    a.add(data_event(3, 10, data, 1024, 3000));
    a.add(chunk_event(3, 10, data, 2048, 952));  // 1024..2048 never came
    ASSERT_EQ(a.out.size(), 1u);
    EXPECT_EQ(a.out[0].head, data.substr(0, 1024));
    EXPECT_EQ(a.assembler.stats().short_segments, 1u);
    EXPECT_EQ(a.assembler.stats().orphan_chunks, 1u);

    a.add(data_event(4, 20, data, 1024, 3000));
    a.add(chunk_event(4, 20, data, 1024, 1024));
    a.add(close_event(5, 30));  // another connection, later: no more chunks can come
    ASSERT_EQ(a.out.size(), 3u);
    EXPECT_EQ(a.out[1].fd, 4);
    EXPECT_EQ(a.out[1].head, data.substr(0, 2048));
    EXPECT_EQ(a.out[2].kind, LOUPE_EVENT_CONN_CLOSE);
}

// Two connections' reads with the same timestamp (two CPUs): their chunks interleave, and each
// read gets its own. The connection's own next event hands its read on first.
TEST(SegmentAssembler, ChunksOfReadsWithTheSameTimestamp) {
    Assembly a;
    const std::string one = pattern(1500);
    const std::string two = std::string(1800, 'z');
    a.add(data_event(3, 10, one, 1024, 1500));
    a.add(data_event(4, 10, two, 1024, 1800));
    a.add(chunk_event(4, 10, two, 1024, 776));
    ASSERT_EQ(a.out.size(), 1u);
    EXPECT_EQ(a.out[0].fd, 4);
    EXPECT_EQ(a.out[0].head, two);
    a.add(close_event(3, 10));  // connection 3's close, same timestamp: its read goes first
    ASSERT_EQ(a.out.size(), 3u);
    EXPECT_EQ(a.out[1].fd, 3);
    EXPECT_EQ(a.out[1].head, one.substr(0, 1024));
    EXPECT_EQ(a.out[2].kind, LOUPE_EVENT_CONN_CLOSE);
}

TEST(SegmentAssembler, FlushHandsOnWhatWaits) {
    Assembly a;
    const std::string data = pattern(2000);
    a.add(data_event(3, 10, data, 1024, 2000));
    a.flush();
    ASSERT_EQ(a.out.size(), 1u);
    EXPECT_EQ(a.out[0].head, data.substr(0, 1024));
    EXPECT_EQ(a.assembler.waiting(), 0u);
}

// Records are not trusted: a chunk with no data event before it is dropped (counted), one that
// says more than was announced is cut, and an announcement beyond the largest copy cap is not
// believed.
TEST(SegmentAssembler, UntrustedRecords) {
    Assembly a;
    const std::string data = pattern(3000);
    a.add(chunk_event(3, 10, data, 1024, 1024));
    EXPECT_TRUE(a.out.empty());
    EXPECT_EQ(a.assembler.stats().orphan_chunks, 1u);

    a.add(data_event(3, 20, data, 1024, 1500));
    a.add(chunk_event(3, 20, data, 1024, 1024));
    ASSERT_EQ(a.out.size(), 1u);
    EXPECT_EQ(a.out[0].head, data.substr(0, 1500));

    auto huge = data_event(3, 30, data, 1024, 1024);
    reinterpret_cast<loupe_data_event*>(huge.words.data())->captured = 0xffffffffu;
    a.add(huge);
    for (std::size_t at = 1024; at + 1024 <= LOUPE_COPY_CAP_MAX + 4096; at += 1024) {
        std::string big(at + 1024, 'q');
        a.add(chunk_event(3, 30, big, at, 1024));
    }
    ASSERT_EQ(a.out.size(), 2u);
    EXPECT_EQ(a.out[1].head.size(), static_cast<std::size_t>(LOUPE_COPY_CAP_MAX));
}

}  // namespace
}  // namespace loupe::capture
