#include "capture/tgid_bitmap.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iterator>

#include <bpf/bpf.h>

namespace loupe::capture {

std::unique_ptr<TgidBitmap> TgidBitmap::map(int map_fd, std::string& error) {
    bpf_map_info info{};
    __u32 info_size = sizeof(info);
    if (bpf_obj_get_info_by_fd(map_fd, &info, &info_size) != 0) {
        error = std::string("cannot read the process filter map: ") + std::strerror(errno);
        return nullptr;
    }
    if (info.value_size != sizeof(std::uint64_t) || !(info.map_flags & BPF_F_MMAPABLE)) {
        error = "the process filter map is not a mappable array of 64-bit words";
        return nullptr;
    }
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t bytes =
        (std::size_t{info.max_entries} * sizeof(std::uint64_t) + page - 1) / page * page;
    void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
    if (memory == MAP_FAILED) {
        error = std::string("cannot map the process filter: ") + std::strerror(errno);
        return nullptr;
    }
    return std::unique_ptr<TgidBitmap>(
        new TgidBitmap(static_cast<std::uint64_t*>(memory), info.max_entries, bytes));
}

TgidBitmap::~TgidBitmap() {
    ::munmap(words_, mapped_bytes_);
}

void TgidBitmap::change(std::uint32_t tgid, bool select) {
    if (tgid / 64 >= word_count_) return;  // above pid_max's ceiling: no such process
    std::atomic_ref<std::uint64_t> word(words_[tgid / 64]);
    const std::uint64_t bit = std::uint64_t{1} << (tgid % 64);
    if (select)
        word.fetch_or(bit, std::memory_order_relaxed);
    else
        word.fetch_and(~bit, std::memory_order_relaxed);
}

void TgidBitmap::replace(const std::vector<std::uint32_t>& wanted) {
    std::vector<std::uint32_t> next = wanted;
    std::sort(next.begin(), next.end());
    next.erase(std::unique(next.begin(), next.end()), next.end());
    std::vector<std::uint32_t> gone;
    std::set_difference(current_.begin(), current_.end(), next.begin(), next.end(),
                        std::back_inserter(gone));
    std::vector<std::uint32_t> added;
    std::set_difference(next.begin(), next.end(), current_.begin(), current_.end(),
                        std::back_inserter(added));
    for (std::uint32_t tgid : gone)
        change(tgid, false);
    for (std::uint32_t tgid : added)
        change(tgid, true);
    current_ = std::move(next);
}

bool TgidBitmap::selected(std::uint32_t tgid) const {
    if (tgid / 64 >= word_count_) return false;
    std::atomic_ref<std::uint64_t> word(words_[tgid / 64]);
    return (word.load(std::memory_order_relaxed) >> (tgid % 64)) & 1;
}

}  // namespace loupe::capture
