#!/usr/bin/env bash
# Every test of loupe, from a fresh Debian 12 machine, as root:
#   1. installs the dependencies (idempotent);
#   2. builds with warnings as errors and runs every ctest suite: unit, BPF (real kernel), CLI;
#   3. fuzzes the HTTP/1.x, Redis, PostgreSQL and MySQL parsers and the SQL summariser (libFuzzer,
#      clang) for LOUPE_FUZZ_SECONDS (default 30) each, and the attribution inputs (cgroup text,
#      PodList JSON), the ring-buffer records and Go function tables for as long;
#   4. rebuilds the unit tests with AddressSanitizer + UndefinedBehaviorSanitizer and runs them.
# LOUPE_REQUIRE_BPF=1 makes a BPF test that cannot load fail instead of skip (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

./tools/install-deps.sh

echo "== build (Release, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOUPE_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

echo "== tests"
(cd build && ctest --output-on-failure --timeout 600)

echo "== fuzz the HTTP/1.x, Redis, PostgreSQL and MySQL parsers, the SQL summariser, the attribution inputs, the ring-buffer records and Go function tables"
./tools/fuzz.sh http1 "${LOUPE_FUZZ_SECONDS:-30}"
./tools/fuzz.sh redis "${LOUPE_FUZZ_SECONDS:-30}"
./tools/fuzz.sh postgres "${LOUPE_FUZZ_SECONDS:-30}"
./tools/fuzz.sh mysql "${LOUPE_FUZZ_SECONDS:-30}"
./tools/fuzz.sh sql "${LOUPE_FUZZ_SECONDS:-30}"
./tools/fuzz.sh attribution "${LOUPE_FUZZ_SECONDS:-30}"
./tools/fuzz.sh records "${LOUPE_FUZZ_SECONDS:-30}"
./tools/fuzz.sh gopclntab "${LOUPE_FUZZ_SECONDS:-30}"

echo "== unit tests under ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLOUPE_WERROR=ON -DLOUPE_SANITIZE=ON \
      -DLOUPE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-asan -j"$jobs" --target loupe_unit_tests loupe_http1_tests loupe_redis_tests \
      loupe_redis_replay_tests loupe_postgres_tests loupe_mysql_tests loupe_mysql_classify_tests loupe_sql_tests
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -L unit --timeout 600)
