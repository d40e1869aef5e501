// Ring records as the kernel sends them: batches of events (struct loupe_event_batch) split back
// into events, and batches that lie about their sizes.
#include "capture/event_decoder.h"

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace loupe::capture {
namespace {

std::vector<std::uint8_t> close_event(std::int32_t fd) {
    loupe_conn_close_event e{};
    e.header.kind = LOUPE_EVENT_CONN_CLOSE;
    e.header.conn = {7, fd, 1};
    std::vector<std::uint8_t> out(sizeof(e));
    std::memcpy(out.data(), &e, sizeof(e));
    return out;
}

std::vector<std::uint8_t> data_event(const std::string& head) {
    loupe_data_event e{};
    e.header.kind = LOUPE_EVENT_DATA;
    e.length = head.size();
    e.head_len = static_cast<std::uint16_t>(head.size());
    std::memcpy(e.head, head.data(), head.size());
    std::vector<std::uint8_t> out(offsetof(loupe_data_event, head) + head.size());
    std::memcpy(out.data(), &e, out.size());
    return out;
}

std::vector<std::uint8_t> chunk_event(std::uint32_t offset, const std::string& bytes) {
    loupe_data_chunk_event e{};
    e.header.kind = LOUPE_EVENT_DATA_CHUNK;
    e.offset = offset;
    e.len = static_cast<std::uint16_t>(bytes.size());
    std::memcpy(e.data, bytes.data(), bytes.size());
    std::vector<std::uint8_t> out(offsetof(loupe_data_chunk_event, data) + bytes.size());
    std::memcpy(out.data(), &e, out.size());
    return out;
}

// A batch record as batch_commit in event_batch.bpf.h lays it out.
std::vector<std::uint8_t> batch_of(const std::vector<std::vector<std::uint8_t>>& events) {
    constexpr std::size_t kFixed = offsetof(loupe_event_batch, data);
    std::vector<std::uint8_t> record(kFixed, 0);
    for (const auto& e : events) {
        const std::size_t at = record.size();
        const loupe_batch_entry entry{static_cast<std::uint32_t>(e.size()), 0};
        record.resize(at + sizeof(entry) + ((e.size() + 7) & ~std::size_t{7}), 0);
        std::memcpy(record.data() + at, &entry, sizeof(entry));
        std::memcpy(record.data() + at + sizeof(entry), e.data(), e.size());
    }
    const std::uint16_t kind = LOUPE_EVENT_BATCH;
    const auto bytes = static_cast<std::uint32_t>(record.size() - kFixed);
    std::memcpy(record.data(), &kind, sizeof(kind));
    std::memcpy(record.data() + offsetof(loupe_event_batch, bytes), &bytes, sizeof(bytes));
    return record;
}

std::vector<DecodedEvent> decode_all(const std::vector<std::uint8_t>& record,
                                     std::vector<std::vector<std::uint8_t>>& storage) {
    std::vector<DecodedEvent> out;
    for_each_batched_event(record, [&](std::span<const std::uint8_t> event) {
        storage.emplace_back(event.begin(), event.end());  // aligned copies outlive the call
    });
    for (const auto& e : storage)
        out.push_back(decode_event(e));
    return out;
}

TEST(EventBatch, SplitsIntoItsEventsInOrder) {
    const auto record = batch_of(
        {data_event("GET / HTTP/1.1\r\n\r\n"), close_event(3), data_event("HTTP/1.1 200 OK\r\n")});
    std::vector<std::vector<std::uint8_t>> storage;
    const auto events = decode_all(record, storage);
    ASSERT_EQ(events.size(), 3u);
    const auto* first = std::get_if<DataSegment>(&events[0]);
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(std::string(first->head().begin(), first->head().end()), "GET / HTTP/1.1\r\n\r\n");
    const auto* close = std::get_if<ConnClose>(&events[1]);
    ASSERT_NE(close, nullptr);
    EXPECT_EQ(close->event->header.conn.fd, 3);
    ASSERT_NE(std::get_if<DataSegment>(&events[2]), nullptr);
}

TEST(EventBatch, ALoneEventPassesThrough) {
    std::vector<std::vector<std::uint8_t>> storage;
    const auto events = decode_all(close_event(5), storage);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_NE(std::get_if<ConnClose>(&events[0]), nullptr);
}

TEST(EventBatch, EmptyBatchHasNoEvents) {
    std::vector<std::vector<std::uint8_t>> storage;
    EXPECT_TRUE(decode_all(batch_of({}), storage).empty());
}

TEST(EventBatch, EntryRunningPastTheBatchEndsItAsMalformed) {
    auto record = batch_of({close_event(3), close_event(4)});
    // The second entry claims more bytes than the batch holds.
    const std::size_t second = offsetof(loupe_event_batch, data) + sizeof(loupe_batch_entry) +
                               ((sizeof(loupe_conn_close_event) + 7) & ~std::size_t{7});
    const std::uint32_t lie = 5000;
    std::memcpy(record.data() + second, &lie, sizeof(lie));
    std::vector<std::vector<std::uint8_t>> storage;
    const auto events = decode_all(record, storage);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_NE(std::get_if<ConnClose>(&events[0]), nullptr);
    EXPECT_NE(std::get_if<Malformed>(&events[1]), nullptr);
}

TEST(EventBatch, ByteCountBeyondTheRecordIsCut) {
    auto record = batch_of({close_event(3)});
    const std::uint32_t lie = 4096;
    std::memcpy(record.data() + offsetof(loupe_event_batch, bytes), &lie, sizeof(lie));
    record.resize(record.size() - 4);  // and the record is cut inside the event
    std::vector<std::vector<std::uint8_t>> storage;
    const auto events = decode_all(record, storage);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_NE(std::get_if<Malformed>(&events[0]), nullptr);
}

TEST(EventBatch, TruncatedBatchHeaderIsOneMalformedRecord) {
    std::vector<std::uint8_t> record(4, 0);
    const std::uint16_t kind = LOUPE_EVENT_BATCH;
    std::memcpy(record.data(), &kind, sizeof(kind));
    std::vector<std::vector<std::uint8_t>> storage;
    const auto events = decode_all(record, storage);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_NE(std::get_if<Malformed>(&events[0]), nullptr);
}

TEST(EventDecoder, DataEventFollowedByItsChunk) {
    auto head = data_event(std::string(LOUPE_DATA_HEAD_MAX, 'h'));
    auto* e = reinterpret_cast<loupe_data_event*>(head.data());
    e->length = LOUPE_DATA_HEAD_MAX + 300 + 5000;
    e->captured = LOUPE_DATA_HEAD_MAX + 300;
    e->tail_len = LOUPE_DATA_TAIL_MAX;
    std::vector<std::vector<std::uint8_t>> storage;
    const auto events =
        decode_all(batch_of({head, chunk_event(LOUPE_DATA_HEAD_MAX, "more")}), storage);
    ASSERT_EQ(events.size(), 2u);
    const auto* data = std::get_if<DataSegment>(&events[0]);
    ASSERT_NE(data, nullptr);
    EXPECT_EQ(data->head().size(), static_cast<std::size_t>(LOUPE_DATA_HEAD_MAX));
    EXPECT_EQ(data->tail().size(), static_cast<std::size_t>(LOUPE_DATA_TAIL_MAX));
    const auto* chunk = std::get_if<DataChunk>(&events[1]);
    ASSERT_NE(chunk, nullptr);
    EXPECT_EQ(chunk->event->offset, static_cast<std::uint32_t>(LOUPE_DATA_HEAD_MAX));
    EXPECT_EQ(std::string(chunk->data().begin(), chunk->data().end()), "more");
}

// A data event whose head holds all of its data has no tail to offer, whatever tail_len says.
TEST(EventDecoder, NoTailWhenTheHeadHoldsEverything) {
    auto record = data_event("GET / HTTP/1.1\r\n\r\n");
    reinterpret_cast<loupe_data_event*>(record.data())->tail_len = LOUPE_DATA_TAIL_MAX;
    const auto event = decode_event(record);
    const auto* data = std::get_if<DataSegment>(&event);
    ASSERT_NE(data, nullptr);
    EXPECT_TRUE(data->tail().empty());
}

TEST(EventDecoder, ChunksThatLieAboutTheirLengthAreMalformed) {
    auto beyond_record = chunk_event(1024, "abcd");
    beyond_record.resize(beyond_record.size() - 1);  // len says 4, 3 are there
    const auto beyond = decode_event(beyond_record);
    EXPECT_NE(std::get_if<Malformed>(&beyond), nullptr);
    loupe_data_chunk_event big{};
    big.header.kind = LOUPE_EVENT_DATA_CHUNK;
    big.len = LOUPE_CHUNK_BYTES + 1;
    std::vector<std::uint8_t> record(sizeof(big) + 8);
    std::memcpy(record.data(), &big, sizeof(big));
    const auto event = decode_event(record);
    EXPECT_NE(std::get_if<Malformed>(&event), nullptr);
    const std::vector<std::uint8_t> short_record(offsetof(loupe_data_chunk_event, data) - 1, 0);
    auto header_only = short_record;
    const std::uint16_t kind = LOUPE_EVENT_DATA_CHUNK;
    std::memcpy(header_only.data(), &kind, sizeof(kind));
    const auto cut = decode_event(header_only);
    EXPECT_NE(std::get_if<Malformed>(&cut), nullptr);
}

}  // namespace
}  // namespace loupe::capture
