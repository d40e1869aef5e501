// Turns request paths into low-cardinality route labels: never a raw URL in a label.
#pragma once

#include <string>
#include <string_view>

namespace loupe::http1 {

// "/users/12345/orders/9f8e7d6c-..." -> "/users/{id}/orders/{id}". Per segment:
// - matrix parameters are dropped: everything from ';' ("/cart;jsessionid=X" -> "/cart");
// - percent-encoded bytes are decoded to classify the segment (what is shown stays as sent); a
//   segment whose bytes include a control character (%00, %0a, raw ones too) or are not valid
//   UTF-8 is an {id};
// - it is an {id} when it is a number, a UUID, a long hex string, a phone- or date-like run of
//   digits, an e-mail address or anything with '@', a JWT or base64 JSON ("eyJ..."), a long
//   random-looking token, or longer than kMaxSegmentLength.
// Paths are cut after kMaxSegments segments ("/{rest}") and bytes that are not printable ASCII
// are replaced, so the result is always a short, safe label value.
class RouteNormalizer {
  public:
    static constexpr std::size_t kMaxSegments = 8;
    static constexpr std::size_t kMaxSegmentLength = 64;

    std::string normalize(std::string_view path) const;
    // `segment` decoded (no percent-encoding, no matrix parameters).
    static bool is_id_segment(std::string_view segment);
    // A token of letters, digits and -_.+=~ of at least 16 characters (a short file extension
    // left out) that reads as random rather than as words: few of its letters are in
    // pronounceable words, or its letters, digits and cases alternate more than words do.
    static bool looks_random(std::string_view segment);
};

}  // namespace loupe::http1
