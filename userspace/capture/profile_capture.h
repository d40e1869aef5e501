// Loads profiler.bpf.c, attaches it to the software cpu-clock perf event of every CPU and reads
// the stack counts it aggregates.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "capture/bpf_handles.h"
#include "capture/tgid_bitmap.h"

struct profiler;  // generated skeleton

namespace loupe::capture {

struct ProfileCaptureOptions {
    unsigned frequency_hz = 99;
    bool filter_tgids = true;                // sample only set_traced_tgids()'s processes
    std::vector<std::string> select_comms;   // names the kernel selects at exec and fork
    std::uint32_t max_stacks = 16384;        // distinct stacks (user and kernel) kept
    std::uint32_t max_stack_counts = 16384;  // distinct (process, stacks) per read
    // DWARF mode (stack copies unwound in user space): for every selected process, or for those
    // set_dwarf_tgids() names. The ring buffer its samples go through (a power of two, >= 4 KiB);
    // 0 when no process will be sampled so (a page is kept).
    bool dwarf_all = false;
    std::uint32_t dwarf_ring_bytes = 0;
};

// One DWARF-mode sample: the user registers (DWARF numbering, loupe_profile_dwarf_sample) and the
// user stack bytes copied from the stack pointer up, to be unwound in user space.
struct DwarfSample {
    std::uint32_t tgid = 0;
    std::uint32_t tid = 0;
    std::array<std::uint64_t, 17> regs{};
    std::vector<std::uint64_t> kernel_ips;  // leaf first
    std::vector<std::uint8_t> stack;
};

// Stacks of one process counted `count` times since the last read. Instruction pointers, leaf
// first; empty when that half of the stack was not taken.
struct StackCount {
    std::uint32_t tgid = 0;
    std::vector<std::uint64_t> user_ips;
    std::vector<std::uint64_t> kernel_ips;
    std::uint64_t count = 0;
    bool user_stack_lost = false;  // the kernel could not keep it (stack map full, collision)
};

struct ProfileCounters {
    std::uint64_t samples = 0;             // samples of selected processes
    std::uint64_t lost_counts_full = 0;    // dropped: the count map was full
    std::uint64_t lost_user_stacks = 0;    // counted without their user stack
    std::uint64_t lost_kernel_stacks = 0;  // counted without their kernel stack
    std::uint64_t dwarf_samples = 0;       // taken in DWARF mode (included in samples)
    std::uint64_t lost_dwarf_ring = 0;     // DWARF samples dropped: the ring buffer was full
    std::uint64_t lost_dwarf_copy = 0;     // DWARF samples sent without their stack (copy fault)
};

// Why stack sampling cannot work here (no perf events, no permission), or nullopt when it can.
std::optional<std::string> perf_sampling_unavailable();

// The highest sampling rate the kernel accepts (kernel.perf_event_max_sample_rate), 0 if unknown.
unsigned max_sample_rate();

class ProfileCapture {
  public:
    // nullptr with `error` set when the program cannot load or the perf events cannot be opened.
    static std::unique_ptr<ProfileCapture> start(const ProfileCaptureOptions& options,
                                                 std::string& error);
    ~ProfileCapture();
    ProfileCapture(const ProfileCapture&) = delete;
    ProfileCapture& operator=(const ProfileCapture&) = delete;

    void set_traced_tgids(const std::vector<std::uint32_t>& tgids);
    // The processes sampled in DWARF mode (beside dwarf_all); false when the map is full.
    bool set_dwarf_tgids(const std::vector<std::uint32_t>& tgids);
    // Moves the DWARF samples waiting in the ring buffer into memory; call often (the ring holds
    // a few seconds of samples). take_dwarf_samples() returns them all.
    void poll_dwarf_samples();
    std::vector<DwarfSample> take_dwarf_samples();
    bool selected(std::uint32_t tgid) const;
    // The counts since the last call: switches the sampler to the other count map, then reads and
    // empties the one it left.
    std::vector<StackCount> drain();
    // Forgets every stack (ids in either count map become unreadable: their counts are reported
    // with lost stacks). Bounds the stack map of a long run; call right after drain().
    void clear_stacks();
    ProfileCounters counters() const;
    // Stops the perf events (no sample, no cost) or starts them again.
    void set_paused(bool paused);
    std::size_t cpus_sampled() const { return links_.size(); }

  private:
    ProfileCapture() = default;
    std::vector<std::uint64_t> stack(std::int32_t stack_id) const;

    struct SkeletonDeleter {
        void operator()(::profiler* skel) const noexcept;
    };
    std::unique_ptr<::profiler, SkeletonDeleter> skel_;
    std::vector<BpfLinkPtr> links_;      // one per CPU; each owns its perf event's fd
    std::vector<UniqueFd> perf_events_;  // duplicates of those fds, to stop and start them
    std::unique_ptr<TgidBitmap> process_filter_;
    std::uint32_t active_ = 0;
    RingBufferPtr dwarf_ring_;
    std::vector<DwarfSample> dwarf_pending_;
    std::vector<std::uint32_t> dwarf_tgids_;  // what the map holds
};

}  // namespace loupe::capture
