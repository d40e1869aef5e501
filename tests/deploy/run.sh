#!/usr/bin/env bash
# Checks everything under deploy/ that ships to Kubernetes, offline (no cluster, no Docker engine):
#   1. npm ci in tests/deploy when node_modules is missing or older than package-lock.json;
#   2. validate_manifests.mjs: every object of deploy/kubernetes/ against the Kubernetes and
#      prometheus-operator schemas, plus the facts the agent depends on;
#   3. check_scrape_config.mjs: deploy/prometheus/kubernetes-scrape.yml with promtool;
#   4. check_dockerfile.sh: deploy/Dockerfile's runtime packages against `ldd $LOUPE_BIN`.
# Exit status 1 when any step fails.
#   LOUPE_BIN=build/loupe tests/deploy/run.sh      (PROMTOOL=/path/to/promtool to use another one)
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export LOUPE_BIN=${LOUPE_BIN:-$repo/build/loupe}

source "$here/../lib/steps.sh"

# npm ci wipes and reinstalls node_modules, so run it only when the lock file changed since the
# last successful install (the stamp is written after it) or when there is none.
install_node_modules() {
    local stamp=$here/node_modules/.loupe-installed
    if [[ -f $stamp && ! $here/package-lock.json -nt $stamp ]]; then
        echo "node_modules up to date with package-lock.json"
        return 0
    fi
    command -v npm >/dev/null || { echo "npm not found (Debian: apt-get install npm)"; return 1; }
    (cd "$here" && npm ci --no-audit --no-fund) && touch "$stamp"
}

step "npm ci (tests/deploy)" install_node_modules
if ((failed == 0)); then
    step "Kubernetes manifests (deploy/kubernetes)" node "$here/validate_manifests.mjs"
    step "Prometheus scrape config (deploy/prometheus/kubernetes-scrape.yml)" \
        node "$here/check_scrape_config.mjs" "$repo/deploy/prometheus/kubernetes-scrape.yml"
else
    # Without the packages neither Node check can run: count them as failed, not skipped.
    failed=$((failed + 2))
    printf 'FAIL  Kubernetes manifests, Prometheus scrape config: no node_modules\n'
fi
step "Dockerfile runtime packages vs ldd $LOUPE_BIN" "$here/check_dockerfile.sh"

echo "deploy: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
