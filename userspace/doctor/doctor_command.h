// `loupe doctor`: prints the kernel feature report.
#pragma once

#include <iosfwd>

#include "doctor/kernel_features.h"

namespace loupe::doctor {

void print_text(const KernelReport& report, std::ostream& out);
void print_json(const KernelReport& report, std::ostream& out);

// Probes, prints, and returns the process exit status: 0 when loupe can work here (even when a
// feature it uses is missing: the report then says what it cannot capture), 1 when it cannot
// capture at all.
int run_doctor(bool json, std::ostream& out);

}  // namespace loupe::doctor
