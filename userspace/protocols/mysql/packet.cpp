#include "protocols/mysql/packet.h"

#include <algorithm>

#include "protocols/mysql/types.h"

namespace loupe::mysql {

void PacketReader::reset() noexcept {
    open_ = false;
    continuing_ = false;
    header_len_ = 0;
    remaining_ = 0;
    in_payload_ = false;
    gap_ = false;
    kept_.clear();
}

PacketReader::Result PacketReader::next(const View& v, std::uint64_t& pos) {
    for (;;) {
        if (!in_payload_) {
            if (pos >= v.len) return Result::kNeedMore;
            const std::uint8_t* run = nullptr;
            const std::size_t n = v.visible(pos, run);
            if (n == 0) {
                reset();
                return Result::kLost;
            }
            if (!open_) {
                open_ = true;
                kept_.clear();
                gap_ = false;
                packet_ = Packet{};
                packet_.start_ns = v.first_ts;
            }
            const std::size_t take = std::min<std::size_t>(n, 4u - header_len_);
            std::copy_n(run, take, header_ + header_len_);
            header_len_ = static_cast<std::uint8_t>(header_len_ + take);
            pos += take;
            if (header_len_ < 4) continue;
            header_len_ = 0;
            wire_len_ = std::uint32_t{header_[0]} | (std::uint32_t{header_[1]} << 8) |
                        (std::uint32_t{header_[2]} << 16);
            const std::uint8_t seq = header_[3];
            if (continuing_) {
                // Every wire packet of one payload takes the next sequence id (mod 256).
                if (seq != static_cast<std::uint8_t>(packet_.last_seq + 1)) {
                    reset();
                    return Result::kLost;
                }
            } else {
                packet_.seq = seq;
            }
            packet_.last_seq = seq;
            packet_.length += wire_len_;
            remaining_ = wire_len_;
            in_payload_ = true;
        }
        while (remaining_ > 0 && pos < v.len) {
            if (const std::uint64_t h = v.hidden(pos); h > 0) {
                const std::uint64_t skip = std::min(h, remaining_);
                if (kept_.size() < keep_) gap_ = true;
                pos += skip;
                remaining_ -= skip;
                continue;
            }
            const std::uint8_t* run = nullptr;
            const std::size_t n = v.visible(pos, run);
            const std::size_t take =
                static_cast<std::size_t>(std::min<std::uint64_t>(n, remaining_));
            if (!gap_ && kept_.size() < keep_) {
                const std::size_t k = std::min(take, keep_ - kept_.size());
                kept_.insert(kept_.end(), run, run + k);
            }
            pos += take;
            remaining_ -= take;
        }
        if (remaining_ > 0) return Result::kNeedMore;
        in_payload_ = false;
        if (wire_len_ == kMaxPacketPayload) {
            continuing_ = true;
            continue;
        }
        continuing_ = false;
        open_ = false;
        packet_.end_ns = v.ts;
        packet_.payload = kept_;
        packet_.whole = !gap_ && kept_.size() == packet_.length;
        return Result::kPacket;
    }
}

}  // namespace loupe::mysql
