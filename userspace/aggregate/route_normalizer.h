// Turns request paths into low-cardinality route labels: never a raw URL in a label.
#pragma once

#include <string>
#include <string_view>

namespace loupe::aggregate {

// "/users/12345/orders/9f8e7d6c-..." -> "/users/{id}/orders/{id}". A segment is an id when it is
// a number, a UUID, a long hex string, or a long token mixing letters and digits (base64-ish).
// Paths are cut after kMaxSegments segments ("/{rest}") and bytes that are not printable ASCII
// are replaced, so the result is always a short, safe label value.
class RouteNormalizer {
  public:
    static constexpr std::size_t kMaxSegments = 8;
    static constexpr std::size_t kMaxSegmentLength = 64;

    std::string normalize(std::string_view path) const;
    static bool is_id_segment(std::string_view segment);
};

}  // namespace loupe::aggregate
