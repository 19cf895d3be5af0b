#!/bin/sh
# Installs what building, running and testing gpt_auth needs on Debian/Ubuntu, skipping what is
# already there.
#
#   tools/install-deps.sh build   nginx, nginx-dev and the C libraries the ngx crate builds against
#   tools/install-deps.sh run     build + Node.js and the bundled OpenID provider, Python 3 for the
#                                 mock AI provider (make run)
#   tools/install-deps.sh test    run + Perl, openssl, Chromium and the browser driver, Redis
#                                 (the cluster tests), and the Python venv of the official AI
#                                 SDKs (make test)
set -eu

want="${1:-build}"
top="$(cd "$(dirname "$0")/.." && pwd)"

pkgs="nginx nginx-dev libclang-dev libpcre2-dev libssl-dev zlib1g-dev pkg-config make gcc"
node=no
case "$want" in
    build) ;;
    run) node=yes ;;
    test) node=yes; pkgs="$pkgs perl openssl curl chromium python3 python3-venv redis-server" ;;
    *) echo "usage: $0 build|run|test" >&2; exit 2 ;;
esac
if [ "$node" = yes ] && ! command -v node >/dev/null 2>&1; then
    pkgs="$pkgs nodejs npm"
fi
if [ "$node" = yes ] && ! command -v python3 >/dev/null 2>&1; then
    pkgs="$pkgs python3"
fi

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if [ -n "$missing" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-deps: missing packages:$missing (no apt-get here: install them yourself)" >&2
        exit 1
    fi
    echo "install-deps: installing$missing"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
    # Debian starts the packaged nginx (and redis-server) on installation; the project never
    # uses those instances (the tests start their own on other ports).
    if [ -f /run/nginx.pid ]; then
        $sudo /usr/sbin/nginx -s stop 2>/dev/null || true
    fi
    case "$missing" in
        *redis-server*) $sudo service redis-server stop 2>/dev/null || true ;;
    esac
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi

# The OpenID provider (npm oidc-provider) and the browser driver (playwright-core, which uses
# Debian's chromium: it never downloads a browser).
if [ "$node" = yes ]; then
    stamp="$top/t/oidc/node_modules/.package-lock.json"
    if [ ! -f "$stamp" ] || [ "$top/t/oidc/package-lock.json" -nt "$stamp" ]; then
        echo "install-deps: npm ci in t/oidc"
        (cd "$top/t/oidc" && npm ci --no-audit --no-fund)
    fi
fi

# The official openai and anthropic SDKs for the AI tests (t/ai/README.md), in build/pyenv.
if [ "$want" = test ]; then
    "$top/tools/install-python.sh"
fi
