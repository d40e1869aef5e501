// The Prometheus text exposition format (0.0.4), written straight into one string: no model of
// families and samples in between, so a scrape costs little more memory than its own text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace loupe::exporter {

struct Label {
    std::string_view name;
    std::string_view value;
};

// Label pairs rendered once (`a="x",b="y"`, escaped, invalid UTF-8 replaced by U+FFFD) and
// reused by every sample that carries them.
class LabelSet {
  public:
    LabelSet() = default;
    LabelSet(std::initializer_list<Label> labels);
    LabelSet& add(std::string_view name, std::string_view value);
    std::string_view text() const { return text_; }
    bool empty() const { return text_.empty(); }

  private:
    std::string text_;
};

class TextExposition {
  public:
    // # HELP and # TYPE lines; every sample of the family must follow before the next family.
    void family(std::string_view name, std::string_view type, std::string_view help);
    // `name{labels,extra} value`.
    void sample(std::string_view name, const LabelSet& labels, double value,
                std::initializer_list<Label> extra = {});
    // A histogram's samples: `bounds` (seconds, ascending) with their cumulative counts, then
    // +Inf (= count), _sum and _count. The header is family(name, "histogram", ...).
    void histogram(std::string_view name, const LabelSet& labels, std::span<const double> bounds,
                   std::span<const std::uint64_t> cumulative, std::uint64_t count, double sum);

    // Samples written so far: what Prometheus counts as series of this scrape.
    std::size_t samples() const { return samples_; }
    // Moves another exposition's text (families of its own) to the end of this one.
    void append(TextExposition&& other) {
        text_ += other.text_;
        samples_ += other.samples_;
    }
    std::string take() { return std::move(text_); }
    void reserve(std::size_t bytes) { text_.reserve(bytes); }

  private:
    void append_value(double value);

    std::string text_;
    std::size_t samples_ = 0;
};

// The shortest text that reads back as the same double ("0.075", "2.5e-06", "+Inf", "NaN"), as
// Prometheus prints `le` and quantile labels: a query for le="0.075" must match.
std::string format_value(double value);

}  // namespace loupe::exporter
