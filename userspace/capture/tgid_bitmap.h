// The process filter's bitmap of one BPF object (traced_tgids, traced_tgids.bpf.h), mapped into
// loupe's memory and changed a bit at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loupe::capture {

class TgidBitmap {
  public:
    // Maps the bitmap array (BPF_F_MMAPABLE) behind `map_fd`; nullptr with `error` set when the
    // kernel refuses.
    static std::unique_ptr<TgidBitmap> map(int map_fd, std::string& error);
    ~TgidBitmap();
    TgidBitmap(const TgidBitmap&) = delete;
    TgidBitmap& operator=(const TgidBitmap&) = delete;

    // Selects exactly `wanted` among the processes this object selected before: sets the bits of
    // the new ones and clears those of the ones left out. The kernel sets bits in the same words
    // at exec and fork (--comm), and clears them at exit: each change here is one atomic bit
    // operation, so none of the kernel's is undone. (Writing whole words, as before, cleared the
    // bit of a process selected at fork in the moment between a /proc scan and the write.)
    void replace(const std::vector<std::uint32_t>& wanted);
    bool selected(std::uint32_t tgid) const;

  private:
    TgidBitmap(std::uint64_t* words, std::size_t word_count, std::size_t mapped_bytes)
        : words_(words), word_count_(word_count), mapped_bytes_(mapped_bytes) {}
    void change(std::uint32_t tgid, bool select);

    std::uint64_t* words_;
    std::size_t word_count_;
    std::size_t mapped_bytes_;
    std::vector<std::uint32_t> current_;  // sorted: what replace() selected last
};

}  // namespace loupe::capture
