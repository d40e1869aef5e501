// Loads socket_capture.bpf.c, attaches its tracepoints and drains its ring buffers: the data of
// every TCP connection of the traced processes, whatever its protocol.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "capture/bpf_handles.h"
#include "capture/event_merger.h"
#include "capture/hook_set.h"
#include "capture/tgid_bitmap.h"
#include "capture/tls_libraries.h"
#include "loupe_abi.h"

struct socket_capture;  // generated skeleton

namespace loupe::capture {

struct CaptureOptions {
    // Ring-buffer budget, split evenly between one ring per CPU: a power of two (each CPU's ring
    // gets at least a page, even when that exceeds the budget).
    std::uint32_t ring_buffer_bytes = 4u << 20;
    bool filter_tgids = false;                // trace only the tgids given to set_traced_tgids()
    std::vector<std::string> select_comms;    // names the kernel selects at exec/fork (bpf_maps.h)
    std::vector<std::string> disabled_hooks;  // not attached (see hook_set.h)
    // ResourceCapture::process_stats_maps(): when given, the socket programs also do the
    // per-process socket accounting, into those maps (one program per socket I/O, not two).
    std::vector<std::pair<std::string, int>> process_stats_maps;
    // The protocols the kernel classifies connections as (bit 1 << loupe_protocol); the events of
    // a connection carry its protocol. A connection that is none of them stops costing after a
    // few events.
    std::uint32_t protocols = (1u << LOUPE_PROTOCOL_HTTP1) | (1u << LOUPE_PROTOCOL_REDIS) |
                              (1u << LOUPE_PROTOCOL_POSTGRES) | (1u << LOUPE_PROTOCOL_MYSQL);
    // Bytes of one read or write copied on a connection of each protocol (index: loupe_protocol),
    // at most LOUPE_COPY_CAP_MAX: the first LOUPE_DATA_HEAD_MAX in its data event, the rest in
    // chunk events. Past it, a read or write is counted, not copied: a message that starts there
    // is lost to its parser, which counts the loss (desync). Unclassified connections: the head.
    // Redis: 16 KiB, what redis-server reads at a time (its PROTO_IOBUF_LEN): a pipeline of any
    // length is then seen whole on the server side, read by read.
    // PostgreSQL: 16 KiB. The server writes through its 8 KiB send buffer and reads into an 8 KiB
    // receive buffer; libpq reads into a 16 KiB buffer and writes when 8 KiB are queued: every
    // read and write of ordinary traffic is then copied whole, so no message header is missed (a
    // larger message, a 16 MB row, is skipped by its length).
    // MySQL: 16 KiB, the server's network buffer (net_buffer_length, 16 KiB by default): MariaDB
    // and MySQL write replies through it, so every packet header of a result set is copied;
    // packets larger than it (a 16 MB row) are written alone and skipped by count.
    std::array<std::uint32_t, LOUPE_PROTOCOL_COUNT> copy_caps = {
        LOUPE_DATA_HEAD_MAX,     // undecided
        LOUPE_COPY_CAP_DEFAULT,  // HTTP/1
        16384,                   // Redis
        16384,                   // PostgreSQL
        16384,                   // MySQL
    };
    // Events reach the rings in per-CPU batches, sent by a per-CPU timer when they stop growing;
    // false sends each one at once (as when the kernel refuses the timer: batch_timer_error()).
    bool batch_events = true;
    // TLS plaintext through uprobes on the TLS libraries the traced processes map
    // (scan_tls_libraries); false: TLS connections are recognised and counted, never read.
    bool tls = true;
};

// TLS connections and calls the kernel counted (loupe_abi.h's enum loupe_tls_counter).
struct TlsCounters {
    std::uint64_t openssl_connections = 0;  // tied to an OpenSSL SSL*: their plaintext is read
    std::uint64_t unknown_connections = 0;  // TLS records seen, no hooked library: not read
    std::uint64_t untied_calls = 0;         // plaintext of an SSL* whose socket was never seen
    std::uint64_t bio_ties = 0;             // SSL* tied to the thread's last TLS read (memory BIOs)
    std::uint64_t go_connections = 0;       // tied to a Go crypto/tls Conn: their plaintext is read
    std::uint64_t go_unreadable_calls = 0;  // Go Conn calls not over a TCP socket: not read
};

struct DropCounters {
    std::uint64_t ringbuf_full = 0;
    std::uint64_t unsupported_syscall = 0;  // socket I/O from sendmmsg, splice, io_uring...
    std::uint64_t conn_table_full = 0;
    std::uint64_t nested = 0;  // socket I/O that interrupted its CPU's batch being written
    std::uint64_t copy_fault =
        0;  // bytes of a read or write that could not be read from user memory
    std::uint64_t recursion_misses = 0;  // hook runs the kernel skipped (HookSet)
};

class SocketCapture {
  public:
    using RecordHandler = std::function<void(std::span<const std::uint8_t>)>;

    // Loads and attaches. Returns nullptr with `error` set when the programs cannot load; a
    // tracepoint that does not exist on this kernel is skipped and listed in missing_hooks().
    static std::unique_ptr<SocketCapture> start(const CaptureOptions& options,
                                                RecordHandler handler, std::string& error);
    ~SocketCapture();
    SocketCapture(const SocketCapture&) = delete;
    SocketCapture& operator=(const SocketCapture&) = delete;

    // Consumes everything pending and hands the records over in time order, holding back the
    // last 40 ms (see EventMerger). Returns the number of records handed over, or a negative
    // errno. Same as collect() then release().
    int drain();
    // drain()'s two halves. collect() reads the clock, then copies everything pending out of the
    // rings (into the merger), and returns that clock reading or a negative errno. It calls no
    // record handler, so the caller needs none of their locks: the rings keep draining while
    // another thread holds those (a /metrics scrape, the resource sampler). release() hands over,
    // in time order, the collected records older than the hold-back before `clock_ns`.
    std::int64_t collect();
    int release(std::uint64_t clock_ns);
    // Stops capturing (detaches the hooks), then hands over everything, held-back records and
    // the events still in the per-CPU batches included (shutdown).
    int flush();
    // Waits up to timeout_ms until the kernel signals pending records (it does so each time a
    // CPU sent an eighth of its ring), without consuming them: lets the caller wait without
    // holding the locks that record handlers need. Returns > 0 when woken, 0 on timeout. Only a
    // wake-up ends the wait, not records pending since the last drain: the rings are watched
    // edge-triggered. (Level-triggered, as libbpf's own epoll set is, a steady stream of records
    // made every wait return at once: under nginx + wrk the agent made ~5,100 epoll_wait calls a
    // second, ~50 edge-triggered.)
    int wait(int timeout_ms) const;

    // Replaces the set of traced processes (used when filter_tgids is on).
    void set_traced_tgids(const std::vector<std::uint32_t>& tgids);
    // Whether the kernel side traces process `tgid` now: given to set_traced_tgids(), or
    // selected by name at exec or fork (select_comms) and not exited since.
    bool selects(std::uint32_t tgid) const {
        return !process_filter_ || process_filter_->selected(tgid);
    }
    // Detaches the socket read/write hooks (paused) or attaches them again. The rings and batches
    // keep draining; connections carry on from their next request line.
    void set_paused(bool paused);

    DropCounters drops() const;
    TlsCounters tls_counters() const;
    // Finds the TLS libraries that processes `pids` map and attaches the uprobes to new ones
    // (see TlsLibraries::scan); nothing when TLS capture is off.
    void scan_tls_libraries(const std::vector<std::uint32_t>& pids, bool full) {
        if (tls_) tls_->scan(pids, full);
    }
    // The TLS libraries found; empty when TLS capture is off (tls_error() says why).
    std::vector<TlsLibraryStatus> tls_libraries() const {
        return tls_ ? tls_->status() : std::vector<TlsLibraryStatus>{};
    }
    const std::string& tls_error() const { return tls_error_; }
    // Why the kernel refused the timers that send the event batches (a negative errno), after
    // which every event is sent at once; 0 while it has not.
    int batch_timer_error() const;
    std::vector<std::string> attached_hooks() const { return hooks_.attached(); }
    const std::vector<std::string>& missing_hooks() const { return hooks_.missing(); }
    const std::vector<std::string>& disabled_hooks() const { return hooks_.disabled(); }

  private:
    SocketCapture() = default;
    static int on_record(void* ctx, void* data, std::size_t size);
    bool open_rings(int cpus, std::uint32_t ring_bytes, std::string& error);
    void collect_unsent_batches();

    struct SkeletonDeleter {
        void operator()(socket_capture* skel) const noexcept;
    };
    std::unique_ptr<socket_capture, SkeletonDeleter> skel_;
    HookSet hooks_;
    std::vector<UniqueFd> ring_fds_;  // one ring per CPU: kept open while ring_ reads them
    RingBufferPtr ring_;
    UniqueFd wakeups_;  // epoll set of the rings, edge-triggered (see wait)
    // Records stay 40 ms, far more than the time between an event's timestamp and its commit to
    // a ring, so that no record of another CPU can still arrive before them. That time is up to
    // a batch's timer (10 ms), plus 0.1 ms each time that timer found the batch being written.
    // (A 5 ms hold-back, before batches, with the clock read after the drain, let e2e_nginx miss
    // a few requests in about one run of five on this VM.)
    EventMerger merger_{40'000'000};
    RecordHandler handler_;
    std::unique_ptr<TgidBitmap> process_filter_;  // with filter_tgids only
    std::unique_ptr<TlsLibraries> tls_;           // with TLS capture only
    std::string tls_error_;                       // why TLS capture is off
};

}  // namespace loupe::capture
