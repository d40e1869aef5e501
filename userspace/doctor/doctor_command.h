// `loupe doctor`: prints the kernel feature report.
#pragma once

#include <iosfwd>

#include "doctor/kernel_features.h"

namespace loupe::doctor {

void print_text(const KernelReport& report, std::ostream& out);
void print_json(const KernelReport& report, std::ostream& out);

// Probes, prints, and returns the process exit status: 0 when loupe can work here, 1 when it
// cannot work at all.
int run_doctor(bool json, std::ostream& out);

}  // namespace loupe::doctor
