#!/usr/bin/env bash
# Installs everything loupe needs to build and test, from Debian 12's own packages. Idempotent:
# packages already present are left alone and apt is not touched at all when nothing is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang llvm libbpf-dev bpftool libelf-dev libdw-dev zlib1g-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcpp-httplib-dev
  libyaml-cpp-dev libncurses-dev libprotobuf-dev protobuf-compiler
  # Go TLS uprobes: capstone disassembles crypto/tls's functions to find every RET instruction
  libcapstone-dev
  # test and benchmark: real servers, real clients, real Prometheus tooling
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev python3 iproute2 procps
  nginx wrk nodejs curl prometheus prometheus-alertmanager tmux
  # e2e_otlp_https makes a self-signed certificate for its receiver
  openssl
  redis-server redis-tools python3-redis
  # a client with OpenSSL linked in statically (libssl.a): tests/e2e/test_tls_static.py
  libssl-dev
  postgresql-15 postgresql-contrib postgresql-client-15 python3-psycopg2
  # MySQL/MariaDB tests run a private mariadbd (own datadir, port and socket; --no-defaults)
  mariadb-server mariadb-client sysbench python3-pymysql
  # CPU profiling: go tool pprof reads the profiles loupe writes; Go programs are profiled
  golang-go linux-perf
  # the references of tools/bench/*_overhead.py (reference_*.bt): benchmarks only, loupe does not use it
  bpftrace
)

# npm validates the deploy files (tests/deploy). Node.js from NodeSource ships its own npm;
# Debian's nodejs needs Debian's npm package.
command -v npm >/dev/null || packages+=(npm)

if [[ $(id -u) != 0 ]]; then
  echo "install-deps: run as root (apt-get)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages that ship a service (mariadb-server, redis-server, nginx) must not start a system
# instance: the tests start their own. policy-rc.d refuses service starts during the install
# (a Docker base image already has one: left as it is).
own_policy=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  own_policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' >"$own_policy"
  chmod +x "$own_policy"
  trap 'rm -f "$own_policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
