#!/usr/bin/env bash
# Checks deploy/prometheus with promtool: the rule file's syntax and PromQL, its unit tests
# (loupe-rules.test.yml), and the Prometheus config that loads it. Exit status 1 on any failure.
#   tests/prometheus/check_rules.sh            (PROMTOOL=/path/to/promtool to use another one)
set -u

here=$(cd "$(dirname "$0")" && pwd)
dir=$(cd "$here/../../deploy/prometheus" && pwd)
promtool=${PROMTOOL:-$(command -v promtool || echo /usr/bin/promtool)}

if [[ ! -x $promtool ]]; then
    echo "promtool not found (apt-get install prometheus, or set PROMTOOL)" >&2
    echo "prometheus rules: 0 passed, 1 failed"
    exit 1
fi

source "$here/../lib/steps.sh"
cd "$dir"  # the rule files name each other relative to it

step "promtool check rules loupe-rules.yml" "$promtool" check rules loupe-rules.yml
step "promtool test rules loupe-rules.test.yml" "$promtool" test rules loupe-rules.test.yml
step "promtool check config prometheus.yml" "$promtool" check config prometheus.yml

records=$(grep -cE '^[[:space:]]*- record:' "$dir/loupe-rules.yml")
alerts=$(grep -cE '^[[:space:]]*- alert:' "$dir/loupe-rules.yml")
groups=$(grep -cE '^  - name:' "$dir/loupe-rules.test.yml")
cases=$(grep -cE '^[[:space:]]*- (expr|eval_time):' "$dir/loupe-rules.test.yml")
echo "rules: $records recording, $alerts alerting; unit tests: $groups test groups, $cases checks"
echo "prometheus rules: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
