#include "export/otlp/otlp_metrics_text.h"

#include "export/text_exposition.h"

namespace loupe::otlp {

std::string render_otlp_metrics(const ExporterCounters& e, const JoinerCounters& j,
                                std::size_t spans_held) {
    exporter::TextExposition out;
    const exporter::LabelSet none;
    auto counter = [&](std::string_view name, std::string_view help, std::uint64_t value) {
        out.family(name, "counter", help);
        out.sample(name, none, static_cast<double>(value));
    };
    auto gauge = [&](std::string_view name, std::string_view help, double value) {
        out.family(name, "gauge", help);
        out.sample(name, none, value);
    };
    counter("loupe_otlp_spans_total", "Spans made from captured requests", j.spans);
    counter("loupe_otlp_spans_sampled_out_total", "Spans not exported by head sampling",
            j.sampled_out);
    counter("loupe_otlp_spans_sent_total", "Spans the OTLP receiver accepted", e.spans_sent);
    out.family("loupe_otlp_spans_dropped_total", "counter",
               "Spans dropped: the export queue was full, or the receiver refused their batch");
    out.sample("loupe_otlp_spans_dropped_total", exporter::LabelSet{{"reason", "queue_full"}},
               static_cast<double>(e.spans_dropped_queue_full));
    out.sample("loupe_otlp_spans_dropped_total", exporter::LabelSet{{"reason", "refused"}},
               static_cast<double>(e.spans_dropped_failed));
    counter("loupe_otlp_spans_rejected_total",
            "Spans the receiver reported rejected (partial_success)", e.spans_rejected);
    gauge("loupe_otlp_spans_queued", "Spans waiting to be sent",
          static_cast<double>(e.spans_queued));
    gauge("loupe_otlp_spans_held", "Spans held for trace joining before they are queued",
          static_cast<double>(spans_held));
    counter("loupe_otlp_spans_released_early_total",
            "Spans released before their joining delay (too many held)", j.released_early);
    out.family("loupe_otlp_span_parents_total", "counter",
               "Spans given a parent, by how the parent was found");
    out.sample("loupe_otlp_span_parents_total", exporter::LabelSet{{"link", "thread"}},
               static_cast<double>(j.parent_thread));
    out.sample("loupe_otlp_span_parents_total", exporter::LabelSet{{"link", "connection"}},
               static_cast<double>(j.parent_connection));
    out.sample("loupe_otlp_span_parents_total", exporter::LabelSet{{"link", "traceparent"}},
               static_cast<double>(j.parent_traceparent));
    out.family("loupe_otlp_requests_total", "counter", "OTLP export requests answered 2xx");
    out.sample("loupe_otlp_requests_total", exporter::LabelSet{{"signal", "traces"}},
               static_cast<double>(e.span_requests));
    out.sample("loupe_otlp_requests_total", exporter::LabelSet{{"signal", "metrics"}},
               static_cast<double>(e.metric_requests));
    counter("loupe_otlp_metric_exports_failed_total",
            "Metrics exports that failed (the next one carries the same cumulative counts)",
            e.metric_requests_failed);
    counter("loupe_otlp_data_points_sent_total", "Metric data points the receiver accepted",
            e.data_points_sent);
    counter("loupe_otlp_data_points_rejected_total",
            "Data points the receiver reported rejected (partial_success)", e.data_points_rejected);
    counter("loupe_otlp_retries_total",
            "Export attempts that failed and were retried (429, 502, 503, 504, unreachable)",
            e.retries);
    counter("loupe_otlp_sent_bytes_total", "Bytes of export request bodies sent", e.bytes_sent);
    return out.take();
}

}  // namespace loupe::otlp
