// Spans per second through the OTLP path on one core: a finished request turned into a span and
// joined (TraceJoiner::add + release), then encoded as OTLP protobuf and gzipped as the exporter
// sends it (batches of 4096). The target: at least 200 k spans/s.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "export/otlp/otlp_encoder.h"
#include "export/otlp/trace_joiner.h"

namespace {

using loupe::protocols::Side;

void BM_OtlpSpansEndToEnd(benchmark::State& state) {
    loupe::otlp::JoinerOptions options;
    options.hold_ns = 0;
    loupe::otlp::TraceJoiner joiner(options, 0);
    loupe::otlp::EncoderContext context;
    context.host_name = "bench-host";
    context.scope_version = "0.1.0";
    const std::uint8_t a[4] = {127, 0, 0, 1};
    std::vector<loupe::otlp::Span> spans;
    spans.reserve(4096);
    std::uint64_t t = 1'000'000;
    std::size_t bytes = 0;
    for (auto _ : state) {
        for (int i = 0; i < 4096; ++i) {
            loupe::protocols::Request r;
            r.protocol = loupe::protocols::Protocol::kHttp1;
            r.side = i % 2 ? Side::kClient : Side::kServer;
            r.operation = "GET";
            r.target = "/api/v1/users/12345";
            r.status = 200;
            r.start_ns = t;
            r.end_ns = t + 50'000;
            t += 100'000;
            const auto port = static_cast<std::uint16_t>(30000 + (i % 64));
            const loupe::pipeline::ConnectionTracker::Origin origin{
                1000u + static_cast<std::uint32_t>(i % 8),
                "nginx",
                "127.0.0.1",
                8080,
                2000u + static_cast<std::uint32_t>(i % 8),
                loupe::pipeline::make_endpoint(2, a, port),
                loupe::pipeline::make_endpoint(2, a, 8080)};
            joiner.add(r, origin, "nginx", t);
        }
        joiner.release(t, spans);
        const std::string body = loupe::otlp::encode_traces(spans, context);
        const std::string wire = loupe::otlp::gzip(body);
        bytes += wire.size();
        benchmark::DoNotOptimize(wire.data());
        spans.clear();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 4096);
    state.counters["wire_bytes_per_span"] =
        static_cast<double>(bytes) / static_cast<double>(state.iterations() * 4096);
}
BENCHMARK(BM_OtlpSpansEndToEnd)->Unit(benchmark::kMillisecond);

}  // namespace
