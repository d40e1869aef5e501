#!/usr/bin/env bash
# Bad settings as users make them, through the real binary: each stops loupe before it starts,
# with a non-zero exit and a message naming where the value came from (file:line, flag or
# LOUPE_* variable) and what was expected. Needs no root: nothing gets as far as the kernel.
set -uo pipefail
bin=${LOUPE_BIN:?}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0

# expect STATUS MESSAGE -- COMMAND...: COMMAND exits with STATUS and prints MESSAGE on stderr.
expect() {
    local want_status=$1 want_message=$2
    shift 3
    local out status
    out=$(timeout 20 "$@" 2>&1 >/dev/null)
    status=$?
    if [[ $status != "$want_status" ]]; then
        echo "FAIL: $* exited $status, expected $want_status; stderr: $out"
        failures=$((failures + 1))
    elif [[ $out != *"$want_message"* ]]; then
        echo "FAIL: $*: stderr lacks '$want_message'; it was: $out"
        failures=$((failures + 1))
    else
        echo "ok: $* -> $status: ${out%%$'\n'*}"
    fi
}

config() {  # config NAME TEXT: a config file, its path on stdout
    printf '%s' "$2" >"$dir/$1.yaml"
    echo "$dir/$1.yaml"
}

f=$(config ring "listen: 127.0.0.1:1
ring_buffer_bytes: 3000
")
expect 2 "loupe: invalid config: $f:2: invalid value for 'ring_buffer_bytes': expected a power of two from" \
    -- "$bin" agent --config "$f"

f=$(config series "max_series: 0
")
expect 2 "$f:1: invalid value for 'max_series': expected a whole number of at least 1, got '0'" \
    -- "$bin" agent --config "$f"

f=$(config am "alerting:
  alertmanager_url: \"not a url\"
")
expect 2 "$f:2: invalid value for 'alertmanager_url': expected an http:// or https:// URL" \
    -- "$bin" agent --config "$f"

f=$(config webhook "alerting:
  webhook_url: localhost:8080/hook
")
expect 2 "$f:2: invalid value for 'webhook_url': expected an http:// or https:// URL" \
    -- "$bin" agent --config "$f"

f=$(config rules "alerting:
  rules:
    - name: SlowCheckout
      signal: latency_p95
      above: 0.5
    - name: SlowCheckout
      signal: error_ratio
      above: 0.01
")
expect 2 "$f:6: a second rule named 'SlowCheckout' (the first is at line 3)" \
    -- "$bin" agent --config "$f"

f=$(config conversion "max_connections: many
")
expect 2 "$f:1: invalid value for 'max_connections': expected a whole number of at least 1, got 'many'" \
    -- "$bin" agent --config "$f"

expect 2 "$dir/missing.yaml: cannot read the config file: No such file or directory" \
    -- "$bin" agent --config "$dir/missing.yaml"

# Flags and LOUPE_* variables go through the same checks.
expect 105 "loupe agent: --ring-buffer-bytes: expected a power of two" \
    -- "$bin" agent --ring-buffer-bytes 3000
expect 105 "loupe agent: LOUPE_MAX_SERIES: expected a whole number of at least 1, got '0' (from the environment)" \
    -- env LOUPE_MAX_SERIES=0 "$bin" agent
expect 105 "loupe agent: LOUPE_K8S_PODS_URL: expected an http:// or https:// URL" \
    -- env LOUPE_K8S_PODS_URL=kubelet:10250 "$bin" agent
expect 2 "loupe: LOUPE_LOG_LEVEL: expected trace, debug, info, warn, error, critical or off, got 'loud'" \
    -- env LOUPE_LOG_LEVEL=loud "$bin" agent

# Typos: the near flag, command or variable.
expect 109 "loupe agent: unknown flag --lisen (did you mean --listen?)" \
    -- "$bin" agent --lisen 127.0.0.1:9464
expect 109 "loupe top: unknown flag --agnet (did you mean --agent?)" \
    -- "$bin" top --agnet http://127.0.0.1:9464
expect 106 "loupe: unknown command 'agnet' (did you mean agent?)" -- "$bin" agnet
expect 2 "loupe: LOUPE_LISEN is not a loupe setting (did you mean LOUPE_LISTEN?)" \
    -- env LOUPE_LISEN=x LOUPE_LOG_LEVEL=loud "$bin" agent

# An agent that is not there: its URL and the system's reason.
expect 1 "loupe top: cannot reach the agent at http://127.0.0.1:1: Connection refused" \
    -- "$bin" top --agent http://127.0.0.1:1 --once
expect 2 "loupe top: --agent: expected an http:// or https:// URL" \
    -- "$bin" top --agent 127.0.0.1:9464 --once

# The slow-operation log: its nested keys, durations with units, known protocols.
f=$(config slow "listen: 127.0.0.1:1
slow_log:
  thresholds:
    http: 10
")
expect 2 "loupe: invalid config: $f:4: invalid value for 'http' in 'slow_log.thresholds': expected a duration with its unit" \
    -- "$bin" agent --config "$f"
f=$(config slow_key "slow_log:
  rotate_files: 2
")
expect 2 "loupe: invalid config: $f:2: unknown key 'slow_log.rotate_files' (did you mean rotated_files?)" \
    -- "$bin" agent --config "$f"
expect 2 "slow-operation log: cannot open the file: /nonexistent-dir/slow.log: No such file or directory" \
    -- "$bin" agent --listen 127.0.0.1:0 --slow-log-file /nonexistent-dir/slow.log
expect 105 "loupe agent: --slow-threshold: unknown protocol 'htp' (did you mean http?)" \
    -- "$bin" agent --slow-threshold htp=1s
expect 105 "loupe agent: LOUPE_SLOW_THRESHOLD: expected a duration with its unit" \
    -- env LOUPE_SLOW_THRESHOLD=redis=5 "$bin" agent

if ((failures > 0)); then
    echo "FAIL: $failures case(s)"
    exit 1
fi
echo "all config and flag errors as expected"
