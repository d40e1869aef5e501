// Puts the records of the per-CPU ring buffers back into one time order. Each CPU's ring is in
// order, but a connection's events can come from several CPUs (a thread migrates between its read
// and its write), and one drain reads the rings one after the other: a record committed on CPU 0
// just after CPU 0's ring was read could otherwise be handed over after a later record of CPU 1.
// So records are held until they are older than a hold-back delay (far longer than the time
// between a record's timestamp and its commit), then released sorted by timestamp.
//
// Cost: this runs for every captured read and write. Each record is copied once, into a chunk
// that is recycled when all of its records are gone; a drain sorts only the records it added and
// merges them into the ones still held (already sorted). Re-sorting and re-copying what was held
// at every drain made the agent cost 1.3-1.5 us of CPU per nginx request, 0.9 us without
// (tools/bench/cost.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

namespace loupe::capture {

class EventMerger {
  public:
    using Handler = std::function<void(std::span<const std::uint8_t>)>;

    explicit EventMerger(std::uint64_t hold_back_ns) : hold_back_ns_(hold_back_ns) {}

    // Keeps a copy of one ring-buffer record (its timestamp is read from loupe_event_header; a
    // record too short to have one goes first, for the decoder to count as malformed).
    void add(std::span<const std::uint8_t> record);
    // Hands over, oldest first, every record stamped at or before now_ns - hold_back; keeps the
    // rest for a later call. Records with equal timestamps keep the order they were added in.
    // Returns how many were handed over.
    std::size_t release(std::uint64_t now_ns, const Handler& handler);
    // Hands over everything held (shutdown).
    std::size_t release_all(const Handler& handler);

    std::size_t held() const { return held_.size() - released_ + added_.size(); }
    // Bytes of record storage allocated (held records, and spare chunks: at most as many as hold
    // records, at least one).
    std::size_t storage_bytes() const;

  private:
    struct Chunk {
        explicit Chunk(std::size_t size) : bytes(new std::uint8_t[size]), capacity(size) {}
        std::unique_ptr<std::uint8_t[]> bytes;
        std::size_t capacity;
        std::size_t used = 0;
        std::size_t live = 0;  // records stored here and not released yet
    };
    struct Entry {
        std::uint64_t timestamp_ns;
        std::uint64_t sequence;  // order of add(): ties keep it
        Chunk* chunk;
        const std::uint8_t* data;
        std::size_t size;
    };
    static bool earlier(const Entry& a, const Entry& b) {
        return a.timestamp_ns != b.timestamp_ns ? a.timestamp_ns < b.timestamp_ns
                                                : a.sequence < b.sequence;
    }

    Chunk& chunk_for(std::size_t size);
    void sort_added();
    void merge_added();
    std::size_t release_until(std::uint64_t limit_ns, const Handler& handler);
    void recycle_chunks();

    std::uint64_t hold_back_ns_;
    std::uint64_t next_sequence_ = 0;
    std::vector<Entry> held_;  // sorted; the first released_ are gone
    std::size_t released_ = 0;
    std::vector<Entry> added_;                    // since the last release, in arrival order
    std::vector<Entry> merged_;                   // scratch for merging, keeps its capacity
    std::vector<std::size_t> run_ends_;           // scratch: where sort_added's runs end
    std::vector<std::unique_ptr<Chunk>> chunks_;  // the last one is being filled
    std::vector<std::unique_ptr<Chunk>> spares_;  // emptied chunks, for the next records
};

}  // namespace loupe::capture
