#!/bin/sh
# nginx as TEST_NGINX_BINARY for the upstream nginx-tests library (`make prove-upstream`).
# Upstream Test::Nginx adds a load_module line for every --with-X=dynamic flag that `nginx -V`
# prints, and Debian's nginx lists modules whose .so files are not installed: `nginx -V` is
# answered without those flags. Anything else runs the real nginx (exec: same pid, same exit status).
# Environment: GPT_AUTH_NGINX (the real binary; not NGINX, which nginx itself reads).
set -eu
nginx="${GPT_AUTH_NGINX:-/usr/sbin/nginx}"
[ -x "$nginx" ] || { echo "$0: no nginx at $nginx" >&2; exit 127; }
for a in "$@"; do
    if [ "$a" = -V ]; then
        out=$("$nginx" "$@" 2>&1)
        printf '%s\n' "$out" | sed -e 's/ --with-[A-Za-z0-9_-]*=dynamic//g'
        exit 0
    fi
done
exec "$nginx" "$@"
