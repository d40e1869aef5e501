// Hot path of the HTTP/1.x parser: one keep-alive server connection reading a realistic request
// and writing its response (headers and body in one write, captured as head + tail), matched
// into an exchange. Run: build/tools/bench/loupe_benchmarks --benchmark_filter=Http1
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "protocols/http1/http1_parser.h"

namespace {

using loupe::http1::Direction;
using loupe::http1::Exchange;
using loupe::http1::Http1Connection;
using loupe::http1::Role;
using loupe::http1::Segment;

constexpr std::size_t kHeadBytes = 512;
constexpr std::size_t kTailBytes = 16;

const std::string kRequest =
    "GET /api/v1/users/12345/orders?limit=20&offset=40 HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\r\n"
    "Accept: application/json\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=7f3a9c2e4b1d8f6a0e5c3b2a1d9f8e7c; theme=dark\r\n"
    "X-Request-Id: 6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b\r\n"
    "\r\n";

std::string response() {
    const std::string body(1234, 'j');
    return "HTTP/1.1 200 OK\r\n"
           "Server: nginx/1.22.1\r\n"
           "Date: Sat, 22 Nov 2025 13:35:00 GMT\r\n"
           "Content-Type: application/json\r\n"
           "Content-Length: " +
           std::to_string(body.size()) +
           "\r\n"
           "Connection: keep-alive\r\n"
           "Cache-Control: no-cache\r\n"
           "\r\n" +
           body;
}

Segment capture(Direction d, std::string_view data) {
    Segment s;
    s.direction = d;
    s.length = data.size();
    const std::size_t head = std::min(data.size(), kHeadBytes);
    s.head = {reinterpret_cast<const std::uint8_t*>(data.data()), head};
    if (data.size() > head)
        s.tail = {reinterpret_cast<const std::uint8_t*>(data.data() + data.size() - kTailBytes),
                  kTailBytes};
    return s;
}

void BM_Http1ServerExchange(benchmark::State& state) {
    const std::string resp = response();
    Segment request = capture(Direction::kIngress, kRequest);
    Segment reply = capture(Direction::kEgress, resp);
    Http1Connection conn(Role::kServer);
    std::vector<Exchange> out;
    out.reserve(4);
    std::uint64_t now = 1'000'000;
    std::uint64_t exchanges = 0;
    for (auto _ : state) {
        request.timestamp_ns = now += 1000;
        conn.on_segment(request, out);
        reply.timestamp_ns = now += 20000;
        conn.on_segment(reply, out);
        exchanges += out.size();
        benchmark::DoNotOptimize(out.data());
        out.clear();
    }
    if (exchanges != static_cast<std::uint64_t>(state.iterations()))
        state.SkipWithError("an exchange was not matched");
    // Items are segments (two per exchange): the unit of the >= 2 M segments/s/core budget.
    state.SetItemsProcessed(state.iterations() * 2);
    state.counters["exchanges/s"] =
        benchmark::Counter(static_cast<double>(exchanges), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Http1ServerExchange);

}  // namespace
