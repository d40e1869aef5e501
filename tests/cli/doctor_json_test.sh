#!/usr/bin/env bash
# `loupe doctor --json` as a user runs it: exit status 0 on a usable kernel, valid JSON, every
# feature present, and the text form agrees with the JSON form.
set -euo pipefail
bin=${LOUPE_BIN:?}
if [[ $(id -u) != 0 ]]; then
    [[ ${LOUPE_REQUIRE_BPF:-0} == 1 ]] && { echo "FAIL: LOUPE_REQUIRE_BPF=1 but not root"; exit 1; }
    echo "SKIP: needs root"; exit 0
fi
json=$("$bin" doctor --json)
python3 - "$json" <<'PY'
import json, os, sys
doc = json.loads(sys.argv[1])
ids = [f["id"] for f in doc["features"]]
want = ["bpf", "btf", "tracefs", "ringbuf", "tracepoint", "raw_tp", "tp_btf", "sock_send_length",
        "sock_recv_length", "inet_sock_set_state", "uprobe", "kprobe", "fentry", "perf_event", "cgroup_v2",
        "sched_info"]
assert sorted(ids) == sorted(want), ids
assert doc["usable"] is True, doc
# The verdict accounts for what the capture uses: complete exactly when none of those is missing.
missing = [f["id"] for f in doc["features"] if f["degrades_capture"] and not f["available"]]
assert doc["degraded_by"] == missing and doc["complete"] == (not missing), doc
for hook in ("sock_send_length", "sock_recv_length", "inet_sock_set_state"):
    f = next(f for f in doc["features"] if f["id"] == hook)
    assert f["degrades_capture"] and not f["essential"], f
    listed = any(os.path.exists(f"{tracefs}/events/sock/{hook}")
                 for tracefs in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))
    assert f["available"] is listed, f
for f in doc["features"]:
    assert isinstance(f["available"], bool) and f["detail"] and f["impact_if_missing"], f
print("doctor --json ok:", ", ".join(f'{f["id"]}={"yes" if f["available"] else "no"}' for f in doc["features"]))
PY
text=$("$bin" doctor)
# The text verdict says the same as the JSON one.
if [[ $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["complete"])' "$json") == True ]]; then
    grep -q "loupe can run on this kernel, with everything it captures" <<<"$text"
else
    grep -q "loupe can run on this kernel, but captures less" <<<"$text"
fi
# JSON logs stay one valid object per line even for libbpf's messages.
"$bin" --log-format json --log-level debug doctor >/dev/null 2>/tmp/loupe-doctor-log.$$
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1]) if l.strip()]' /tmp/loupe-doctor-log.$$
rm -f /tmp/loupe-doctor-log.$$
# A bad flag is a clear usage error, not a crash.
if "$bin" doctor --no-such-flag 2>/dev/null; then echo "FAIL: bad flag accepted"; exit 1; fi
echo "cli doctor: ok"
