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
import json, sys
doc = json.loads(sys.argv[1])
ids = [f["id"] for f in doc["features"]]
want = ["bpf", "btf", "tracefs", "ringbuf", "tracepoint", "raw_tp", "tp_btf", "uprobe", "kprobe",
        "fentry", "perf_event", "cgroup_v2", "sched_info"]
assert sorted(ids) == sorted(want), ids
assert doc["usable"] is True, doc
for f in doc["features"]:
    assert isinstance(f["available"], bool) and f["detail"] and f["impact_if_missing"], f
print("doctor --json ok:", ", ".join(f'{f["id"]}={"yes" if f["available"] else "no"}' for f in doc["features"]))
PY
text=$("$bin" doctor)
grep -q "loupe can run on this kernel" <<<"$text"
# JSON logs stay one valid object per line even for libbpf's messages.
"$bin" --log-format json --log-level debug doctor >/dev/null 2>/tmp/loupe-doctor-log.$$
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1]) if l.strip()]' /tmp/loupe-doctor-log.$$
rm -f /tmp/loupe-doctor-log.$$
# A bad flag is a clear usage error, not a crash.
if "$bin" doctor --no-such-flag 2>/dev/null; then echo "FAIL: bad flag accepted"; exit 1; fi
echo "cli doctor: ok"
