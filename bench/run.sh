#!/bin/bash
# `make bench`: installs what the benchmark needs, then runs bench/bench.py.
#
# Usage: bench/run.sh NGINX MODULE_SO GPT_AUTH_CLI
# Settings (environment): see bench/README.md (BENCH_QUICK=1 for a quick run).
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 NGINX MODULE_SO GPT_AUTH_CLI" >&2
    exit 2
fi
nginx="$1"
module="$2"
cli="$3"
bench="$(cd "$(dirname "$0")" && pwd)"
work="$bench/work"
venv="$work/venv"

die() { echo "bench: $*" >&2; exit 1; }

for f in "$nginx" "$cli"; do
    [ -x "$f" ] || die "$f is missing or not executable (run make build)"
done
[ -r "$module" ] || die "$module is missing (run make build)"
"$nginx" -V 2>&1 | grep -q -- '--with-http_secure_link_module' \
    || die "$nginx was built without the secure_link module (needed for the C baseline)"
"$nginx" -V 2>&1 | grep -q -- '--with-http_auth_request_module' \
    || die "$nginx was built without the auth_request module"

# Debian packages: wrk (load), valgrind (callgrind, callgrind_control), redis-server (the
# shared zone), python3-venv.
apt_updated=""
apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install $* (or install it yourself)"
    if [ -z "$apt_updated" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
        || die "apt-get install $* failed"
}
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || missing+=(valgrind)
command -v taskset >/dev/null || missing+=(util-linux)
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

# The auth service's venv (Flask + gunicorn from PyPI), rebuilt when requirements.txt changes.
mkdir -p "$work"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$bench/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/gunicorn" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        echo "bench: installing python3-venv"
        apt_install python3-venv
        python3 -m venv "$venv" || die "python3 -m venv failed"
    fi
    echo "bench: installing $(grep -v '^#' "$bench/requirements.txt" | xargs) into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$bench/requirements.txt" \
        || die "pip install failed"
    echo "$want" > "$stamp"
fi

exec python3 "$bench/bench.py" --nginx "$nginx" --module "$module" --cli "$cli" --venv "$venv"
