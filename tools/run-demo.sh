#!/bin/sh
# Starts the gpt_auth demo in the foreground on http://127.0.0.1:8080/ (used by `make run`).
# Usage: tools/run-demo.sh NGINX MODULE_SO GPT_AUTH_CLI
set -eu

nginx="$1"
module="$2"
cli="$3"
top="$(cd "$(dirname "$0")/.." && pwd)"
demo="$top/build/demo"

mkdir -p "$demo/tmp"
rm -rf "$demo/html"
cp -r "$top/nginx-conf/demo-html" "$demo/html"
cp "$top/nginx-conf/demo.conf" "$demo/nginx.conf"
if [ ! -s "$demo/demo.keys" ]; then
    (umask 077; "$cli" keygen > "$demo/demo.keys")
fi
if [ ! -s "$demo/demo.allow" ]; then
    printf '# who may use the demo\n@example.com\n' > "$demo/demo.allow"
fi

user=""
[ "$(id -u)" -ne 0 ] || user="user root;"

cookie="$("$cli" mint -k "$demo/demo.keys" -e alice@example.com --pair)"
cat <<MSG
gpt_auth demo on http://127.0.0.1:8080/  (Ctrl-C stops it; logs in build/demo/)

  curl -i http://127.0.0.1:8080/                      # 401: no session
  curl -i -H 'Accept: text/html' http://127.0.0.1:8080/   # 302 to /login?rd=...
  curl -i -b '$cookie' http://127.0.0.1:8080/
                                                      # 200: alice@example.com is allowed
  curl -i -b "\$($cli mint -k $demo/demo.keys -e eve@evil.test --pair)" http://127.0.0.1:8080/
                                                      # 403: signed in, not on demo.allow

MSG
exec "$nginx" -p "$demo/" -c "$demo/nginx.conf" -e "$demo/error.log" \
    -g "load_module $module; daemon off; $user"
