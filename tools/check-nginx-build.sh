#!/bin/bash
# Proves that gpt_auth builds the way nginx modules are built (the `config` file): a copy of
# Debian's nginx source tree configured with Debian's flags plus
# --add-dynamic-module=<this repository>, then `make modules`; the module it produces is loaded
# by the system nginx, which then checks a session cookie (401 without, 200 with one).
#
# Usage: tools/check-nginx-build.sh NGINX GPT_AUTH_CLI   (make check-nginx-build)
set -euo pipefail

nginx="$1"
cli="$2"
top="$(cd "$(dirname "$0")/.." && pwd)"
src="${DEBIAN_SRC:-/usr/share/nginx/src}"
work="$top/build/nginx-addon"

rm -rf "$work"
mkdir -p "$work"
cp -r "$src" "$work/nginx"
cd "$work/nginx"
# shellcheck disable=SC1091
. ./conf_flags
echo "check-nginx-build: ./configure (Debian's flags) --add-dynamic-module=$top"
./configure "${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$top" > "$work/configure.log" 2>&1 \
    || { tail -20 "$work/configure.log"; exit 1; }
echo "check-nginx-build: make -f objs/Makefile modules"
make -f objs/Makefile modules > "$work/make.log" 2>&1 || { tail -30 "$work/make.log"; exit 1; }
so="$work/nginx/objs/ngx_http_gpt_auth_module.so"
[ -f "$so" ] || { echo "check-nginx-build: $so was not built" >&2; exit 1; }

# Load it into the system nginx and check a session.
run="$work/run"
mkdir -p "$run/html"
echo protected > "$run/html/index.html"
(umask 077; "$cli" keygen > "$run/keys")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=""
[ "$(id -u)" -ne 0 ] || user="user root;"
cat > "$run/nginx.conf" <<CONF
load_module $so;
$user
daemon off;
master_process off;
error_log $run/error.log info;
pid $run/nginx.pid;
events {}
http {
    access_log off;
    gpt_auth_key_file $run/keys;
    server {
        listen 127.0.0.1:$port;
        root $run/html;
        location / { gpt_auth on; }
    }
}
CONF
"$nginx" -t -p "$run/" -c "$run/nginx.conf"
"$nginx" -p "$run/" -c "$run/nginx.conf" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
status() { curl -s -o /dev/null -w '%{http_code}' "$@" "http://127.0.0.1:$port/"; }
no=$(status)
yes=$(status -b "$("$cli" mint -k "$run/keys" -e alice@example.com --pair)")
if [ "$no" != 401 ] || [ "$yes" != 200 ]; then
    echo "check-nginx-build: FAILED: without a session $no (want 401), with one $yes (want 200)" >&2
    exit 1
fi
echo "check-nginx-build: ok: built with --add-dynamic-module, loaded by $nginx: 401 without a session, 200 with one"
