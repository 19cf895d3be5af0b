#!/bin/sh
# nginx under valgrind memcheck, as TEST_NGINX_BINARY for `make test-valgrind`. Version and
# configuration-test calls (nginx -V, nginx -t) run nginx directly.
# Environment: GPT_AUTH_NGINX (the real binary; not NGINX, which nginx itself reads), VALGRIND_LOG_DIR (where the per-process logs go).
set -eu
nginx="${GPT_AUTH_NGINX:-/usr/sbin/nginx}"
for a in "$@"; do
    case "$a" in -V|-v|-t|-T) exec "$nginx" "$@" ;; esac
done
dir="${VALGRIND_LOG_DIR:?VALGRIND_LOG_DIR is not set}"
exec valgrind --tool=memcheck --trace-children=no --num-callers=30 \
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --log-file="$dir/memcheck.%p.log" "$nginx" "$@"
