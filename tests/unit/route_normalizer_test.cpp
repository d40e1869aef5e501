#include "protocols/http1/route_normalizer.h"

#include <random>
#include <string>

#include <gtest/gtest.h>

namespace loupe::http1 {
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
    EXPECT_EQ(n.normalize(std::string("/bad\"\\name")), "/bad__name");
    EXPECT_EQ(n.normalize("/caf\xc3\xa9"), "/caf__");  // valid UTF-8, shown as ASCII only
    // Longer than a route name gets: an id (a slug, a blob), never a truncated secret.
    EXPECT_EQ(n.normalize("/" + std::string(65, 'x')), "/{id}");
    EXPECT_EQ(n.normalize("/" + std::string(64, 'a')), "/" + std::string(64, 'a'));
    EXPECT_EQ(n.normalize("/a//b/"), "/a//b/");
}

// The issue's cases: each went out verbatim in /metrics and the API.
TEST(RouteNormalizer, SecretsAndPersonalDataInPathsBecomeIds) {
    RouteNormalizer n;
    EXPECT_EQ(n.normalize("/user/john.doe@example.com/profile"), "/user/{id}/profile");
    EXPECT_EQ(n.normalize("/user/john.doe%40example.com/profile"), "/user/{id}/profile");
    EXPECT_EQ(n.normalize("/@alice/posts"), "/{id}/posts");
    EXPECT_EQ(n.normalize("/auth/eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwib"
                          "mFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c/x"),
              "/auth/{id}/x");
    EXPECT_EQ(n.normalize("/c/eyJwYWdlIjoyLCJzb3J0IjoiZGF0ZSJ9"), "/c/{id}");  // base64 JSON cursor
    EXPECT_EQ(n.normalize("/reset/k7Hq2mXw9LpR4tZb"), "/reset/{id}");
    EXPECT_EQ(n.normalize("/keys/AKIAIOSFODNN7EXAMPLE"), "/keys/{id}");
    EXPECT_EQ(n.normalize("/v1/sk_live_4eC39HqLyjWDarjtT1zdp7dc/charges"), "/v1/{id}/charges");
    EXPECT_EQ(n.normalize("/call/+1-555-123-4567"), "/call/{id}");
    EXPECT_EQ(n.normalize("/peer/192.168.10.200"), "/peer/{id}");
}

TEST(RouteNormalizer, MatrixParametersAreDropped) {
    RouteNormalizer n;
    EXPECT_EQ(n.normalize("/shop/cart;jsessionid=SECRET"), "/shop/cart");
    EXPECT_EQ(n.normalize("/shop/cart;jsessionid=SECRET/items;color=red;size=9"),
              "/shop/cart/items");
    EXPECT_EQ(n.normalize("/shop/cart%3Bjsessionid%3DSECRET"), "/shop/cart");  // encoded ';' too
    EXPECT_EQ(n.normalize("/a/;jsessionid=SECRET?x=1"), "/a/");
    // Past the matrix parameters, only the segment before them is judged.
    EXPECT_EQ(n.normalize("/cart;" + std::string(200, 'z')), "/cart");
}

TEST(RouteNormalizer, PercentEncodedControlBytesAndInvalidUtf8AreIds) {
    RouteNormalizer n;
    EXPECT_EQ(n.normalize("/files/%00"), "/files/{id}");
    EXPECT_EQ(n.normalize("/files/a%00b/x"), "/files/{id}/x");
    EXPECT_EQ(n.normalize("/files/%0d%0aSet-Cookie"), "/files/{id}");
    EXPECT_EQ(n.normalize("/files/%ff%fe"), "/files/{id}");
    EXPECT_EQ(n.normalize("/files/%C0%AF"), "/files/{id}");  // overlong '/'
    EXPECT_EQ(n.normalize(std::string("/files/raw\x01", 11)), "/files/{id}");
    EXPECT_EQ(n.normalize("/files/\xff\xfe"), "/files/{id}");
    // Percent-encoded text that is fine stays as it was sent.
    EXPECT_EQ(n.normalize("/files/my%20report"), "/files/my%20report");
    EXPECT_EQ(n.normalize("/files/caf%C3%A9"), "/files/caf%C3%A9");
    EXPECT_EQ(n.normalize("/files/100%"), "/files/100%");  // not an escape: a '%'
}

// Ordinary route names, kept: words, versions, file names with sizes and versions, kebab-case
// and camelCase with digits.
TEST(RouteNormalizer, OrdinaryNamesAreKept) {
    RouteNormalizer n;
    for (const char* name : {"customers",
                             "main.css",
                             "v1",
                             "x86_64-linux-gnu",
                             "getUserByIdAndOrderStatus",
                             "application-settings",
                             "customer-accounts-v2",
                             "oauth2-authorization",
                             "2fa-verification-step",
                             "ubuntu-22-04-lts",
                             "ProductCategories",
                             "kubernetes-1-28-release-notes",
                             "iso-8859-1-encoding",
                             "sha256-checksums",
                             "utf8mb4_unicode_ci",
                             "log4j-core-2-17-1",
                             "html5-boilerplate",
                             "win32-x64-installer",
                             "b2b-partner-onboarding",
                             "covid19-statistics",
                             "openapi-v3-spec.json",
                             "jquery-3.6.0.min.js",
                             "bootstrap-5.3.2.min.css",
                             "roboto-v30-latin-regular.woff2",
                             "android-chrome-192x192.png",
                             "apple-touch-icon-180x180.png",
                             "favicon-32x32.png",
                             "mstile-150x150.png",
                             "getRecommendations4User",
                             "listAllInvoices2023",
                             "k8s-cluster-status",
                             "i18n-translations-en",
                             "a11y-report-2024",
                             "v1beta1-apis",
                             "Content-Security-Policy",
                             "apple-app-site-association",
                             "reset-password-confirm",
                             "10.15.7",
                             "@",
                             "openid-configuration"}) {
        EXPECT_FALSE(RouteNormalizer::is_id_segment(name)) << name;
        EXPECT_EQ(n.normalize(std::string("/api/") + name), std::string("/api/") + name);
    }
    EXPECT_EQ(n.normalize("/api/v1/customers"), "/api/v1/customers");
    EXPECT_EQ(n.normalize("/static/main.css"), "/static/main.css");
}

// Random tokens as services issue them: most are caught from 16 characters, nearly all from 22
// (128 bits in base64url). What escapes is listed in README.
TEST(RouteNormalizer, RandomTokensAreCaught) {
    std::mt19937 rng(20);
    auto token = [&](std::string_view alphabet, std::size_t length) {
        std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
        std::string out;
        for (std::size_t i = 0; i < length; ++i)
            out += alphabet[pick(rng)];
        return out;
    };
    const std::string base62 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const struct {
        std::string alphabet;
        std::size_t length;
        double at_least;
    } cases[] = {
        {base62, 16, 0.95},
        {base62, 22, 0.99},
        {base62, 32, 0.995},
        {base62 + "-_", 22, 0.98},
        {base62 + "-_", 43, 0.995},
        {"abcdefghijklmnopqrstuvwxyz0123456789", 16, 0.85},
        {"abcdefghijklmnopqrstuvwxyz0123456789", 32, 0.97},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 0.94},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 32, 0.99},
    };
    for (const auto& c : cases) {
        int caught = 0;
        constexpr int kTokens = 2000;
        for (int i = 0; i < kTokens; ++i)
            caught += RouteNormalizer::is_id_segment(token(c.alphabet, c.length));
        EXPECT_GE(caught, c.at_least * kTokens) << c.alphabet << " x" << c.length;
    }
}

}  // namespace
}  // namespace loupe::http1
