// MySQL packet framing over the segments loupe captures: a streaming reader that finds where each
// packet (3-byte little-endian payload length, 1-byte sequence id) begins and ends, joins the
// packets of a payload of 16 MB or more (a length of 0xFFFFFF continues in the next packet), keeps
// the first bytes of each payload, and skips by count the bytes it never saw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "protocols/protocol.h"
#include "protocols/segment_view.h"

namespace loupe::mysql {

// One read or write as positions in its connection's byte stream (protocols/segment_view.h).
using View = protocols::SegmentView;

// A logical packet: one payload, possibly spread over several wire packets.
struct Packet {
    std::uint8_t seq = 0;       // sequence id of its first wire packet
    std::uint8_t last_seq = 0;  // and of its last
    std::uint64_t length = 0;   // payload bytes in all
    std::uint64_t start_ns = 0;
    std::uint64_t end_ns = 0;
    // The first payload bytes seen (at most the reader's keep); `whole` when they are all of it.
    std::span<const std::uint8_t> payload;
    bool whole = false;
};

class PacketReader {
  public:
    enum class Result : std::uint8_t {
        kPacket,    // a packet is complete: see packet(); call again for more
        kNeedMore,  // the segment is used up (a packet may be in progress)
        kLost,      // a header fell in bytes never seen, or a continuation was out of sequence
    };

    // keep: payload bytes kept per packet (the rest is only counted).
    explicit PacketReader(std::size_t keep) noexcept : keep_(keep) {}

    // Reads from pos on, up to the end of the next packet or of the segment.
    Result next(const View& v, std::uint64_t& pos);
    const Packet& packet() const noexcept { return packet_; }
    // At a packet boundary (nothing of a packet read yet).
    bool idle() const noexcept { return !open_; }
    void reset() noexcept;
    std::size_t memory_bytes() const noexcept { return kept_.capacity(); }

  private:
    std::size_t keep_;
    bool open_ = false;        // a packet is in progress (header bytes or payload)
    bool continuing_ = false;  // the last wire packet was 0xFFFFFF bytes: another follows
    std::uint8_t header_[4] = {};
    std::uint8_t header_len_ = 0;
    std::uint64_t remaining_ = 0;  // payload bytes of the current wire packet still to read
    bool in_payload_ = false;
    std::uint32_t wire_len_ = 0;
    bool gap_ = false;  // payload bytes of this packet went unseen within the kept prefix
    std::vector<std::uint8_t> kept_;
    Packet packet_;
};

}  // namespace loupe::mysql
