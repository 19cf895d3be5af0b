#!/bin/bash
# Creates the Python venv that the AI tests use (t/ai/client.py drives the official openai and
# anthropic SDKs through it), from t/ai/requirements.txt. Idempotent: the venv is rebuilt only
# when requirements.txt changes (its sha256 is kept in the venv), as bench/run.sh does for its own.
#
# Usage: tools/install-python.sh [VENV]      (default build/pyenv; prints nothing when up to date)
# Then:  build/pyenv/bin/python t/ai/client.py ...
set -euo pipefail

top="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$top/build/pyenv}"
req="$top/t/ai/requirements.txt"

die() { echo "install-python: $*" >&2; exit 1; }

[ -r "$req" ] || die "$req is missing"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi

rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    [ "$(id -u)" -eq 0 ] || die "python3 -m venv failed; need root to apt-get install python3-venv"
    command -v apt-get >/dev/null 2>&1 || die "python3 -m venv failed and there is no apt-get"
    echo "install-python: installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
        || die "apt-get install python3-venv failed"
    python3 -m venv "$venv" || die "python3 -m venv failed"
fi
echo "install-python: installing $(grep -v '^#' "$req" | xargs) into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req" || die "pip install failed"
echo "$want" > "$stamp"
