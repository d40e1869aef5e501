// Probes every kernel feature loupe relies on, by really using it where that is the only honest
// test: a program of each kind is loaded, attached, triggered from this process and its hits read.
#pragma once

#include <string>
#include <vector>

namespace loupe::doctor {

struct FeatureReport {
    std::string id;     // stable key, e.g. "tracepoint"
    std::string title;  // human name
    bool available = false;
    std::string detail;      // what was found, or why it failed (errno text)
    std::string impact;      // what loupe loses without it
    bool essential = false;  // loupe cannot capture anything without it
    bool degrades = false;   // loupe runs without it, but captures less (the verdict says what)
};

struct KernelReport {
    std::string kernel_release;
    std::vector<FeatureReport> features;

    const FeatureReport* find(const std::string& id) const;
    bool available(const std::string& id) const;
    // True when loupe can capture at all: BPF, BTF, the ring buffer and at least one way to hook
    // syscalls (tracepoint, raw_tp or tp_btf).
    bool usable() const;
    // The features loupe's capture uses today that are missing: loupe runs, without their figures.
    std::vector<const FeatureReport*> degraded() const;
};

// Runs every probe; never throws for a missing feature, only reports it.
KernelReport probe_kernel_features();

}  // namespace loupe::doctor
