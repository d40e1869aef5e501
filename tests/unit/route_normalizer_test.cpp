#include "aggregate/route_normalizer.h"

#include <gtest/gtest.h>

namespace loupe::aggregate {
namespace {

TEST(RouteNormalizer, ReplacesIdLikeSegments) {
    RouteNormalizer n;
    EXPECT_EQ(n.normalize("/users/12345/orders/9"), "/users/{id}/orders/{id}");
    EXPECT_EQ(n.normalize("/o/123e4567-e89b-12d3-a456-426614174000"), "/o/{id}");
    EXPECT_EQ(n.normalize("/blob/5d41402abc4b2a76b9719d911017c592"), "/blob/{id}");
    EXPECT_EQ(n.normalize("/s/dGhpcyBpcyBhIHRva2VuMTIzNDU2"), "/s/{id}");
    EXPECT_EQ(n.normalize("/api/v1/items"), "/api/v1/items");  // "v1" is short: a name, not an id
    EXPECT_EQ(n.normalize("/static/app.js"), "/static/app.js");
    EXPECT_EQ(n.normalize("/cafe"), "/cafe");  // hex letters only: a word
}

TEST(RouteNormalizer, StripsQueryAndFragment) {
    RouteNormalizer n;
    EXPECT_EQ(n.normalize("/search?q=secret&token=abc"), "/search");
    EXPECT_EQ(n.normalize("/page#section"), "/page");
    EXPECT_EQ(n.normalize("/?x=1"), "/");
}

TEST(RouteNormalizer, BoundsAndSanitises) {
    RouteNormalizer n;
    EXPECT_EQ(n.normalize(""), "/");
    EXPECT_EQ(n.normalize("*"), "/");
    EXPECT_EQ(n.normalize("/a/b/c/d/e/f/g/h/i/j/k"), "/a/b/c/d/e/f/g/h/{rest}");
    EXPECT_EQ(n.normalize(std::string("/bad\"\\\x01name")), "/bad___name");
    const std::string long_segment(500, 'x');
    const std::string route = n.normalize("/" + long_segment);
    EXPECT_EQ(route.size(), 1 + RouteNormalizer::kMaxSegmentLength + 3);
    EXPECT_EQ(n.normalize("/a//b/"), "/a//b/");
}

}  // namespace
}  // namespace loupe::aggregate
