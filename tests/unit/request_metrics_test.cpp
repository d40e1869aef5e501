#include "aggregate/request_metrics.h"
#include "protocols/http1/http1_protocol.h"

#include <array>
#include <deque>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace loupe::aggregate {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

// An observation holds views: the strings they show live here, until the program ends.
std::string_view kept(std::string text) {
    static std::deque<std::string> strings;
    return strings.emplace_back(std::move(text));
}

struct Obs {
    protocols::Request request;
    RequestContext context;
};

Obs obs(std::string path, int status = 200, std::uint64_t ns = 20'000'000,
        std::string service = "svc") {
    Obs o;
    o.request.protocol = Protocol::kHttp1;
    o.request.side = Side::kServer;
    o.request.operation = "GET";
    o.request.target = kept(std::move(path));
    o.request.status = status;
    o.request.end_ns = ns;
    o.context.service = kept(std::move(service));
    return o;
}

void record(RequestMetricsStore& store, const Obs& o, std::chrono::nanoseconds now) {
    store.record(o.request, o.context, now);
}

const std::string kOverflowRoute = "/{overflow}";

TEST(RequestMetricsStore, CountsAndExactBuckets) {
    RequestMetricsStore store;
    record(store, obs("/a/1", 200, 5'000'000),
           seconds(100));  // exactly on the 5 ms bound: le="0.005"
    record(store, obs("/a/2", 200, 5'000'001), seconds(100));       // just above
    record(store, obs("/a/3", 200, 20'000'000'000), seconds(100));  // above every bound: +Inf only
    ASSERT_EQ(store.series().size(), 1u);
    const auto& [key, s] = *store.series().begin();
    EXPECT_EQ(key.target, "/a/{id}");
    EXPECT_EQ(s.count, 3u);
    EXPECT_EQ(s.sum_ns, 20'010'000'001u);
    EXPECT_EQ(s.buckets[0], 1u);
    EXPECT_EQ(s.buckets[1], 1u);
    std::uint64_t in_bounds = 0;
    for (auto b : s.buckets)
        in_bounds += b;
    EXPECT_EQ(in_bounds, 2u);
}

TEST(RequestMetricsStore, TlsRequestsGetTheirOwnHttpsSeries) {
    RequestMetricsStore store;
    Obs plain = obs("/a", 200);
    Obs tls = obs("/a", 200);
    tls.request.tls = true;
    record(store, plain, seconds(100));
    record(store, tls, seconds(100));
    record(store, tls, seconds(100));
    std::map<std::string, std::uint64_t> by_scheme;
    for (const auto& [key, s] : store.series())
        by_scheme[key.url_scheme] += s.count;
    EXPECT_EQ(by_scheme, (std::map<std::string, std::uint64_t>{{"http", 1}, {"https", 2}}));
}

TEST(RequestMetricsStore, HttpStatusLabelsAndErrors) {
    const auto& spec = http1::kMetricSpec;
    std::array<char, 16> digits{};
    protocols::Request r;
    EXPECT_EQ(spec.status(r, digits), "none");
    r.status = 503;
    EXPECT_EQ(spec.status(r, digits), "503");
    r.status = 1000;
    EXPECT_EQ(spec.status(r, digits), "none");
    EXPECT_TRUE(spec.is_error(Side::kServer, "500"));
    EXPECT_FALSE(spec.is_error(Side::kServer, "404"));
    EXPECT_TRUE(spec.is_error(Side::kClient, "404"));
    EXPECT_TRUE(spec.is_error(Side::kServer, "none"));
}

std::map<std::string, std::uint64_t> counts_by_route(const RequestMetricsStore& store) {
    std::map<std::string, std::uint64_t> by_route;
    for (const auto& [k, s] : store.series())
        by_route[k.target] += s.count;
    return by_route;
}

TEST(RequestMetricsStore, RouteCapSendsTheRestToOverflow) {
    RequestMetricsStore store(StoreLimits{1000, 3, minutes(15)});
    // /a and /b fill the half of the budget given at once; /c, /d, /e are seen once each.
    for (const char* p : {"/a", "/b", "/c", "/d", "/e", "/a"})
        record(store, obs(p), seconds(1));
    auto by_route = counts_by_route(store);
    EXPECT_EQ(by_route["/a"], 2u);
    EXPECT_EQ(by_route[kOverflowRoute], 3u);
    EXPECT_EQ(store.overflowed(Protocol::kHttp1), 3u);
    // Over the cap, a route seen again still goes to the overflow route.
    for (const char* p : {"/d", "/f", "/f", "/g"})
        record(store, obs(p), seconds(1));
    by_route = counts_by_route(store);
    EXPECT_EQ(by_route["/d"], 1u);  // its second request: the third route
    EXPECT_EQ(by_route.count("/f"), 0u);
    EXPECT_EQ(by_route[kOverflowRoute], 6u);
    EXPECT_EQ(store.overflowed(Protocol::kHttp1), 6u);
    // Another service has its own budget.
    record(store, obs("/d", 200, 1'000'000, "other"), seconds(1));
    EXPECT_EQ(store.overflowed(Protocol::kHttp1), 6u);
}

// The first half of a service's route budget goes to the first routes seen; the rest to routes
// seen at least twice, so a burst of one-off paths cannot take the budget from the service's real
// routes. Every request stays counted: before its promotion, under the overflow route.
TEST(RequestMetricsStore, PastHalfTheBudgetARouteNeedsASecondRequest) {
    RequestMetricsStore store(StoreLimits{1000, 10, minutes(15)});
    std::uint64_t requests = 0;
    auto record = [&](const std::string& path, int times = 1) {
        for (int i = 0; i < times; ++i, ++requests)
            loupe::aggregate::record(store, obs(path), seconds(1));
    };
    for (const char* p : {"/scan1", "/scan2", "/scan3", "/scan4", "/scan5"})
        record(p);  // a scanner arrives first: takes the first half (5 routes)
    for (int i = 0; i < 40; ++i)
        record("/probe-" + std::string(1, static_cast<char>('a' + i % 26)) + std::to_string(i));
    record("/checkout", 30);  // the service's real routes, seen many times
    record("/cart", 12);
    auto by_route = counts_by_route(store);
    EXPECT_EQ(by_route["/scan1"], 1u);
    EXPECT_EQ(by_route["/checkout"], 29u);  // the first request of each went to the overflow
    EXPECT_EQ(by_route["/cart"], 11u);
    EXPECT_EQ(by_route.size(), 5u + 2u + 1u);  // no probe got a series
    EXPECT_EQ(by_route[kOverflowRoute], 40u + 2u);
    std::uint64_t total = 0;
    for (const auto& [route, count] : by_route)
        total += count;
    EXPECT_EQ(total, requests);
    EXPECT_EQ(store.overflowed(Protocol::kHttp1), 42u);
}

TEST(RequestMetricsStore, SeriesCapDropsAndCounts) {
    RequestMetricsStore store(StoreLimits{2, 100, minutes(15)});
    record(store, obs("/a"), seconds(1));
    record(store, obs("/b"), seconds(1));
    record(store, obs("/c"), seconds(1));
    record(store, obs("/a"), seconds(1));  // existing series still counts
    EXPECT_EQ(store.series().size(), 2u);
    EXPECT_EQ(store.series_dropped(), 1u);
}

TEST(RequestMetricsStore, IdleSeriesExpireAndFreeTheirRoute) {
    RequestMetricsStore store(StoreLimits{100, 1, minutes(15)});
    record(store, obs("/old"), seconds(0));
    record(store, obs("/new"), minutes(10));        // over the cap: overflow
    EXPECT_EQ(store.expire_idle(minutes(16)), 1u);  // /old idle for 16 min
    record(store, obs("/new"), minutes(16));
    bool has_new = false;
    for (const auto& [k, s] : store.series())
        has_new |= k.target == "/new";
    EXPECT_TRUE(has_new);
}

}  // namespace
}  // namespace loupe::aggregate
