# Sourced by the shell test scripts: `step NAME COMMAND...` runs a command, prints "ok"/"FAIL" with
# its output indented under it, and counts the result in $passed / $failed.
passed=0
failed=0
step() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s\n' "$name"
    fi
    printf '%s\n' "$out" | sed '/^[[:space:]]*$/d; s/^/      /'
}
