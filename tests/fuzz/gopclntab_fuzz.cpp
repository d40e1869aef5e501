// A .gopclntab as a crafted executable could carry it: any bytes give functions or an error,
// never a crash, and the functions read are sorted, non-empty and findable.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "elf/go_functions.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto functions = loupe::elf::parse_gopclntab({data, size}, 0x401000);
    if (!functions) return 0;
    std::uint64_t previous_end = 0;
    for (const auto& function : functions->functions) {
        if (function.entry >= function.end || function.entry < previous_end ||
            function.name.empty())
            std::abort();
        if (functions->find(function.entry) != &function) std::abort();
        previous_end = function.end;
    }
    return 0;
}
