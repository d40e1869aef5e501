#include "capture/socket_capture.h"

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include "capture/bpf_maps.h"
#include "capture/event_decoder.h"
#include "capture/hook_set.h"
#include "socket_capture.skel.h"
#include "loupe_abi.h"

namespace loupe::capture {

void SocketCapture::SkeletonDeleter::operator()(socket_capture* skel) const noexcept {
    socket_capture__destroy(skel);
}

void SocketCapture::set_paused(bool paused) {
    // TCP state changes stay: a connection closed meanwhile must still end in user space (its
    // pending request, a close-delimited response). They come once per connection state change.
    // The uprobes stay attached (their links are the TLS libraries'), and send nothing.
    skel_->bss->tls_paused = paused;
    if (paused)
        hooks_.detach({"inet_sock_set_state"});
    else
        hooks_.attach(skel_->obj);
}

SocketCapture::~SocketCapture() {
    // Links first: no program may run into a ring buffer that is being freed.
    hooks_.detach();
    tls_.reset();
    ring_.reset();
}

namespace {

// Each CPU's share of the ring-buffer budget (a power of two): the largest power of two that
// fits, but never less than a page, which ring buffers need (0: the budget is not a power of two
// of at least a page).
std::uint32_t per_cpu_ring_bytes(std::uint32_t total, int cpus) {
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    if (cpus <= 0 || total < page || (total & (total - 1)) != 0) return 0;
    std::uint64_t each = total;
    while (each > page && each * static_cast<std::uint64_t>(cpus) > total)
        each /= 2;
    return static_cast<std::uint32_t>(each);
}

// Makes the object's per-process maps the resource object's own (before load). Without them (no
// resource capture) the maps stay unused: shrunk to one entry.
bool share_process_stats(socket_capture& skel,
                         const std::vector<std::pair<std::string, int>>& maps) {
    bool shared = !maps.empty();
    for (const auto& [name, fd] : maps) {
        bpf_map* map = bpf_object__find_map_by_name(skel.obj, name.c_str());
        if (!map || bpf_map__reuse_fd(map, fd) != 0) {
            spdlog::warn("cannot share the per-process map {}: socket bytes are not accounted",
                         name);
            shared = false;
        }
    }
    if (!shared) {
        bpf_map__set_max_entries(skel.maps.proc_stats, 1);
        bpf_map__set_max_entries(skel.maps.sock_owners, 1);
    }
    return shared;
}

}  // namespace

std::unique_ptr<SocketCapture> SocketCapture::start(const CaptureOptions& options,
                                                    RecordHandler handler, std::string& error) {
    std::unique_ptr<SocketCapture> capture(new SocketCapture());
    capture->handler_ = handler;
    capture->skel_.reset(socket_capture__open());
    if (!capture->skel_) {
        error = std::string("cannot open the socket capture BPF object: ") + std::strerror(errno);
        return nullptr;
    }
    socket_capture& skel = *capture->skel_;
    skel.rodata->self_tgid = static_cast<__u32>(::getpid());
    configure_process_filter(skel, options.filter_tgids, options.select_comms);
    const int cpus = libbpf_num_possible_cpus();
    const std::uint32_t ring_bytes = per_cpu_ring_bytes(options.ring_buffer_bytes, cpus);
    if (cpus <= 0 || ring_bytes == 0) {
        error = "invalid ring buffer size " + std::to_string(options.ring_buffer_bytes) +
                " (a power of two of at least a page)";
        return nullptr;
    }
    // The consumer is woken each time a CPU sent an eighth of its ring: a drain is due long before
    // a ring fills even when the consumer waits for a CPU on a saturated node.
    skel.rodata->wakeup_bytes = ring_bytes / 8;
    // The rings themselves are created after load (open_rings): a ring buffer's size is not
    // part of its type, so any size fits the array's template.
    bpf_map__set_max_entries(skel.maps.events, static_cast<std::uint32_t>(cpus));
    bpf_map__set_max_entries(skel.maps.batch_timers, static_cast<std::uint32_t>(cpus));
    skel.rodata->batch_events = options.batch_events;
    if ((options.protocols & ~((1u << LOUPE_PROTOCOL_COUNT) - 1)) != 0 ||
        (options.protocols & (1u << LOUPE_PROTOCOL_UNKNOWN)) != 0) {
        error = "unknown protocols enabled for the socket capture (bits " +
                std::to_string(options.protocols) + ")";
        return nullptr;
    }
    skel.rodata->enabled_protocols = options.protocols;
    for (std::size_t p = 0; p < options.copy_caps.size(); ++p) {
        if (options.copy_caps[p] > LOUPE_COPY_CAP_MAX) {
            error = "copy cap of protocol " + std::to_string(p) + " above " +
                    std::to_string(LOUPE_COPY_CAP_MAX) + " bytes";
            return nullptr;
        }
        skel.rodata->copy_cap[p] = options.copy_caps[p];
    }
    skel.rodata->account_sockets = share_process_stats(skel, options.process_stats_maps);
    capture->hooks_.select(skel.obj, options.disabled_hooks);
    const bool tls = options.tls && !hook_disabled(options.disabled_hooks, "tls");
    bpf_program* tls_programs[] = {skel.progs.ssl_read_enter,      skel.progs.ssl_write_enter,
                                   skel.progs.ssl_read_ex_enter,   skel.progs.ssl_write_ex_enter,
                                   skel.progs.ssl_return,          skel.progs.ssl_free_enter,
                                   skel.progs.ssl_handshake_enter, skel.progs.go_tls_read_enter,
                                   skel.progs.go_tls_write_enter,  skel.progs.go_tls_return};
    for (bpf_program* prog : tls_programs)
        bpf_program__set_autoload(prog, tls);
    if (int err = socket_capture__load(&skel); err != 0) {
        if (tls) {
            // The uprobes are the newest part: the capture goes on without them.
            spdlog::warn(
                "the kernel refused the TLS uprobe programs ({}): TLS connections are "
                "counted but not read",
                std::strerror(-err));
            CaptureOptions without = options;
            without.tls = false;
            auto plain = start(without, std::move(handler), error);
            if (plain)
                plain->tls_error_ =
                    std::string("the kernel refused the uprobe programs: ") + std::strerror(-err);
            return plain;
        }
        error = std::string("the kernel refused the socket capture programs: ") +
                std::strerror(-err) + " (run with --log-level debug for the verifier log)";
        return nullptr;
    }
    if (options.filter_tgids &&
        !(capture->process_filter_ = TgidBitmap::map(bpf_map__fd(skel.maps.traced_tgids), error)))
        return nullptr;
    // Rings before hooks: a hook that fires before its CPU's ring is in place loses the event
    // (counted as ringbuf_full: hundreds at each start under load, until this order).
    if (!capture->open_rings(cpus, ring_bytes, error)) return nullptr;
    capture->hooks_.attach(skel.obj);
    if (tls)
        capture->tls_ = std::make_unique<TlsLibraries>(TlsPrograms{
            skel.progs.ssl_read_enter, skel.progs.ssl_write_enter, skel.progs.ssl_read_ex_enter,
            skel.progs.ssl_write_ex_enter, skel.progs.ssl_return, skel.progs.ssl_free_enter,
            skel.progs.ssl_handshake_enter, skel.progs.go_tls_read_enter,
            skel.progs.go_tls_write_enter, skel.progs.go_tls_return,
            bpf_map__fd(skel.maps.tls_sessions), bpf_map__fd(skel.maps.go_calls)});
    else if (capture->tls_error_.empty())
        capture->tls_error_ = "turned off (--disable-hooks tls)";
    if (capture->hooks_.empty()) {
        error = "no socket capture hook could be attached";
        return nullptr;
    }
    if (!options.batch_events)
        spdlog::info("socket data events are sent one by one, not in batches");
    for (const auto& m : capture->hooks_.missing())
        spdlog::warn("hook unavailable on this kernel: {}", m);
    return capture;
}

// One ring buffer per CPU, created here and put in the `events` array of maps; one libbpf
// ring_buffer reads them all, and an edge-triggered epoll set tells when the kernel woke us.
bool SocketCapture::open_rings(int cpus, std::uint32_t ring_bytes, std::string& error) {
    const int outer = bpf_map__fd(skel_->maps.events);
    wakeups_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
    if (!wakeups_.valid()) {
        error = std::string("cannot create an epoll set: ") + std::strerror(errno);
        return false;
    }
    for (int cpu = 0; cpu < cpus; ++cpu) {
        UniqueFd ring(
            bpf_map_create(BPF_MAP_TYPE_RINGBUF, "loupe_events", 0, 0, ring_bytes, nullptr));
        const auto key = static_cast<__u32>(cpu);
        const int inner = ring.get();
        if (!ring.valid() || bpf_map_update_elem(outer, &key, &inner, BPF_ANY) != 0) {
            error = std::string("cannot create the ring buffer of CPU ") + std::to_string(cpu) +
                    ": " + std::strerror(errno);
            return false;
        }
        if (!ring_)
            ring_.reset(ring_buffer__new(inner, &SocketCapture::on_record, this, nullptr));
        else if (ring_buffer__add(ring_.get(), inner, &SocketCapture::on_record, this) != 0)
            ring_.reset();
        epoll_event watch{};
        watch.events = EPOLLIN | EPOLLET;
        watch.data.u32 = static_cast<std::uint32_t>(cpu);
        if (!ring_ || ::epoll_ctl(wakeups_.get(), EPOLL_CTL_ADD, inner, &watch) != 0) {
            error = std::string("cannot open the event ring buffers: ") + std::strerror(errno);
            return false;
        }
        ring_fds_.push_back(std::move(ring));
    }
    return true;
}

int SocketCapture::on_record(void* ctx, void* data, std::size_t size) {
    auto* self = static_cast<SocketCapture*>(ctx);
    for_each_batched_event(
        std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(data), size),
        [self](std::span<const std::uint8_t> event) { self->merger_.add(event); });
    return 0;
}

int SocketCapture::drain() {
    const std::int64_t clock_ns = collect();
    if (clock_ns < 0) return static_cast<int>(clock_ns);
    return release(static_cast<std::uint64_t>(clock_ns));
}

std::int64_t SocketCapture::collect() {
    // The clock is read before the rings are: a record stamped hold-back earlier than this was
    // committed before the collection began, however long it takes (reading one CPU's ring,
    // then the next, can take longer than the hold-back when this thread is descheduled).
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);  // bpf_ktime_get_ns's clock
    const int consumed = ring_buffer__consume(ring_.get());
    if (consumed < 0) return consumed;
    return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

int SocketCapture::release(std::uint64_t clock_ns) {
    return static_cast<int>(merger_.release(clock_ns, handler_));
}

int SocketCapture::flush() {
    hooks_.detach();  // nothing is added to the batches below while they are read
    tls_.reset();
    // Nor sent by their timers: a timer callback already running when the flag is set is done
    // long before the pause ends (it sends one batch), so a batch is read from the ring or from
    // the map, never both.
    skel_->bss->stopping = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (ring_buffer__consume(ring_.get()) < 0) return -1;
    collect_unsent_batches();
    return static_cast<int>(merger_.release_all(handler_));
}

void SocketCapture::collect_unsent_batches() {
    const auto batches = read_percpu<loupe_cpu_batch>(bpf_map__fd(skel_->maps.batches), 0);
    if (batches.empty()) {
        spdlog::warn("cannot read the unsent event batches: {}", std::strerror(errno));
        return;
    }
    for (const auto& batch : batches) {
        const std::size_t bytes = std::min<std::size_t>(batch.out.bytes, sizeof(batch.out.data));
        for_each_batch_entry(std::span<const std::uint8_t>(batch.out.data, bytes),
                             [this](std::span<const std::uint8_t> event) { merger_.add(event); });
    }
}

int SocketCapture::wait(int timeout_ms) const {
    std::array<epoll_event, 8> events{};
    const int n =
        ::epoll_wait(wakeups_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
    return n < 0 ? 0 : n;  // EINTR: as a timeout
}

void SocketCapture::set_traced_tgids(const std::vector<std::uint32_t>& tgids) {
    if (process_filter_) process_filter_->replace(tgids);
}

int SocketCapture::batch_timer_error() const {
    return skel_->bss->batch_timer_error;
}

TlsCounters SocketCapture::tls_counters() const {
    const int fd = bpf_map__fd(skel_->maps.tls_counters);
    TlsCounters out;
    out.openssl_connections = sum_percpu_u64(fd, LOUPE_TLS_CONN_OPENSSL);
    out.unknown_connections = sum_percpu_u64(fd, LOUPE_TLS_CONN_UNKNOWN);
    out.untied_calls = sum_percpu_u64(fd, LOUPE_TLS_UNTIED_CALLS);
    out.bio_ties = sum_percpu_u64(fd, LOUPE_TLS_BIO_TIES);
    out.go_connections = sum_percpu_u64(fd, LOUPE_TLS_CONN_GO);
    out.go_unreadable_calls = sum_percpu_u64(fd, LOUPE_TLS_GO_UNREADABLE_CALLS);
    return out;
}

DropCounters SocketCapture::drops() const {
    const int fd = bpf_map__fd(skel_->maps.drops);
    DropCounters out;
    out.ringbuf_full = sum_percpu_u64(fd, LOUPE_DROP_RINGBUF_FULL);
    out.unsupported_syscall = sum_percpu_u64(fd, LOUPE_DROP_UNSUPPORTED_SYSCALL);
    out.conn_table_full = sum_percpu_u64(fd, LOUPE_DROP_CONN_TABLE_FULL);
    out.nested = sum_percpu_u64(fd, LOUPE_DROP_NESTED);
    out.copy_fault = sum_percpu_u64(fd, LOUPE_DROP_COPY_FAULT);
    out.recursion_misses = hooks_.recursion_misses();
    return out;
}

}  // namespace loupe::capture
