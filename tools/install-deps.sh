#!/bin/sh
# Installs what building and testing gpt_auth needs on Debian/Ubuntu, skipping what is there.
# Usage: tools/install-deps.sh [build|test|all]   (default: build)
set -eu

want="${1:-build}"

pkgs="nginx nginx-dev libclang-dev libpcre2-dev libssl-dev zlib1g-dev pkg-config make gcc"
case "$want" in
    test|all) pkgs="$pkgs perl curl" ;;
esac

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done

if [ -n "$missing" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-deps: missing packages:$missing (no apt-get here: install them yourself)" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "install-deps: installing$missing"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
    # Debian starts the packaged nginx on installation; the project never uses that instance.
    if [ -x /usr/sbin/nginx ] && [ -f /run/nginx.pid ]; then
        $sudo /usr/sbin/nginx -s stop 2>/dev/null || true
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi
