// EventMerger on hand-built records: the order of the per-CPU rings is undone by timestamps, and
// nothing younger than the hold-back goes out before its time.
#include "capture/event_merger.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "loupe_abi.h"

namespace loupe::capture {
namespace {

std::vector<std::uint8_t> record(std::uint64_t timestamp_ns, std::uint32_t tid) {
    loupe_conn_close_event e{};
    e.header.kind = LOUPE_EVENT_CONN_CLOSE;
    e.header.tid = tid;
    e.header.timestamp_ns = timestamp_ns;
    std::vector<std::uint8_t> out(sizeof(e));
    std::memcpy(out.data(), &e, sizeof(e));
    return out;
}

std::uint32_t tid_of(std::span<const std::uint8_t> r) {
    loupe_event_header h{};
    std::memcpy(&h, r.data(), sizeof(h));
    return h.tid;
}

TEST(EventMerger, ReleasesInTimestampOrderAcrossRings) {
    EventMerger merger(5'000'000);
    // Ring of CPU 0 drained first, then CPU 1's: interleaved in time.
    for (auto [ts, tid] : {std::pair{100, 1}, {300, 3}, {500, 5}})
        merger.add(record(ts, tid));
    for (auto [ts, tid] : {std::pair{200, 2}, {400, 4}})
        merger.add(record(ts, tid));
    std::vector<std::uint32_t> order;
    EXPECT_EQ(merger.release(10'000'000, [&](auto r) { order.push_back(tid_of(r)); }), 5u);
    EXPECT_EQ(order, (std::vector<std::uint32_t>{1, 2, 3, 4, 5}));
    EXPECT_EQ(merger.held(), 0u);
}

TEST(EventMerger, HoldsRecentRecordsUntilTheyAreOldEnough) {
    EventMerger merger(5'000'000);
    merger.add(record(1'000'000, 1));
    merger.add(record(9'000'000, 3));
    std::vector<std::uint32_t> order;
    EXPECT_EQ(merger.release(10'000'000, [&](auto r) { order.push_back(tid_of(r)); }), 1u);
    EXPECT_EQ(merger.held(), 1u);
    // A record of another CPU stamped before the held one arrives in the next drain.
    merger.add(record(8'000'000, 2));
    EXPECT_EQ(merger.release(20'000'000, [&](auto r) { order.push_back(tid_of(r)); }), 2u);
    EXPECT_EQ(order, (std::vector<std::uint32_t>{1, 2, 3}));
}

TEST(EventMerger, ReleaseAllAndShortRecords) {
    EventMerger merger(5'000'000);
    merger.add(record(50'000'000, 2));
    const std::vector<std::uint8_t> short_record = {1, 2, 3};
    merger.add(short_record);  // no header: stamped 0, goes first
    std::vector<std::size_t> sizes;
    EXPECT_EQ(merger.release_all([&](auto r) { sizes.push_back(r.size()); }), 2u);
    EXPECT_EQ(sizes, (std::vector<std::size_t>{3, sizeof(loupe_conn_close_event)}));
    EXPECT_EQ(merger.held(), 0u);
}

TEST(EventMerger, EqualTimestampsKeepArrivalOrder) {
    EventMerger merger(0);
    for (std::uint32_t tid = 1; tid <= 4; ++tid)
        merger.add(record(700, tid));
    merger.add(record(600, 9));
    std::vector<std::uint32_t> order;
    merger.release(1'000, [&](auto r) { order.push_back(tid_of(r)); });
    EXPECT_EQ(order, (std::vector<std::uint32_t>{9, 1, 2, 3, 4}));
}

// Many drains of two interleaved rings, with records that outlive several drains: every record
// comes out once, intact, in order, and the storage of released records is reused.
TEST(EventMerger, ManyDrainsKeepOrderContentAndBoundedStorage) {
    EventMerger merger(5'000);
    std::vector<std::uint32_t> released;
    std::uint64_t last_timestamp = 0;
    bool in_order = true;
    const auto handler = [&](std::span<const std::uint8_t> r) {
        loupe_event_header h{};
        std::memcpy(&h, r.data(), sizeof(h));
        in_order = in_order && h.timestamp_ns >= last_timestamp;
        last_timestamp = h.timestamp_ns;
        released.push_back(h.tid);
    };
    std::uint32_t tid = 0;
    std::size_t peak_storage = 0;
    for (std::uint64_t drain = 1; drain <= 200; ++drain) {
        // Each drain adds 1,000 records per ring, the second ring's stamped between the first's.
        for (int ring = 0; ring < 2; ++ring)
            for (std::uint64_t i = 0; i < 1'000; ++i)
                merger.add(
                    record(drain * 10'000 + i * 10 + static_cast<std::uint64_t>(ring) * 5, ++tid));
        merger.release(drain * 10'000 + 12'000, handler);
        peak_storage = std::max(peak_storage, merger.storage_bytes());
    }
    merger.release_all(handler);
    EXPECT_TRUE(in_order);
    ASSERT_EQ(released.size(), 400'000u);
    std::vector<std::uint32_t> sorted = released;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "released twice";
    EXPECT_EQ(merger.held(), 0u);
    // About two drains' records (2 x 2,000 x 40 bytes) are ever stored at once: a few chunks.
    EXPECT_LE(peak_storage, 4u * 256 * 1024);
}

// Rings whose records are partly out of order (a write stamped before events another task added
// meanwhile), three rings per drain, records older than some still held: every release hands
// over what a reference model does, the held records stamped at or before the limit sorted by
// (timestamp, arrival).
TEST(EventMerger, AnyRunsComeOutAsTheReferenceOrder) {
    constexpr std::uint64_t kHoldBack = 1'000;
    EventMerger merger(kHoldBack);
    std::vector<std::pair<std::uint64_t, std::uint32_t>> pending;  // (timestamp, tid = arrival)
    std::uint32_t tid = 0;
    std::uint64_t seed = 42;
    auto next = [&seed] {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        return seed >> 33;
    };
    std::size_t released = 0;
    for (std::uint64_t drain = 1; drain <= 50; ++drain) {
        for (int ring = 0; ring < 3; ++ring) {
            std::uint64_t ts = drain * 2'000;
            for (int i = 0; i < 40; ++i) {
                ts += next() % 50;
                // One record in eight is stamped before its ring's previous ones; timestamps
                // also collide across rings.
                const std::uint64_t stamped = next() % 8 == 0 ? ts - next() % 1'500 : ts;
                merger.add(record(stamped, ++tid));
                pending.emplace_back(stamped, tid);
            }
        }
        const std::uint64_t now = drain * 2'000 + 1'500;
        std::stable_sort(pending.begin(), pending.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        const auto cut =
            std::upper_bound(pending.begin(), pending.end(), now - kHoldBack,
                             [](std::uint64_t t, const auto& p) { return t < p.first; });
        std::vector<std::uint32_t> want;
        for (auto it = pending.begin(); it != cut; ++it)
            want.push_back(it->second);
        pending.erase(pending.begin(), cut);
        std::vector<std::uint32_t> got;
        merger.release(now, [&](auto r) { got.push_back(tid_of(r)); });
        ASSERT_EQ(got, want) << "drain " << drain;
        released += got.size();
        EXPECT_EQ(merger.held(), pending.size());
    }
    EXPECT_GT(released, 0u);
    EXPECT_LT(released, static_cast<std::size_t>(tid));  // some were still held at each release
}

}  // namespace
}  // namespace loupe::capture
