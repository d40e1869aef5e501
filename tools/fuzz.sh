#!/usr/bin/env bash
# Fuzzes one of loupe's parsers with libFuzzer + ASan + UBSan.
#   tools/fuzz.sh http1 [SECONDS]         the HTTP/1.x parser and matcher
#   tools/fuzz.sh redis [SECONDS]         the Redis (RESP2/RESP3/inline) parser and matcher
#   tools/fuzz.sh postgres [SECONDS]      the PostgreSQL (protocol 3.0) parser and matcher
#   tools/fuzz.sh mysql [SECONDS]         the MySQL/MariaDB parser and matcher
#   tools/fuzz.sh sql [SECONDS]           the SQL statement summariser (no literal in any output)
#   tools/fuzz.sh attribution [SECONDS]   /proc/PID/cgroup text and PodList JSON
#   tools/fuzz.sh records [SECONDS]       ring-buffer records: batches, events, the tracker
#   tools/fuzz.sh gopclntab [SECONDS]     Go function tables (.gopclntab) of executables
# Builds build-fuzz/ with clang (the fuzzer target only), seeds a corpus, runs for SECONDS (default
# 60). Exits non-zero on a crash, leak or sanitizer report; the crashing input is left in
# build-fuzz/<target>-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: tools/fuzz.sh http1|redis|postgres|mysql|sql|attribution|records|gopclntab [SECONDS]}"
seconds="${2:-60}"
jobs="${JOBS:-2}"

corpus=build-fuzz/$target-corpus
artifacts=build-fuzz/$target-artifacts
mkdir -p "$corpus" "$artifacts"
seed() { printf "$2" >"$corpus/seed-$1"; }

case "$target" in
http1)
    max_len=4096
    # The fuzzer's input format (see tests/fuzz/http1_fuzz.cpp): role byte, then records
    # "<ctrl><data>" separated by 0xFE; ctrl bit 0 = egress, bits 1-2 = capture mode, 0xFF = close.
    seed keepalive '\001\000GET /a?q=1 HTTP/1.1\r\nHost: x\r\n\r\n\376\001HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\376\000GET /b HTTP/1.1\r\n\r\n\376\001HTTP/1.1 204 No Content\r\n\r\n'
    seed pipelined '\001\000GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\376\001HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nHTTP/1.1 500 E\r\n\r\n\377'
    seed chunked '\002\001POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n\376\000HTTP/1.1 100 Continue\r\n\r\n\376\0015\r\nhello\r\n0\r\n\r\n\376\000HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n\376\2420\r\n\r\n\376\000\r\n0\r\n\r\n'
    seed sendfile '\000\000GET /f HTTP/1.1\r\n\r\n\376\001HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n\376\045\376\005\376\000GET http://h/p#x HTTP/1.0\r\n\r\n\376\001HTTP/1.0 200 OK\r\n\r\nbody\376\377'
    seed split '\001\000GET /sp\376\000lit HTTP/1.1\r\nHo\376\000st: x\r\nContent-Length: 2\r\n\r\n\376\000hi\376\033X-Long: aaaaaaaa\376\001HTTP/1.1 431 Too Large\r\n\r\n'
    ;;
redis)
    max_len=4096
    # The fuzzer's input format (see tests/fuzz/redis_fuzz.cpp): side byte, then records
    # "<ctrl><data>" separated by 0xFE; ctrl bit 0 = egress, bits 1-2 = capture mode (0: 64-byte
    # head, 1: bytes missing in the middle, 2: nothing captured, 3: whole), 0xFF = close.
    seed server '\001\006*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\376\007+OK\r\n$1\r\nv\r\n\376\006PING\r\nexists a b\r\n\376\007+PONG\r\n:1\r\n\377'
    seed multi '\002\007*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n*1\r\n$4\r\nEXEC\r\n\376\006+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-ERR not an integer\r\n*2\r\n$-1\r\n$1\r\nx\r\n\376\007*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n\376\006-ERR DB index is out of range\r\n'
    seed resp3 '\001\006*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n\376\007%%1\r\n$5\r\nproto\r\n:3\r\n\376\006*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n\376\007>3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n\376\006*1\r\n$4\r\nPING\r\n\376\007|1\r\n+a\r\n:1\r\n_\r\n'
    seed pubsub2 '\002\007*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nn*\r\n\376\006*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$1\r\nn\r\n$1\r\nx\r\n\376\007*1\r\n$11\r\nUNSUBSCRIBE\r\n\376\006*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n'
    seed bigvalue '\002\003*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\nxxxx\376\375xxxx\376\373xx\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\376\000+OK\r\n$100000\r\nyy\376\374\376\002yy\r\n'
    ;;
postgres)
    max_len=4096
    # Same record format as redis (tests/fuzz/postgres_fuzz.cpp). Written by python: binary.
    python3 - "$corpus" <<'PY'
import struct, sys
def m(t, body=b""): return t + struct.pack(">I", len(body) + 4) + body
def c(s): return s + b"\0"
startup = struct.pack(">II", 0, 196608) + c(b"user") + c(b"u") + c(b"database") + c(b"d") + b"\0"
startup = struct.pack(">I", len(startup)) + startup[4:]
reply = m(b"R", struct.pack(">I", 0)) + m(b"S", c(b"a") + c(b"b")) + m(b"K", bytes(8)) + m(b"Z", b"I")
err = m(b"E", b"S" + c(b"ERROR") + b"C" + c(b"23505") + b"\0")
ext = m(b"P", c(b"s1") + c(b"SELECT $1") + bytes(2)) + m(b"B", c(b"") + c(b"s1") + bytes(6)) + m(b"D", b"P\0") + m(b"E", c(b"") + bytes(4)) + m(b"S")
ext_reply = m(b"1") + m(b"2") + m(b"n") + m(b"D", bytes(2)) + m(b"C", c(b"SELECT 1")) + m(b"Z", b"I")
seeds = {
    "simple": b"\x02" + b"\x07" + startup + b"\xfe\x06" + reply + b"\xfe\x07" + m(b"Q", c(b"BEGIN; SELECT 1; COMMIT")) + b"\xfe\x06" + m(b"C", c(b"BEGIN")) + m(b"C", c(b"SELECT 1")) + err + m(b"Z", b"E") + b"\xff",
    "extended": b"\x01" + b"\x06" + startup + b"\xfe\x07" + reply + b"\xfe\x06" + ext + ext + b"\xfe\x07" + ext_reply + ext_reply,
    "ssl": b"\x02" + b"\x07" + struct.pack(">II", 8, 80877103) + b"\xfe\x06N" + b"\xfe\x07" + startup + b"\xfe\x06" + reply,
    "copy": b"\x02\x07" + startup + b"\xfe\x06" + reply + b"\xfe\x07" + m(b"Q", c(b"COPY t FROM STDIN")) + b"\xfe\x06" + m(b"G", bytes(3)) + b"\xfe\x07" + m(b"d", b"1\n") + m(b"c") + b"\xfe\x06" + m(b"C", c(b"COPY 1")) + m(b"Z", b"I"),
    "midstream": b"\x00\x06" + m(b"B", c(b"") + c(b"P0_1") + bytes(6)) + m(b"E", c(b"") + bytes(4)) + m(b"S") + b"\xfe\x07" + m(b"2") + m(b"C", c(b"UPDATE 1")) + m(b"Z", b"T") + b"\xfe\x06" + m(b"Q", c(b"COMMIT")) + b"\xfe\x07" + m(b"C", c(b"COMMIT")) + m(b"Z", b"I"),
    "tls": b"\x01\x07" + struct.pack(">II", 8, 80877103) + b"\xfe\x06S\xfe\x07\x16\x03\x01\x00\x10",
    "bigrow": b"\x02\x07" + startup + b"\xfe\x06" + reply + b"\xfe\x07" + m(b"Q", c(b"SELECT x")) + b"\xfe\x0b" + b"D" + struct.pack(">I", 4 + 2 + 4 + 4100) + b"\0\1" + struct.pack(">I", 4100) + b"xx" + b"\xfe\x06" + m(b"C", c(b"SELECT 1")) + m(b"Z", b"I"),
}
for name, data in seeds.items():
    open(f"{sys.argv[1]}/seed-{name}", "wb").write(data)
PY
    ;;
mysql)
    max_len=4096
    # The fuzzer's input format (see tests/fuzz/mysql_fuzz.cpp): side byte, then records
    # "<ctrl><data>" separated by 0xFD; ctrl bit 0 = egress, bits 1-2 = capture mode (0: 64-byte
    # head, 1: bytes missing in the middle, 2: nothing captured, 3: whole), 0xFF = close.
    python3 - "$corpus" <<'PY'
import struct, sys
def pkt(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload
def rec(ctrl, data):
    return bytes([ctrl]) + data + b"\xfd"
greeting = pkt(0, b"\x0a5.5.5-10.11.6-MariaDB\x00" + b"\x07\x00\x00\x00abcdefgh\x00\x00\xa2\x2d\x02\x00\x2f\x01" + bytes(11) + b"ijklmnopqrst\x00")
response = pkt(1, struct.pack("<II", 0x012aa208, 1 << 24) + b"\x2d" + bytes(23) + b"sbtest\x00\x00sbtest\x00")
ok = lambda seq, status=2, h=0: pkt(seq, bytes([h, 0, 0]) + struct.pack("<HH", status, 0))
eof = lambda seq, status=2: pkt(seq, b"\xfe\x00\x00" + struct.pack("<H", status))
coldef = lambda seq: pkt(seq, b"\x03def\x00\x00\x00\x01c\x01c\x0c" + bytes(13))
row = lambda seq: pkt(seq, b"\x03abc")
hs = rec(7, greeting) + rec(6, response) + rec(7, ok(2))
query = rec(6, pkt(0, b"\x03SELECT c FROM t WHERE id=1")) + rec(7, pkt(1, b"\x01") + coldef(2) + row(3) + ok(4, 2, 0xfe))
prep = (rec(6, pkt(0, b"\x16UPDATE t SET k=k+1 WHERE id=?") + pkt(0, b"\x17\xff\xff\xff\xff\x00\x01\x00\x00\x00"))
        + rec(7, pkt(1, b"\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00") + pkt(2, b"\x03def") + ok(1))
        + rec(6, pkt(0, b"\x19\x01\x00\x00\x00")))
multi = lambda c, r: rec(c, pkt(0, b"\x03SELECT 1; SELECT 2")) + rec(r, pkt(1, b"\x01") + coldef(2) + eof(3, 10) + row(4) + eof(5, 10) + pkt(6, b"\x01") + coldef(7) + eof(8) + row(9) + eof(10))
seeds = {
    "session": b"\x01" + hs + query + prep + rec(0xff, b""),
    "client": b"\x02" + rec(6, greeting) + rec(7, response) + rec(6, ok(2)) + multi(7, 6),
    "multi": b"\x01" + hs + multi(6, 7),
    "errors": b"\x01" + hs + rec(6, pkt(0, b"\x03INSERT INTO d VALUES (1)")) + rec(7, pkt(1, b"\xff\x26\x04#23000Duplicate")),
    "midstream": b"\x00" + rec(1, pkt(0, b"\x03SELECT 1")) + rec(0, pkt(1, b"\x01") + coldef(2) + eof(3) + row(4) + eof(5)),
    "ssl": b"\x01" + rec(7, greeting) + rec(6, pkt(1, struct.pack("<II", 0x0aa08, 1 << 24) + b"\x2d" + bytes(23))) + rec(6, b"\x16\x03\x01\x00\x10" + bytes(16)),
    "big": b"\x01" + hs + rec(6, pkt(0, b"\x03SELECT b FROM big")) + rec(0x7b, pkt(1, b"\x01") + coldef(2) + b"\xff\xff\xff\x03" + b"x" * 40),
}
for name, data in seeds.items():
    open(f"{sys.argv[1]}/seed-{name}", "wb").write(data)
PY
    ;;
sql)
    max_len=4096
    # The fuzzer's input format (see tests/fuzz/sql_fuzz.cpp): byte 0 = dialect (bits 0-1: any,
    # postgres, mysql) and mode (bit 2: secrets spliced in where `~` is), then the SQL text.
    seed select '\000SELECT a.x, count(*) FROM s.t a JOIN "U" b ON a.id = b.id WHERE a.v IN (1, 2.5e3, $1) GROUP BY 1'
    seed with '\001WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c) INSERT INTO t SELECT * FROM c; COMMIT'
    seed quotes '\001SELECT E'"'"'\\'"'"'x'"'"', $q$ ; $q$, /* /* */ */ U&"a" FROM t -- c\n; DELETE FROM u'
    seed mysql '\002INSERT IGNORE INTO `db`.`t` VALUES ("a\\"b", '"'"'c'"'"''"'"''"'"', 0x1F) # x\n ON DUPLICATE KEY UPDATE v = 1'
    seed splice '\004UPDATE t SET a = ~, b = ~ WHERE c IN (~, ~, ~) AND d = ~; SELECT ~ FROM u'
    seed splice-my '\006SELECT * FROM t WHERE a = ~ AND b = ~ LIMIT ~'
    ;;
attribution)
    max_len=16384
    # First byte even: /proc/PID/cgroup text; odd: a PodList (tests/fuzz/attribution_fuzz.cpp).
    id=$(printf 'a%.0s' {1..64})
    seed containerd "\\0000::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a9e_5b7d_4e2a_9c1b_2d3e4f5a6b7c.slice/cri-containerd-$id.scope\n"
    seed crio-v1 "\\00012:pids:/kubepods/besteffort/podc0ffee00-1234-4abc-8def-0123456789ab/crio-$id\n0::/\n"
    seed docker "\\0000::/system.slice/docker-$id.scope\n"
    for f in tests/fixtures/k8s/*.json; do
        { printf '\001'; cat "$f"; } >"$corpus/seed-$(basename "$f")"
    done
    ;;
records)
    max_len=8192
    # Ring records as bpf/loupe_abi.h lays them out: batches of open, data, chunk and close events
    # (a keep-alive exchange, a sendfile joined to its headers, a pipelined read whose second
    # request came in a chunk), and one event alone.
    python3 - "$corpus" <<'PY'
import struct, sys
def header(kind, ts, fd=5, gen=100, protocol=1):
    return struct.pack("<HBBIQIiQ", kind, protocol, 0, 42, ts, 42, fd, gen)
def open_ev(role, fd=5):
    addr = bytes([127, 0, 0, 1]) + bytes(12)
    return header(1, 100, fd) + struct.pack("<BBHHH", role, 2, 8080, 40000, 0) + addr + addr + b"nginx".ljust(16, b"\0")
def data_ev(ts, egress, head, length=None, spread=0, fd=5, captured=None):
    length = len(head) if length is None else length
    captured = len(head) if captured is None else captured
    return (header(2, ts, fd) + struct.pack("<QIBBHHHI", length, spread, egress, 1, len(head), 0, 0, captured)
            + bytes(16) + head)
def chunk_ev(ts, offset, data, fd=5):
    return header(5, ts, fd) + struct.pack("<IHH", offset, len(data), 0) + data
def close_ev(ts, fd=5):
    return header(3, ts, fd)
def batch(*events):
    data = b""
    for e in events:
        data += struct.pack("<II", len(e), 0) + e
        data += bytes(-len(data) % 8)
    return struct.pack("<HHI", 4, 0, len(data)) + data
PIPELINED = b"GET /a HTTP/1.1\r\nCookie: " + b"c" * 1100 + b"\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
seeds = {
    "keepalive": batch(open_ev(1), data_ev(1000, 0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
                       data_ev(2000, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
                       data_ev(3000, 0, b"GET /b HTTP/1.1\r\n\r\n"), close_ev(4000)),
    "sendfile": batch(open_ev(1), data_ev(1000, 0, b"GET /f HTTP/1.1\r\n\r\n"),
                      data_ev(9000, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n", 338, 4000)),
    "client": batch(open_ev(2, 6), data_ev(1000, 1, b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", fd=6),
                    data_ev(5000, 0, b"HTTP/1.1 503 X\r\nContent-Length: 0\r\n\r\n", fd=6), close_ev(6000, 6)),
    "alone": close_ev(7000),
    "chunks": batch(open_ev(1), data_ev(1000, 0, PIPELINED[:1024], len(PIPELINED), captured=len(PIPELINED)),
                    chunk_ev(1000, 1024, PIPELINED[1024:]),
                    data_ev(2000, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 2)),
}
for name, record in seeds.items():
    open(f"{sys.argv[1]}/seed-{name}", "wb").write(record)
PY
    ;;
gopclntab)
    max_len=4096
    # Small tables in each layout the reader knows (see userspace/elf/go_functions.cpp): Go 1.18
    # and 1.20 (32-bit entries from textStart), 1.16 (pointer entries, own name table), 1.2.
    python3 - "$corpus" <<'PY'
import struct, sys
FUNCS = [("runtime.main", 0x0), ("main.main", 0x40), ("crypto/tls.(*Conn).Read", 0x90)]
END = 0x100
def names():
    blob, offsets = b"", []
    for name, _ in FUNCS:
        offsets.append(len(blob))
        blob += name.encode() + b"\0"
    return blob, offsets
def table118(magic):
    blob, offsets = names()
    header = 8 + 8 * 8
    pcln = header + len(blob)
    out = struct.pack("<IHBBQQQQQQQQ", magic, 0, 1, 8, len(FUNCS), 0, 0x401000, header, 0, 0, 0, pcln)
    out += blob
    funcs = 8 * (len(FUNCS) + 1)
    for i, (_, entry) in enumerate(FUNCS):
        out += struct.pack("<II", entry, funcs + 8 * i)
    out += struct.pack("<II", END, 0)
    for i, (_, entry) in enumerate(FUNCS):
        out += struct.pack("<II", entry, offsets[i])
    return out
def table116():
    blob, offsets = names()
    header = 8 + 7 * 8
    pcln = header + len(blob)
    out = struct.pack("<IHBBQQQQQQQ", 0xfffffffa, 0, 1, 8, len(FUNCS), 0, header, 0, 0, 0, pcln)
    out += blob
    funcs = 16 * (len(FUNCS) + 1)
    for i, (_, entry) in enumerate(FUNCS):
        out += struct.pack("<QQ", 0x401000 + entry, funcs + 16 * i)
    out += struct.pack("<QQ", 0x401000 + END, 0)
    for i, (_, entry) in enumerate(FUNCS):
        out += struct.pack("<QiI", 0x401000 + entry, offsets[i], 0)
    return out
for name, table in {"go118": table118(0xfffffff0), "go120": table118(0xfffffff1), "go116": table116()}.items():
    open(f"{sys.argv[1]}/seed-{name}", "wb").write(table)
PY
    ;;
*)
    echo "fuzz: unknown target '$target' (http1, redis, postgres, mysql, sql, attribution, records or gopclntab)" >&2
    exit 2
    ;;
esac

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOUPE_BUILD_FUZZERS=ON -DLOUPE_BUILD_TESTS=OFF \
      -DLOUPE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target "loupe_${target}_fuzz"
fuzzer=$(find build-fuzz -type f -name "loupe_${target}_fuzz" -perm -u+x | head -n 1)
[[ -n "$fuzzer" ]] || { echo "loupe_${target}_fuzz not built" >&2; exit 1; }

status=0
"$fuzzer" "$corpus" -artifact_prefix="$artifacts/" -max_len="$max_len" -max_total_time="$seconds" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 || status=$?
if [[ $status -ne 0 ]]; then
    echo "fuzz $target: FAILED (exit $status); reproducer(s) in $artifacts/" >&2
    exit "$status"
fi
echo "fuzz $target: no crash in ${seconds}s"
