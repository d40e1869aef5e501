// Puts the records of the per-CPU ring buffers back into one time order. Each CPU's ring is in
// order, but a connection's events can come from several CPUs (a thread migrates between its read
// and its write), and one drain reads the rings one after the other: a record committed on CPU 0
// just after CPU 0's ring was read could otherwise be handed over after a later record of CPU 1.
// So records are held until they are older than a hold-back delay (far longer than the time
// between a record's timestamp and its commit), then released sorted by timestamp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
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
    // rest for a later call. Returns how many were handed over.
    std::size_t release(std::uint64_t now_ns, const Handler& handler);
    // Hands over everything held (shutdown).
    std::size_t release_all(const Handler& handler);

    std::size_t held() const { return entries_.size(); }

  private:
    struct Entry {
        std::uint64_t timestamp_ns;
        std::size_t offset;  // into bytes_
        std::size_t size;
    };
    std::size_t release_until(std::uint64_t limit_ns, const Handler& handler);

    std::uint64_t hold_back_ns_;
    std::vector<Entry> entries_;
    std::vector<std::uint8_t> bytes_;
    std::vector<Entry> spare_entries_;
    std::vector<std::uint8_t> spare_bytes_;
};

}  // namespace loupe::capture
