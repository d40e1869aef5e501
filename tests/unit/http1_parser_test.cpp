#include "protocols/http1/http1_parser.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace loupe::http1 {
namespace {

// What these tests keep of each syscall's data: short heads, so that uncaptured bytes are
// exercised (the capture copies up to 4 KiB of a syscall on an HTTP connection).
constexpr std::size_t kHeadBytes = 512;
constexpr std::size_t kTailBytes = 16;

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Feeds a connection the way the capture does and collects what it emits.
class Conn {
  public:
    explicit Conn(Role hint = Role::kServer) : parser(hint) {}

    // A syscall that moved exactly `data`: captured as head (first 512 bytes) + tail (last 16).
    void data(Direction d, std::uint64_t ts, std::string_view data) {
        const std::string_view head = data.substr(0, std::min(data.size(), kHeadBytes));
        std::string_view tail;
        if (data.size() > head.size())
            tail = data.substr(data.size() - std::min(data.size(), kTailBytes));
        raw(d, ts, head, data.size(), tail);
    }
    void in(std::uint64_t ts, std::string_view d) { data(Direction::kIngress, ts, d); }
    void out(std::uint64_t ts, std::string_view d) { data(Direction::kEgress, ts, d); }
    // A syscall of `length` bytes of which only head (and tail) were captured.
    void raw(Direction d, std::uint64_t ts, std::string_view head, std::uint64_t length,
             std::string_view tail = {}) {
        Segment s;
        s.direction = d;
        s.timestamp_ns = ts;
        s.length = length;
        s.head = bytes(head);
        s.tail = bytes(tail);
        parser.on_segment(s, exchanges);
    }
    void sendfile(Direction d, std::uint64_t ts, std::uint64_t length) { raw(d, ts, {}, length); }
    void close(std::uint64_t ts) { parser.on_close(ts, exchanges); }

    const ParserStats& stats() const { return parser.stats(); }

    Http1Connection parser;
    std::vector<Exchange> exchanges;
};

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

void expect_exchange(const Exchange& ex, Role role, std::string_view method, std::string_view path,
                     int status, std::uint64_t start, std::uint64_t end) {
    EXPECT_EQ(ex.role, role);
    EXPECT_EQ(ex.method, method);
    EXPECT_EQ(ex.path, path);
    EXPECT_EQ(ex.status, status);
    EXPECT_EQ(ex.start_ns, start);
    EXPECT_EQ(ex.end_ns, end);
}

void expect_clean(const Conn& c) {
    EXPECT_EQ(c.stats().unparsed_segments, 0u);
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
    EXPECT_EQ(c.stats().dropped_requests, 0u);
}

std::string get(std::string_view path, std::string_view version = "HTTP/1.1") {
    return "GET " + std::string(path) + " " + std::string(version) +
           "\r\nHost: example.com\r\nUser-Agent: test/1.0\r\nAccept: */*\r\n\r\n";
}

std::string ok(int status, std::string_view body) {
    return "HTTP/1.1 " + std::to_string(status) +
           " Whatever\r\nContent-Type: text/plain\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

TEST(Http1Parser, KeepAliveSequence) {
    Conn c(Role::kServer);
    c.in(100, get("/a"));
    EXPECT_EQ(c.parser.pending_requests(), 1u);
    c.out(150, ok(200, "hello"));
    c.in(200, get("/b"));
    c.out(260, ok(404, "not found"));
    c.in(300, get("/c"));
    c.out(390, ok(503, ""));
    ASSERT_EQ(c.exchanges.size(), 3u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/a", 200, 100, 150);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/b", 404, 200, 260);
    expect_exchange(c.exchanges[2], Role::kServer, "GET", "/c", 503, 300, 390);
    expect_clean(c);
    EXPECT_TRUE(c.parser.seen_http());
    EXPECT_EQ(c.parser.role(), Role::kServer);
    EXPECT_EQ(c.parser.pending_requests(), 0u);
    c.close(500);
    EXPECT_EQ(c.exchanges.size(), 3u);
}

TEST(Http1Parser, PipelinedRequestsOneResponseSegment) {
    Conn c(Role::kServer);
    c.in(100, get("/1") + get("/2") + "DELETE /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(c.parser.pending_requests(), 3u);
    c.out(200, ok(200, "one") + ok(404, "") + ok(500, "three!"));
    ASSERT_EQ(c.exchanges.size(), 3u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/1", 200, 100, 200);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/2", 404, 100, 200);
    expect_exchange(c.exchanges[2], Role::kServer, "DELETE", "/3", 500, 100, 200);
    expect_clean(c);
}

TEST(Http1Parser, PipelinedRequestsSeveralResponseSegments) {
    Conn c(Role::kServer);
    c.in(100, get("/1") + get("/2") + get("/3"));
    c.out(200, ok(201, "a"));
    c.out(300, ok(202, "b"));
    EXPECT_EQ(c.parser.pending_requests(), 1u);
    // The last response's body comes in a later write.
    c.out(400, "HTTP/1.1 203 OK\r\nContent-Length: 4\r\n\r\nab");
    EXPECT_EQ(c.exchanges.size(), 2u);
    c.out(450, "cd");
    ASSERT_EQ(c.exchanges.size(), 3u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/1", 201, 100, 200);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/2", 202, 100, 300);
    expect_exchange(c.exchanges[2], Role::kServer, "GET", "/3", 203, 100, 450);
    expect_clean(c);
}

TEST(Http1Parser, RequestSplitOverThreeSegments) {
    Conn c(Role::kServer);
    c.in(10, "GET /split?token=s3cret HT");
    c.in(11, "TP/1.1\r\nHost: example.com\r\nContent-");
    EXPECT_EQ(c.parser.pending_requests(), 1u);  // the request line is complete
    c.in(12, "Length: 4\r\n\r\nbody");
    c.out(20, ok(200, "ok"));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/split", 200, 10, 20);
    // The body was consumed with the headers: the next request parses.
    c.in(30, get("/next"));
    c.out(31, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/next", 200, 30, 31);
    expect_clean(c);
}

TEST(Http1Parser, RequestLineSplitInsideMethod) {
    Conn c(Role::kServer);
    c.in(10, "PO");
    c.in(11, "ST /p HTTP/1.1\r\n");
    c.in(12, "Content-Length: 2\r\n\r\n");
    c.in(13, "hi");
    c.out(20, ok(201, ""));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "POST", "/p", 201, 10, 20);
    expect_clean(c);
}

TEST(Http1Parser, PostContentLengthBodySplitOverSegments) {
    Conn c(Role::kServer);
    const std::string head = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
    c.in(10, head + std::string(100, 'a'));
    // Body bytes that look like requests must not be taken for requests.
    std::string body1 = get("/fake1") + std::string(2000, 'b');
    c.in(11, body1);
    c.in(12, get("/fake2"));
    const std::size_t rest = 5000 - 100 - body1.size() - get("/fake2").size();
    std::string body3 = get("/fake3") + std::string(rest - get("/fake3").size(), 'c');
    c.in(13, body3);
    EXPECT_EQ(c.parser.pending_requests(), 1u);
    c.out(20, ok(201, "created"));
    c.in(30, get("/after"));
    c.out(40, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[0], Role::kServer, "POST", "/upload", 201, 10, 20);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/after", 200, 30, 40);
    expect_clean(c);
}

TEST(Http1Parser, PostBodyNotCapturedCountsByLength) {
    Conn c(Role::kServer);
    c.in(10, "PUT /blob HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n");
    for (int i = 0; i < 10; ++i)
        c.raw(kIn, 11 + i, std::string(512, 'z'), 100'000, std::string(16, 'z'));
    c.out(30, ok(204, ""));
    c.in(40, get("/next"));
    c.out(41, ok(200, "x"));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[0], Role::kServer, "PUT", "/blob", 204, 10, 30);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/next", 200, 40, 41);
    expect_clean(c);
}

TEST(Http1Parser, ChunkedRequestBody) {
    Conn c(Role::kServer);
    c.in(10, "POST /chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    c.in(11, "1a;ext=1\r\nGET /fake HTTP/1.1\r\n\r\nxxxx\r\n");
    c.in(12, "0\r\n\r\n");
    c.out(20, ok(200, "got it"));
    c.in(30, get("/next"));
    c.out(31, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[0], Role::kServer, "POST", "/chunks", 200, 10, 20);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/next", 200, 30, 31);
    expect_clean(c);
}

TEST(Http1Parser, ChunkedRequestBodyWithTrailersThenPipelinedRequest) {
    Conn c(Role::kServer);
    c.in(10,
         "POST /t HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n"
         "X-Checksum: 1\r\n\r\n" +
             get("/second"));
    EXPECT_EQ(c.parser.pending_requests(), 2u);
    c.out(20, ok(200, "1") + ok(200, "2"));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[0], Role::kServer, "POST", "/t", 200, 10, 20);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/second", 200, 10, 20);
    expect_clean(c);
}

TEST(Http1Parser, ChunkedResponseTerminatorInLaterSegment) {
    Conn c(Role::kServer);
    c.in(10, get("/stream"));
    c.out(20, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n");
    c.out(21, "5\r\npedia\r\n");
    EXPECT_TRUE(c.exchanges.empty());
    c.out(22, "0\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/stream", 200, 10, 22);
    expect_clean(c);
}

TEST(Http1Parser, ChunkedResponseTerminatorInTail) {
    Conn c(Role::kServer);
    c.in(10, get("/big"));
    // One write: headers, an 8 KB chunk (mostly not captured), the last chunk in the tail.
    std::string body = "2000\r\n" + std::string(0x2000, 'd') + "\r\n0\r\n\r\n";
    c.out(20, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body);
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/big", 200, 10, 20);

    // Chunk-size lines lost in uncaptured bytes: the terminator is found in a later tail.
    c.in(30, get("/big2"));
    std::string first = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n" +
                        std::string(0x100, 'e') + "\r\n400\r\n" + std::string(0x400, 'f') + "\r\n";
    c.out(40, first);
    std::string second = "800\r\n" + std::string(0x800, 'g') + "\r\n0\r\n\r\n";
    c.raw(kOut, 41, std::string_view(second).substr(0, 0), second.size(),
          std::string_view(second).substr(second.size() - 16));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/big2", 200, 30, 41);
    c.in(50, get("/after"));
    c.out(51, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 3u);
    expect_exchange(c.exchanges[2], Role::kServer, "GET", "/after", 200, 50, 51);
    expect_clean(c);
}

TEST(Http1Parser, ChunkedResponseLostFramingTerminatorAlone) {
    Conn c(Role::kServer);
    c.in(10, get("/x"));
    std::string first = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n" +
                        std::string(0x200, 'e') + "\r\n300\r\n" + std::string(0x300, 'f');
    c.out(20, first);  // the second size line is beyond the head
    c.out(21, "\r\n");
    c.out(22, "0\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/x", 200, 10, 22);
}

TEST(Http1Parser, ContentLengthResponseFinishedBySendfile) {
    Conn c(Role::kServer);
    c.in(10, get("/index.html"));
    c.out(20,
          "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n"
          "Content-Length: 10000\r\nConnection: keep-alive\r\n\r\n");
    c.sendfile(kOut, 21, 4096);
    EXPECT_TRUE(c.exchanges.empty());
    c.sendfile(kOut, 22, 5904);
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/index.html", 200, 10, 22);
    c.in(30, get("/favicon.ico"));
    c.out(31, "HTTP/1.1 404 Not Found\r\nContent-Length: 153\r\n\r\n");
    c.sendfile(kOut, 32, 153);
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/favicon.ico", 404, 30, 32);
    expect_clean(c);
}

TEST(Http1Parser, Http10CloseDelimitedResponse) {
    Conn c(Role::kServer);
    c.in(10, get("/old", "HTTP/1.0"));
    c.out(20, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>");
    c.out(21, "<body>more</body>");
    c.raw(kOut, 22, std::string(512, 'x'), 4000, std::string(16, 'x'));
    EXPECT_TRUE(c.exchanges.empty());
    c.close(30);
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/old", 200, 10, 22);
    expect_clean(c);
}

TEST(Http1Parser, HeadResponseHasNoBody) {
    Conn c(Role::kServer);
    c.in(10, "HEAD /file HTTP/1.1\r\nHost: x\r\n\r\n");
    c.out(20, "HTTP/1.1 200 OK\r\nContent-Length: 123456\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "HEAD", "/file", 200, 10, 20);
    c.in(30, get("/next"));
    c.out(40, ok(200, "abc"));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/next", 200, 30, 40);
    expect_clean(c);
}

TEST(Http1Parser, NoContentAndNotModified) {
    Conn c(Role::kServer);
    c.in(10, "DELETE /item/7 HTTP/1.1\r\n\r\n");
    c.out(20, "HTTP/1.1 204 No Content\r\n\r\n");
    c.in(30, get("/cached"));
    c.out(40, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\nETag: \"x\"\r\n\r\n");
    c.in(50, get("/next"));
    c.out(60, ok(200, "fresh"));
    ASSERT_EQ(c.exchanges.size(), 3u);
    expect_exchange(c.exchanges[0], Role::kServer, "DELETE", "/item/7", 204, 10, 20);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/cached", 304, 30, 40);
    expect_exchange(c.exchanges[2], Role::kServer, "GET", "/next", 200, 50, 60);
    expect_clean(c);
}

TEST(Http1Parser, ExpectContinueServer) {
    Conn c(Role::kServer);
    c.in(10, "POST /up HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    c.out(11, "HTTP/1.1 100 Continue\r\n\r\n");
    EXPECT_TRUE(c.exchanges.empty());
    c.in(12, "hello");
    c.out(13, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "POST", "/up", 201, 10, 13);
    EXPECT_EQ(c.parser.framing_stats().interim_responses, 1u);
    expect_clean(c);
}

TEST(Http1Parser, ExpectContinueClientInterimAndFinalInOneRead) {
    Conn c(Role::kClient);
    c.out(10, "PUT /obj HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    c.in(11, "HTTP/1.1 100 Continue\r\n\r\n");
    c.out(12, "abc");
    c.in(13,
         "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: "
         "2\r\n\r\nok");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kClient, "PUT", "/obj", 200, 10, 13);
    expect_clean(c);
}

TEST(Http1Parser, ClientRole) {
    Conn c(Role::kClient);
    c.out(10, "POST /api/v1/orders?id=5 HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\n{}");
    c.in(25, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123");
    EXPECT_TRUE(c.exchanges.empty());
    c.in(27, "456789");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kClient, "POST", "/api/v1/orders", 200, 10, 27);
    EXPECT_EQ(c.parser.role(), Role::kClient);
    expect_clean(c);
}

TEST(Http1Parser, UnknownRoleInferredServerFromRequestRead) {
    Conn c(Role::kUnknown);
    EXPECT_EQ(c.parser.role(), Role::kUnknown);
    EXPECT_FALSE(c.parser.seen_http());
    c.in(10, get("/r"));
    EXPECT_EQ(c.parser.role(), Role::kServer);
    EXPECT_TRUE(c.parser.seen_http());
    c.out(20, ok(200, "x"));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/r", 200, 10, 20);
    expect_clean(c);
}

TEST(Http1Parser, UnknownRoleInferredClientFromRequestWritten) {
    Conn c(Role::kUnknown);
    c.out(10, get("/w"));
    EXPECT_EQ(c.parser.role(), Role::kClient);
    c.in(20, ok(302, ""));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kClient, "GET", "/w", 302, 10, 20);
    expect_clean(c);
}

TEST(Http1Parser, UnknownRoleInferredFromStatusLines) {
    Conn server(Role::kUnknown);
    server.out(10, ok(200, "tail of an exchange we missed"));
    EXPECT_EQ(server.parser.role(), Role::kServer);
    EXPECT_EQ(server.stats().unmatched_responses, 1u);
    server.in(20, get("/next"));
    server.out(30, ok(200, ""));
    ASSERT_EQ(server.exchanges.size(), 1u);
    expect_exchange(server.exchanges[0], Role::kServer, "GET", "/next", 200, 20, 30);

    Conn client(Role::kUnknown);
    client.in(10, ok(500, ""));
    EXPECT_EQ(client.parser.role(), Role::kClient);
    EXPECT_EQ(client.stats().unmatched_responses, 1u);
    client.out(20, get("/retry"));
    client.in(30, ok(200, ""));
    ASSERT_EQ(client.exchanges.size(), 1u);
    expect_exchange(client.exchanges[0], Role::kClient, "GET", "/retry", 200, 20, 30);
}

TEST(Http1Parser, MidStreamPickupResyncsAtNextRequest) {
    Conn c(Role::kUnknown);
    // Picked up in the middle of a request body and of its response's body.
    c.in(10, "ue&more=form&data=here");
    c.raw(kIn, 11, std::string(512, 'q'), 9000, std::string(16, 'q'));
    c.out(12, "}]}");
    EXPECT_EQ(c.parser.role(), Role::kUnknown);
    EXPECT_FALSE(c.parser.seen_http());
    EXPECT_EQ(c.stats().unparsed_segments, 0u);
    EXPECT_EQ(c.parser.framing_stats().skipped_segments, 3u);
    c.in(20, get("/resynced"));
    EXPECT_EQ(c.parser.role(), Role::kServer);
    c.out(30, ok(200, "yes"));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/resynced", 200, 20, 30);
    expect_clean(c);
}

TEST(Http1Parser, MidStreamPickupWithResponseBodyStillFlowing) {
    Conn c(Role::kUnknown);
    c.in(10, get("/a"));  // role inferred; the response stream is not yet synchronised
    c.out(11, "rest of an older response body");
    EXPECT_EQ(c.stats().unparsed_segments, 0u);
    c.out(12, ok(200, "for /a"));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/a", 200, 10, 12);
}

TEST(Http1Parser, CloseWithoutResponse) {
    Conn c(Role::kServer);
    c.in(10, get("/slow"));
    c.close(50);
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/slow", 0, 10, 50);
    EXPECT_EQ(c.parser.pending_requests(), 0u);

    Conn p(Role::kServer);
    p.in(10, get("/1") + get("/2") + get("/3"));
    p.out(20, ok(200, ""));
    p.close(60);
    ASSERT_EQ(p.exchanges.size(), 3u);
    expect_exchange(p.exchanges[0], Role::kServer, "GET", "/1", 200, 10, 20);
    expect_exchange(p.exchanges[1], Role::kServer, "GET", "/2", 0, 10, 60);
    expect_exchange(p.exchanges[2], Role::kServer, "GET", "/3", 0, 10, 60);
}

TEST(Http1Parser, CloseDuringContentLengthBodyKeepsStatus) {
    Conn c(Role::kClient);
    c.out(10, get("/partial"));
    c.in(20, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    c.in(21, "abc");
    c.close(90);
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kClient, "GET", "/partial", 200, 10, 21);
}

TEST(Http1Parser, GarbageIsCountedAndNextRequestParses) {
    Conn c(Role::kServer);
    const std::string binary("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\xff", 13);
    c.in(5, binary);
    c.in(6, "hello there\r\n\r\n");
    c.in(7, std::string(300, '\0'));
    EXPECT_EQ(c.stats().unparsed_segments, 3u);
    EXPECT_TRUE(c.exchanges.empty());
    EXPECT_EQ(c.parser.pending_requests(), 0u);
    c.in(10, get("/valid"));
    c.out(20, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/valid", 200, 10, 20);
    // Garbage where a status line is expected is counted too.
    c.out(25, "not a status line");
    EXPECT_EQ(c.stats().unparsed_segments, 4u);
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
}

TEST(Http1Parser, MalformedStartLines) {
    Conn c(Role::kServer);
    c.in(1, "GET  /double-space HTTP/1.1\r\n\r\n");
    c.in(2, "GET /x HTTP/2.0\r\n\r\n");
    c.in(3, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    c.in(4, "GET /x HTTP/1.1 trailing\r\n\r\n");
    c.in(5, "G\x01T / HTTP/1.1\r\n\r\n");
    c.in(6, "/nomethod HTTP/1.1\r\n\r\n");
    EXPECT_EQ(c.stats().unparsed_segments, 6u);
    EXPECT_EQ(c.parser.pending_requests(), 0u);
    c.in(10, get("/fine"));
    EXPECT_EQ(c.parser.pending_requests(), 1u);
}

TEST(Http1Parser, TruncatedRequestLine) {
    Conn c(Role::kServer);
    c.in(5, "GET /never-finished HTTP/1.");  // fully captured: waits for the rest
    EXPECT_EQ(c.stats().unparsed_segments, 0u);
    c.in(10, get("/ok"));  // does not continue the line: the buffered bytes were garbage
    EXPECT_EQ(c.stats().unparsed_segments, 1u);
    c.out(20, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/ok", 200, 10, 20);

    // A request line longer than the head: queued with the visible part of the path.
    std::string long_target = "/very/" + std::string(600, 'l');
    std::string line = "GET " + long_target + " HTTP/1.1\r\nHost: x\r\n\r\n";
    c.raw(kIn, 30, std::string_view(line).substr(0, 512), line.size(),
          std::string_view(line).substr(line.size() - 16));
    c.out(40, ok(414, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    EXPECT_EQ(c.exchanges[1].path, long_target.substr(0, 512 - 4));
    EXPECT_EQ(c.exchanges[1].status, 414);
    EXPECT_EQ(c.exchanges[1].start_ns, 30u);
    EXPECT_EQ(c.exchanges[1].end_ns, 40u);
    c.in(50, get("/after"));
    c.out(60, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 3u);
    expect_exchange(c.exchanges[2], Role::kServer, "GET", "/after", 200, 50, 60);
}

TEST(Http1Parser, OneMegabyteHeaderWithRequestLine) {
    Conn c(Role::kServer);
    std::string head = "GET /big HTTP/1.1\r\nX-Long: ";
    head += std::string(512 - head.size(), 'a');
    c.raw(kIn, 10, head, 1'000'000, std::string(16, 'a'));
    EXPECT_EQ(c.parser.pending_requests(), 1u);
    EXPECT_EQ(c.stats().unparsed_segments, 1u);
    EXPECT_EQ(c.parser.framing_stats().oversized_headers, 1u);
    for (int i = 0; i < 20; ++i)
        c.raw(kIn, 11, std::string(512, 'a'), 65536, std::string(16, 'a'));
    c.in(12, "aaaa\r\n\r\n");
    EXPECT_LT(c.parser.memory_bytes(), 2048u);
    c.out(15, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n");
    c.in(20, get("/next"));
    c.out(30, ok(200, "fine"));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/big", 431, 10, 15);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/next", 200, 20, 30);
    EXPECT_EQ(c.stats().unparsed_segments, 1u);
}

TEST(Http1Parser, OneMegabyteHeaderLineAlone) {
    Conn c(Role::kServer);
    std::string head = "X-Long: ";
    head += std::string(512 - head.size(), 'a');
    c.raw(kIn, 10, head, 1'000'000, std::string(16, 'a'));
    EXPECT_EQ(c.stats().unparsed_segments, 1u);
    EXPECT_TRUE(c.exchanges.empty());
    EXPECT_EQ(c.parser.pending_requests(), 0u);
    c.in(20, get("/next"));
    c.out(30, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/next", 200, 20, 30);
    EXPECT_LT(c.parser.memory_bytes(), 2048u);
}

TEST(Http1Parser, HeaderTrickledByteByByteStaysBounded) {
    Conn c(Role::kServer);
    c.in(1, "GET /slowloris HTTP/1.1\r\n");
    for (int i = 0; i < 10000; ++i)
        c.in(2, "a");  // never ends the header block
    EXPECT_LE(c.parser.memory_bytes(), 4096u + 1024u);
    EXPECT_EQ(c.parser.framing_stats().oversized_headers, 1u);
    EXPECT_EQ(c.stats().unparsed_segments, 1u);
    c.in(10, get("/next"));
    EXPECT_EQ(c.parser.pending_requests(), 2u);
}

TEST(Http1Parser, ResponseHeadersLargerThanHead) {
    Conn c(Role::kServer);
    c.in(10, get("/cookies"));
    std::string resp = "HTTP/1.1 200 OK\r\nSet-Cookie: " + std::string(600, 'c') +
                       "\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'b');
    c.raw(kOut, 20, std::string_view(resp).substr(0, 512), resp.size(),
          std::string_view(resp).substr(resp.size() - 16));
    c.raw(kOut, 21, "", 0);  // empty segments are ignored
    EXPECT_TRUE(c.exchanges.empty());
    c.in(30, get("/next"));  // the framing-unknown response ends before this request
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/cookies", 200, 10, 20);
    c.out(40, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/next", 200, 30, 40);

    // The same, ended by close.
    c.in(50, get("/bye"));
    c.raw(kOut, 60, std::string_view(resp).substr(0, 512), resp.size(),
          std::string_view(resp).substr(resp.size() - 16));
    c.sendfile(kOut, 61, 1000);
    c.close(70);
    ASSERT_EQ(c.exchanges.size(), 3u);
    expect_exchange(c.exchanges[2], Role::kServer, "GET", "/bye", 200, 50, 61);
}

TEST(Http1Parser, ResponseHeadersSplitAcrossReadsAreReassembled) {
    Conn c(Role::kClient);
    c.out(10, get("/r"));
    c.in(20, "HTTP/1.1 200 OK\r\nContent-Le");
    c.in(21, "ngth: 6\r\n\r\nab");
    c.in(22, "cdef");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kClient, "GET", "/r", 200, 10, 22);
    expect_clean(c);
}

TEST(Http1Parser, StatusLineSplitAcrossReads) {
    Conn c(Role::kClient);
    c.out(10, get("/s"));
    c.in(20, "HTTP/1.1 20");
    c.in(21, "0 OK\r\nContent-Length: 3\r\n\r\nab");
    c.in(22, "c");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kClient, "GET", "/s", 200, 10, 22);
    expect_clean(c);
}

TEST(Http1Parser, QueryStringAndFragmentStripped) {
    Conn c(Role::kServer);
    c.in(10, get("/search?q=secret&token=abc"));
    c.in(11, get("/page#section"));
    c.in(12, get("/?only=query"));
    c.out(20, ok(200, "") + ok(200, "") + ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 3u);
    EXPECT_EQ(c.exchanges[0].path, "/search");
    EXPECT_EQ(c.exchanges[1].path, "/page");
    EXPECT_EQ(c.exchanges[2].path, "/");
    for (const auto& ex : c.exchanges)
        EXPECT_EQ(ex.path.find("secret"), std::string::npos);
}

TEST(Http1Parser, AbsoluteFormTarget) {
    Conn c(Role::kServer);
    c.in(10, get("http://example.com:8080/api/v1/users?id=7"));
    c.in(11, get("https://example.com"));
    c.in(12, get("http://example.com?x=1"));
    c.in(13, "OPTIONS * HTTP/1.1\r\n\r\n");
    c.in(14, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    c.out(20, ok(200, "") + ok(200, "") + ok(200, "") + ok(200, ""));
    c.out(21, "HTTP/1.1 200 Connection Established\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 5u);
    EXPECT_EQ(c.exchanges[0].path, "/api/v1/users");
    EXPECT_EQ(c.exchanges[1].path, "/");
    EXPECT_EQ(c.exchanges[2].path, "/");
    EXPECT_EQ(c.exchanges[3].path, "*");
    EXPECT_EQ(c.exchanges[3].method, "OPTIONS");
    EXPECT_EQ(c.exchanges[4].path, "example.com:443");
    expect_exchange(c.exchanges[4], Role::kServer, "CONNECT", "example.com:443", 200, 14, 21);
    // A successful CONNECT turns the connection into a tunnel: TLS bytes are not HTTP garbage.
    c.in(30, std::string("\x16\x03\x01\x00\x05hello", 10));
    c.out(31, std::string("\x16\x03\x03\x00\x02hi", 7));
    EXPECT_EQ(c.stats().unparsed_segments, 0u);
    EXPECT_EQ(c.exchanges.size(), 5u);
}

TEST(Http1Parser, MethodsKnownAndOther) {
    Conn c(Role::kServer);
    const char* known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"};
    for (const char* m : known)
        c.in(10, std::string(m) + " /m HTTP/1.1\r\n\r\n");
    c.in(11, "PURGE /cache HTTP/1.1\r\n\r\n");
    c.in(12, "get /lowercase HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 10; ++i)
        c.out(20 + i, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 10u);
    for (int i = 0; i < 8; ++i)
        EXPECT_EQ(c.exchanges[i].method, known[i]);
    expect_exchange(c.exchanges[8], Role::kServer, "_OTHER", "/cache", 200, 11, 28);
    EXPECT_EQ(c.exchanges[9].method, "_OTHER");
    expect_clean(c);
}

TEST(Http1Parser, UnmatchedResponseIsCountedAndFramed) {
    Conn c(Role::kServer);
    c.out(10, "HTTP/1.1 200 OK\r\nContent-Length: 29\r\n\r\n0123456789");
    c.out(11, "HTTP/1.1 200 OK\r\n\r\n");  // body bytes, not a response
    EXPECT_EQ(c.stats().unmatched_responses, 1u);
    EXPECT_EQ(c.stats().unparsed_segments, 0u);
    EXPECT_TRUE(c.exchanges.empty());
}

TEST(Http1Parser, PendingQueueIsBoundedAndStaysAligned) {
    Conn c(Role::kServer);
    std::string batch;
    for (int i = 0; i < 10; ++i)
        batch += "GET /" + std::to_string(i) + " HTTP/1.1\r\n\r\n";
    for (int b = 0; b < 7; ++b)
        c.in(10 + b, batch);  // 70 requests
    EXPECT_EQ(c.parser.pending_requests(), Http1Connection::kMaxPending);
    EXPECT_EQ(c.stats().dropped_requests, 6u);
    for (int i = 0; i < 70; ++i)
        c.out(100 + i, "HTTP/1.1 " + std::to_string(200 + i) + " OK\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 64u);
    EXPECT_EQ(c.exchanges[63].status, 263);
    EXPECT_EQ(c.exchanges[63].path, "/3");
    EXPECT_EQ(c.stats().unmatched_responses, 0u);
    c.in(200, get("/aligned"));
    c.out(201, ok(299, ""));
    ASSERT_EQ(c.exchanges.size(), 65u);
    expect_exchange(c.exchanges[64], Role::kServer, "GET", "/aligned", 299, 200, 201);
}

TEST(Http1Parser, SwitchingProtocolsEndsHttp) {
    Conn c(Role::kServer);
    c.in(10, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    c.out(20, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
    c.in(30, "\x81\x85mask!");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/ws", 101, 10, 20);
    EXPECT_EQ(c.stats().unparsed_segments, 0u);
    c.close(40);
    EXPECT_EQ(c.exchanges.size(), 1u);
}

TEST(Http1Parser, PipelinedResponsesBeyondHeadAreAbandonedNotMispaired) {
    Conn c(Role::kServer);
    c.in(10, get("/1") + get("/2") + get("/3"));
    // One write with three responses: the first is visible, the second's headers are cut by the
    // end of the head, the third is not captured at all.
    std::string body(400, 'x');
    std::string all = ok(200, body) + ok(201, body) + ok(202, body);
    c.raw(kOut, 20, std::string_view(all).substr(0, 512), all.size(),
          std::string_view(all).substr(all.size() - 16));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/1", 200, 10, 20);
    EXPECT_EQ(c.parser.pending_requests(), 0u);
    EXPECT_EQ(c.parser.framing_stats().abandoned_requests, 1u);  // /3: its response went unseen
    c.in(30, get("/4"));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/2", 201, 10, 20);
    c.out(40, ok(204, ""));
    ASSERT_EQ(c.exchanges.size(), 3u);
    expect_exchange(c.exchanges[2], Role::kServer, "GET", "/4", 204, 30, 40);
}

TEST(Http1Parser, PipelinedResponsesWhollyBeyondHeadAreAbandoned) {
    Conn c(Role::kServer);
    c.in(10, get("/1") + get("/2") + get("/3"));
    std::string body;
    while (ok(200, body).size() < 512)
        body += 'y';
    ASSERT_EQ(ok(200, body).size(), 512u);
    std::string all = ok(200, body) + ok(201, body) + ok(202, body);
    c.raw(kOut, 20, std::string_view(all).substr(0, 512), all.size(),
          std::string_view(all).substr(all.size() - 16));
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/1", 200, 10, 20);
    EXPECT_EQ(c.parser.framing_stats().abandoned_requests, 2u);
    c.in(30, get("/4"));
    c.out(40, ok(204, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/4", 204, 30, 40);
}

// Pipelined requests past the capture: the next read starts inside a request line. Its rest
// ("ET /b HTTP/1.1") must not resynchronise the stream as a request of method "ET".
TEST(Http1Parser, ResyncWaitsForAKnownMethod) {
    Conn c(Role::kServer);
    const std::string all = get("/a") + get("/b") + get("/c");
    // The head ends inside /b's method; the read also holds /c and the "G" of /d.
    c.raw(kIn, 10, std::string_view(all).substr(0, get("/a").size() + 2), all.size() + 1);
    EXPECT_EQ(c.parser.framing_stats().desyncs, 1u);
    c.in(11, "ET /d HTTP/1.1\r\n\r\n");
    c.in(12, get("/e"));
    c.out(20, ok(200, ""));
    c.out(21, ok(201, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[0], Role::kServer, "GET", "/a", 200, 10, 20);
    // The lost requests' responses are not told apart from /e's: the next one pairs with it.
    // What matters here: no request of method "ET" was made up.
    expect_exchange(c.exchanges[1], Role::kServer, "GET", "/e", 201, 12, 21);
}

TEST(Http1Parser, StrayCrlfBetweenRequests) {
    Conn c(Role::kServer);
    c.in(10, "POST /f HTTP/1.1\r\nContent-Length: 2\r\n\r\nab\r\n");
    c.in(11, "\r\n");
    c.in(12, get("/g"));
    c.out(20, ok(200, "") + ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    EXPECT_EQ(c.exchanges[1].path, "/g");
    expect_clean(c);
}

TEST(Http1Parser, InvalidContentLengthResyncsRequests) {
    Conn c(Role::kServer);
    c.in(10, "POST /bad HTTP/1.1\r\nContent-Length: 12, 13\r\n\r\n0123456789ab");
    c.in(11, "more body");
    c.out(20, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kServer, "POST", "/bad", 400, 10, 20);
    c.in(30, get("/next"));
    EXPECT_EQ(c.parser.pending_requests(), 1u);
}

TEST(Http1Parser, ReusableAfterClose) {
    Conn c(Role::kClient);
    c.out(10, get("/a"));
    c.in(11, "HTTP/1.1 200 OK\r\nContent-Len");
    c.close(12);  // the status line arrived: the response counts, cut short
    ASSERT_EQ(c.exchanges.size(), 1u);
    expect_exchange(c.exchanges[0], Role::kClient, "GET", "/a", 200, 10, 11);
    c.out(20, get("/b"));
    c.in(21, ok(200, ""));
    ASSERT_EQ(c.exchanges.size(), 2u);
    expect_exchange(c.exchanges[1], Role::kClient, "GET", "/b", 200, 20, 21);
}

}  // namespace
}  // namespace loupe::http1

namespace loupe::http1 {
namespace {

TEST(Http1Traceparent, KeepsOnlyAWellFormedTraceparent) {
    Conn c;
    const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    c.in(1,
         "GET /a HTTP/1.1\r\nHost: x\r\nTraceparent: " + tp + "\r\nAuthorization: secret\r\n\r\n");
    c.out(2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    // Malformed ones (upper-case hex, wrong version, all-zero ids, wrong length) are not kept.
    for (const std::string bad :
         {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
          "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "secret"}) {
        c.in(3, "GET /b HTTP/1.1\r\ntraceparent: " + bad + "\r\n\r\n");
        c.out(4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    // Without one, the next request does not inherit the previous one's.
    c.in(5, "GET /c HTTP/1.1\r\n\r\n");
    c.out(6, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 8u);
    EXPECT_EQ(c.exchanges[0].traceparent.view(), tp);
    for (std::size_t i = 1; i < c.exchanges.size(); ++i)
        EXPECT_EQ(c.exchanges[i].traceparent.view(), "") << i;
}

TEST(Http1Traceparent, SplitHeaderBlock) {
    Conn c;
    const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    c.in(1, "GET /a HTTP/1.1\r\nHost: x\r\n");
    c.in(2, "traceparent: " + tp + "\r\n\r\n");
    c.out(3, "HTTP/1.1 204 No Content\r\n\r\n");
    ASSERT_EQ(c.exchanges.size(), 1u);
    EXPECT_EQ(c.exchanges[0].traceparent.view(), tp);
}

}  // namespace
}  // namespace loupe::http1
