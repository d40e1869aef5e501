// loupe_otlp_* families of /metrics: what the OTLP exporter sent, dropped and was refused.
#pragma once

#include <string>

#include "export/otlp/otlp_exporter.h"
#include "export/otlp/trace_joiner.h"

namespace loupe::otlp {

// Prometheus text (0.0.4) of the exporter's and the joiner's counters.
std::string render_otlp_metrics(const ExporterCounters& exporter, const JoinerCounters& joiner,
                                std::size_t spans_held);

}  // namespace loupe::otlp
