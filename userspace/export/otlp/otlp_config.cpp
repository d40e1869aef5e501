#include "export/otlp/otlp_config.h"

#include <charconv>
#include <cstdlib>

#include "util/url.h"

namespace loupe::otlp {
namespace {

std::string trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return std::string(s);
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
            hex_value(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

std::string join_path(const std::string& base, const char* path) {
    if (base.empty()) return {};
    std::string url = base;
    while (!url.empty() && url.back() == '/')
        url.pop_back();
    return url + path;
}

}  // namespace

std::string traces_url(const OtlpSettings& settings) {
    if (!settings.traces) return {};
    if (!settings.traces_endpoint.empty()) return settings.traces_endpoint;
    return join_path(settings.endpoint, "/v1/traces");
}

std::string metrics_url(const OtlpSettings& settings) {
    if (!settings.metrics) return {};
    if (!settings.metrics_endpoint.empty()) return settings.metrics_endpoint;
    return join_path(settings.endpoint, "/v1/metrics");
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_key_value_list(
    const std::string& text) {
    std::vector<std::pair<std::string, std::string>> out;
    std::size_t begin = 0;
    while (begin <= text.size()) {
        std::size_t end = text.find(',', begin);
        if (end == std::string::npos) end = text.size();
        const std::string item = trim(std::string_view(text).substr(begin, end - begin));
        if (!item.empty()) {
            const auto eq = item.find('=');
            if (eq == std::string::npos) return std::nullopt;
            std::string key = percent_decode(trim(std::string_view(item).substr(0, eq)));
            if (key.empty()) return std::nullopt;
            out.emplace_back(std::move(key),
                             percent_decode(trim(std::string_view(item).substr(eq + 1))));
        }
        begin = end + 1;
    }
    return out;
}

std::optional<std::string> apply_otel_environment(OtlpSettings& settings,
                                                  const char* (*getenv)(const char*)) {
    auto value = [&](const char* name) -> std::optional<std::string> {
        const char* v = getenv(name);
        if (!v || !*v) return std::nullopt;
        return std::string(v);
    };
    // A URL variable's value is never quoted back: it may carry credentials.
    auto url = [&](const char* name, std::string& into) -> std::optional<std::string> {
        const auto v = value(name);
        if (!v) return std::nullopt;
        if (auto problem = util::http_url_problem(*v)) return std::string(name) + ": " + *problem;
        into = *v;
        return std::nullopt;
    };
    if (auto e = url("OTEL_EXPORTER_OTLP_ENDPOINT", settings.endpoint)) return e;
    if (auto e = url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", settings.traces_endpoint)) return e;
    if (auto e = url("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", settings.metrics_endpoint)) return e;
    if (const auto v = value("OTEL_EXPORTER_OTLP_HEADERS")) {
        const auto headers = parse_key_value_list(*v);
        if (!headers)
            return std::string(
                "OTEL_EXPORTER_OTLP_HEADERS: expected key=value pairs separated by commas");
        for (const auto& [k, _] : *headers)
            for (const char c : k)
                if (static_cast<unsigned char>(c) <= ' ' || c == ':' || c == 0x7f)
                    return std::string(
                        "OTEL_EXPORTER_OTLP_HEADERS: a header name has a space, ':' "
                        "or control character");
        settings.headers.insert(settings.headers.end(), headers->begin(), headers->end());
    }
    if (const auto v = value("OTEL_RESOURCE_ATTRIBUTES")) {
        const auto attributes = parse_key_value_list(*v);
        if (!attributes)
            return std::string(
                "OTEL_RESOURCE_ATTRIBUTES: expected key=value pairs separated by commas, such as "
                "deployment.environment.name=prod");
        settings.resource_attributes.insert(settings.resource_attributes.end(), attributes->begin(),
                                            attributes->end());
    }
    if (const auto v = value("OTEL_EXPORTER_OTLP_COMPRESSION")) {
        if (*v == "gzip")
            settings.gzip = true;
        else if (*v == "none")
            settings.gzip = false;
        else
            return "OTEL_EXPORTER_OTLP_COMPRESSION: expected gzip or none, got '" + *v + "'";
    }
    if (const auto v = value("OTEL_EXPORTER_OTLP_CERTIFICATE")) settings.certificate = *v;
    if (const auto v = value("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION")) {
        if (*v == "base2_exponential_bucket_histogram")
            settings.exponential_histograms = true;
        else if (*v == "explicit_bucket_histogram")
            settings.exponential_histograms = false;
        else
            return "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION: expected "
                   "base2_exponential_bucket_histogram or explicit_bucket_histogram, got '" +
                   *v + "'";
    }
    return std::nullopt;
}

std::optional<std::string> check_histogram_form(const std::string& text) {
    if (text == "exponential" || text == "explicit") return std::nullopt;
    return "expected exponential or explicit";
}

std::optional<std::string> check_sampling_ratio(const std::string& text) {
    double value = -1;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (!text.empty() && ec == std::errc() && ptr == text.data() + text.size() && value >= 0 &&
        value <= 1)
        return std::nullopt;
    return "expected a ratio from 0 to 1, such as 0.1";
}

}  // namespace loupe::otlp
