#!/usr/bin/env bash
# Fuzzes the attribution inputs (/proc/PID/cgroup text, PodList JSON) with libFuzzer + ASan + UBSan.
#   tools/fuzz-attribution.sh [SECONDS]   (default 60)
# Seeds: cgroup lines of each container runtime layout and the PodList fixtures of the tests.
# Exits non-zero on a crash or sanitizer report; the input is left in build-fuzz/attribution-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
jobs="${JOBS:-2}"

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOUPE_BUILD_FUZZERS=ON -DLOUPE_BUILD_TESTS=OFF \
      -DLOUPE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target loupe_attribution_fuzz

fuzzer=$(find build-fuzz -type f -name loupe_attribution_fuzz -perm -u+x | head -n 1)
[[ -n "$fuzzer" ]] || { echo "loupe_attribution_fuzz not built" >&2; exit 1; }

corpus=build-fuzz/attribution-corpus
artifacts=build-fuzz/attribution-artifacts
mkdir -p "$corpus" "$artifacts"
id=$(printf 'a%.0s' {1..64})
seed() { printf '%s' "$2" >"$corpus/seed-$1"; }
seed containerd "$(printf '\000')0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a9e_5b7d_4e2a_9c1b_2d3e4f5a6b7c.slice/cri-containerd-$id.scope"
seed crio-v1 "$(printf '\000')12:pids:/kubepods/besteffort/podc0ffee00-1234-4abc-8def-0123456789ab/crio-$id
0::/"
seed docker "$(printf '\000')0::/system.slice/docker-$id.scope"
for f in tests/fixtures/k8s/*.json; do
    { printf '\001'; cat "$f"; } >"$corpus/seed-$(basename "$f")"
done

status=0
"$fuzzer" "$corpus" -artifact_prefix="$artifacts/" -max_len=16384 -max_total_time="$seconds" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 || status=$?
if [[ $status -ne 0 ]]; then
    echo "fuzz-attribution: FAILED (exit $status); reproducer(s) in $artifacts/" >&2
    exit "$status"
fi
echo "fuzz-attribution: no crash in ${seconds}s"
