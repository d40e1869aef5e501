#!/usr/bin/env bash
# Checks deploy/Dockerfile without a container engine (there is none on the build machine):
#   - the runtime stage installs the Debian package of every shared library the real binary needs:
#     `ldd $LOUPE_BIN`, each resolved library mapped to its package with `dpkg -S` (fails when one
#     is missing, warns about packages the binary does not need);
#   - the builder stage installs tools/install-deps.sh's "build" group (plus libssl-dev);
#   - the image copies the binary to its ENTRYPOINT, and ENTRYPOINT/CMD run `agent`.
# The binary must have been built on Debian 12, like the image's (the same package names).
#   LOUPE_BIN=build/loupe tests/deploy/check_dockerfile.sh
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dockerfile=${DOCKERFILE:-$repo/deploy/Dockerfile}
bin=${LOUPE_BIN:-$repo/build/loupe}
# In every Debian image by construction (Priority: required, and what apt itself runs on).
base_packages=(libc6)

failed=0
fail() { printf 'FAIL  %s\n' "$*"; failed=1; }

[[ -f $dockerfile ]] || { fail "no $dockerfile"; exit 1; }
[[ -x $bin ]] || { fail "no binary at $bin (build it, or set LOUPE_BIN)"; exit 1; }

# Stage N of the Dockerfile (1 = first FROM), continuation lines joined, comments dropped.
stage() {
    awk -v want="$1" '
        /^[[:space:]]*#/ { next }
        /^FROM[[:space:]]/ { n++ }
        n == want { print }' "$dockerfile" | sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba' -e '}'
}
stages=$(grep -c '^FROM[[:space:]]' "$dockerfile")
runtime=$(stage "$stages")
builder=$(stage 1)

# The packages of the `apt-get install` in a stage: the words after `install` that are not
# options, up to the end of that command.
apt_packages() {
    grep -E '^RUN .*apt-get install' | sed -E 's/.*apt-get install//; s/(&&|;|\|).*//' |
        tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u
}
mapfile -t runtime_pkgs < <(printf '%s\n' "$runtime" | apt_packages)
mapfile -t builder_pkgs < <(printf '%s\n' "$builder" | apt_packages)
((${#runtime_pkgs[@]} > 0)) || fail "no apt-get install in the runtime stage of $dockerfile"

# ldd -> library paths -> Debian packages. dpkg knows each file under the path its package ships
# it at; with merged /usr the loader reports /lib/... for /usr/lib/..., so each library is looked up
# as reported, resolved, and with and without /usr, all in one dpkg -S call (each call reads the
# whole file database).
ldd_out=$(ldd "$bin" 2>&1) || { fail "ldd $bin: $ldd_out"; exit 1; }
if grep -q 'not found' <<<"$ldd_out"; then
    fail "ldd $bin: unresolved libraries:"
    grep 'not found' <<<"$ldd_out" | sed 's/^/      /'
fi
mapfile -t libs < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
candidates_of() {
    local real
    real=$(readlink -f "$1")
    printf '%s\n' "$1" "$real" "${1#/usr}" "/usr$1" "${real#/usr}" "/usr$real"
}
declare -A owner=()    # path -> package
while IFS= read -r line; do
    # "libfoo1:amd64: /path" (or "a, b: /path" for a path two packages share): the first package.
    path=${line##*: }
    pkg=$(sed -E 's/: \/.*//; s/, .*//; s/:[a-z0-9_]+$//' <<<"$line")
    owner[$path]=$pkg
done < <(for lib in "${libs[@]}"; do candidates_of "$lib"; done | sort -u | xargs -r dpkg -S 2>/dev/null)

declare -A needed=()   # package -> the libraries that need it
for lib in "${libs[@]}"; do
    pkg=
    while IFS= read -r c; do
        [[ -n ${owner[$c]:-} ]] && { pkg=${owner[$c]}; break; }
    done < <(candidates_of "$lib")
    if [[ -n $pkg ]]; then
        needed[$pkg]+="${needed[$pkg]:+ }$(basename "$lib")"
    else
        fail "$lib (needed by $bin) belongs to no Debian package (built outside apt?)"
    fi
done

in_list() {  # in_list WORD LIST...
    local w=$1 x
    shift
    for x in "$@"; do [[ $x == "$w" ]] && return 0; done
    return 1
}

missing=0
for pkg in $(printf '%s\n' "${!needed[@]}" | sort); do
    if in_list "$pkg" "${runtime_pkgs[@]}"; then
        printf 'ok    %-28s %s\n' "$pkg" "${needed[$pkg]}"
    elif in_list "$pkg" "${base_packages[@]}"; then
        printf 'ok    %-28s %s (in every Debian image)\n' "$pkg" "${needed[$pkg]}"
    else
        fail "runtime stage does not install $pkg, needed for ${needed[$pkg]}"
        missing=$((missing + 1))
    fi
done
for pkg in "${runtime_pkgs[@]}"; do
    [[ -n ${needed[$pkg]:-} ]] || printf 'warn  runtime stage installs %s, which %s does not link\n' "$pkg" "$(basename "$bin")"
done

# The builder has what tools/install-deps.sh builds with: its packages between "# build" and the
# next comment, plus libssl-dev.
mapfile -t build_group < <(awk '/^[[:space:]]*# build/ { on = 1; next } /^[[:space:]]*#/ { on = 0 } on' \
    "$repo/tools/install-deps.sh" | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u)
((${#build_group[@]} > 0)) || fail "no \"# build\" package group found in tools/install-deps.sh"
for pkg in "${build_group[@]}"; do
    in_list "$pkg" "${builder_pkgs[@]}" || fail "builder stage does not install $pkg (tools/install-deps.sh builds with it)"
done
in_list libssl-dev "${builder_pkgs[@]}" || fail "builder stage does not install libssl-dev (cpp-httplib's OpenSSL headers)"

# What the image runs: the copied binary, as the agent.
entrypoint=$(grep -E '^ENTRYPOINT' <<<"$runtime" | tail -1)
cmd=$(grep -E '^CMD' <<<"$runtime" | tail -1)
exe=$(sed -nE 's/^ENTRYPOINT \[ *"([^"]+)".*/\1/p' <<<"$entrypoint")
[[ -n $exe ]] || fail "runtime stage needs an exec-form ENTRYPOINT [\"/path/to/loupe\"]"
grep -qE "^COPY --from=[a-z]+ [^ ]*/loupe $exe\$" <<<"$runtime" ||
    fail "runtime stage does not COPY the built loupe to the ENTRYPOINT $exe"
grep -q '"agent"' <<<"$entrypoint $cmd" || fail "ENTRYPOINT/CMD do not run the agent subcommand"
grep -q '0\.0\.0\.0:9464' <<<"$entrypoint $cmd" || fail "CMD must listen on 0.0.0.0:9464 (the agent's default is loopback)"
[[ -n $exe ]] && printf 'ok    image runs: %s %s\n' "${entrypoint#ENTRYPOINT }" "${cmd#CMD }"

printf 'dockerfile: %d libraries in %d packages needed, %d runtime packages listed, %d missing\n' \
    "$(grep -c '=> /\|^[[:space:]]*/' <<<"$ldd_out")" "${#needed[@]}" "${#runtime_pkgs[@]}" "$missing"
exit "$failed"
