#!/usr/bin/env bash
# Fuzzes the HTTP/1.x parser with libFuzzer + ASan + UBSan.
#   tools/fuzz-http1.sh [SECONDS]   (default 60)
# Builds build-fuzz/ with clang (the fuzzer target only), seeds a corpus, runs for SECONDS with
# inputs up to 4 KB. Exits non-zero on a crash, leak or sanitizer report; the crashing input is
# left in build-fuzz/http1-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
jobs="${JOBS:-2}"

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOUPE_BUILD_FUZZERS=ON -DLOUPE_BUILD_TESTS=OFF \
      -DLOUPE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target loupe_http1_fuzz

fuzzer=$(find build-fuzz -type f -name loupe_http1_fuzz -perm -u+x | head -n 1)
[[ -n "$fuzzer" ]] || { echo "loupe_http1_fuzz not built" >&2; exit 1; }

corpus=build-fuzz/http1-corpus
artifacts=build-fuzz/http1-artifacts
mkdir -p "$corpus" "$artifacts"
# Seeds in the fuzzer's input format (see tests/fuzz/http1_fuzz.cpp): role byte, then records
# "<ctrl><data>" separated by 0xFE; ctrl bit 0 = egress, bits 1-2 = capture mode, 0xFF = close.
seed() { printf "$2" >"$corpus/seed-$1"; }
seed keepalive '\001\000GET /a?q=1 HTTP/1.1\r\nHost: x\r\n\r\n\376\001HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\376\000GET /b HTTP/1.1\r\n\r\n\376\001HTTP/1.1 204 No Content\r\n\r\n'
seed pipelined '\001\000GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\376\001HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nHTTP/1.1 500 E\r\n\r\n\377'
seed chunked '\002\001POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n\376\000HTTP/1.1 100 Continue\r\n\r\n\376\0015\r\nhello\r\n0\r\n\r\n\376\000HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n\376\2420\r\n\r\n\376\000\r\n0\r\n\r\n'
seed sendfile '\000\000GET /f HTTP/1.1\r\n\r\n\376\001HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n\376\045\376\005\376\000GET http://h/p#x HTTP/1.0\r\n\r\n\376\001HTTP/1.0 200 OK\r\n\r\nbody\376\377'
seed split '\001\000GET /sp\376\000lit HTTP/1.1\r\nHo\376\000st: x\r\nContent-Length: 2\r\n\r\n\376\000hi\376\033X-Long: aaaaaaaa\376\001HTTP/1.1 431 Too Large\r\n\r\n'

status=0
"$fuzzer" "$corpus" -artifact_prefix="$artifacts/" -max_len=4096 -max_total_time="$seconds" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 || status=$?
if [[ $status -ne 0 ]]; then
    echo "fuzz-http1: FAILED (exit $status); reproducer(s) in $artifacts/" >&2
    exit "$status"
fi
echo "fuzz-http1: no crash in ${seconds}s"
