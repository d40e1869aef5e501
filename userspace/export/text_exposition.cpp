#include "export/text_exposition.h"

#include <charconv>
#include <cmath>

#include "util/utf8.h"

namespace loupe::exporter {
namespace {

void append_escaped_label_value(std::string& out, std::string_view value) {
    std::string repaired;
    if (!util::is_valid_utf8(value)) {
        util::append_valid_utf8(repaired, value);
        value = repaired;
    }
    for (const char c : value) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '"':
                out += "\\\"";
                break;
            case '\n':
                out += "\\n";
                break;
            default:
                out += c;
        }
    }
}

void append_escaped_help(std::string& out, std::string_view help) {
    for (const char c : help) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
}

void append_double(std::string& out, double value) {
    if (std::isnan(value)) {
        out += "NaN";
        return;
    }
    if (std::isinf(value)) {
        out += value > 0 ? "+Inf" : "-Inf";
        return;
    }
    char buf[32];
    // Counts print as integers ("100000", not the shorter "1e+05"); everything else in the
    // shortest form that reads back as the same double.
    const bool integral = std::abs(value) < 1e15 && value == std::trunc(value);
    const auto end =
        integral ? std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::fixed).ptr
                 : std::to_chars(buf, buf + sizeof(buf), value).ptr;
    out.append(buf, end);
}

}  // namespace

std::string format_value(double value) {
    std::string out;
    append_double(out, value);
    return out;
}

LabelSet::LabelSet(std::initializer_list<Label> labels) {
    for (const auto& l : labels)
        add(l.name, l.value);
}

LabelSet& LabelSet::add(std::string_view name, std::string_view value) {
    if (!text_.empty()) text_ += ',';
    text_.append(name);
    text_ += "=\"";
    append_escaped_label_value(text_, value);
    text_ += '"';
    return *this;
}

void TextExposition::family(std::string_view name, std::string_view type, std::string_view help) {
    text_ += "# HELP ";
    text_.append(name);
    text_ += ' ';
    append_escaped_help(text_, help);
    text_ += "\n# TYPE ";
    text_.append(name);
    text_ += ' ';
    text_.append(type);
    text_ += '\n';
}

void TextExposition::sample(std::string_view name, const LabelSet& labels, double value,
                            std::initializer_list<Label> extra) {
    text_.append(name);
    if (!labels.empty() || extra.size()) {
        text_ += '{';
        text_.append(labels.text());
        bool first = labels.empty();
        for (const auto& l : extra) {
            if (!first) text_ += ',';
            first = false;
            text_.append(l.name);
            text_ += "=\"";
            append_escaped_label_value(text_, l.value);
            text_ += '"';
        }
        text_ += '}';
    }
    text_ += ' ';
    append_double(text_, value);
    text_ += '\n';
    ++samples_;
}

void TextExposition::histogram(std::string_view name, const LabelSet& labels,
                               std::span<const double> bounds,
                               std::span<const std::uint64_t> cumulative, std::uint64_t count,
                               double sum) {
    std::string series(name);
    const std::size_t stem = series.size();
    series += "_bucket";
    char le[32];
    for (std::size_t i = 0; i < bounds.size() && i < cumulative.size(); ++i) {
        const auto end = std::to_chars(le, le + sizeof(le), bounds[i]).ptr;
        sample(series, labels, static_cast<double>(cumulative[i]),
               {{"le", std::string_view(le, static_cast<std::size_t>(end - le))}});
    }
    sample(series, labels, static_cast<double>(count), {{"le", "+Inf"}});
    series.resize(stem);
    series += "_sum";
    sample(series, labels, sum);
    series.resize(stem);
    series += "_count";
    sample(series, labels, static_cast<double>(count));
}

}  // namespace loupe::exporter
