#!/bin/bash
# Starts the gpt_auth demo (used by `make run`): the bundled test OpenID provider, the mock AI
# provider (t/ai/mock_provider.py) and nginx with the module, in the foreground, until Ctrl-C or
# SIGTERM (both stop everything it started).
# Usage: tools/run-demo.sh NGINX MODULE_SO GPT_AUTH_CLI
# Ports (environment): DEMO_PORT (nginx, default 8080), DEMO_IDP_PORT (the OpenID provider, 9000),
# DEMO_AI_PORT (the AI provider, 9100); DEMO_DIR: where its files go (default build/demo).
set -eu

nginx="$1"
module="$2"
cli="$3"
top="$(cd "$(dirname "$0")/.." && pwd)"
demo="${DEMO_DIR:-$top/build/demo}"
port="${DEMO_PORT:-8080}"
idp_port="${DEMO_IDP_PORT:-9000}"
ai_port="${DEMO_AI_PORT:-9100}"

for p in "$port" "$idp_port" "$ai_port"; do
    case "$p" in
        ''|*[!0-9]*) echo "run-demo: port \"$p\" is not a number" >&2; exit 2 ;;
    esac
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "run-demo: 127.0.0.1:$p is in use; stop what runs there, or choose other ports:" >&2
        echo "          make run DEMO_PORT=8081 DEMO_IDP_PORT=9001 DEMO_AI_PORT=9101" >&2
        exit 1
    fi
done
if [ "$port" = "$idp_port" ] || [ "$port" = "$ai_port" ] || [ "$idp_port" = "$ai_port" ]; then
    echo "run-demo: DEMO_PORT, DEMO_IDP_PORT and DEMO_AI_PORT must differ" >&2
    exit 2
fi

mkdir -p "$demo/tmp"
rm -rf "$demo/html"
cp -r "$top/nginx-conf/demo-html" "$demo/html"
# The configuration with the chosen ports (demo.conf itself uses 8080, 9000 and 9100). Through
# placeholders, so that a chosen port that is another's default is not rewritten twice.
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:@port@/g" -e "s/127\.0\.0\.1:9000/127.0.0.1:@idp_port@/g" \
    -e "s/127\.0\.0\.1:9100/127.0.0.1:@ai_port@/g" \
    -e "s/@port@/$port/g" -e "s/@idp_port@/$idp_port/g" -e "s/@ai_port@/$ai_port/g" \
    "$top/nginx-conf/demo.conf" > "$demo/nginx.conf"
cp "$top/nginx-conf/gpt_auth_fetch.conf" "$demo/gpt_auth_fetch.conf"
[ -s "$demo/demo.keys" ] || (umask 077; "$cli" keygen > "$demo/demo.keys")
[ -s "$demo/demo.secret" ] || (umask 077; "$cli" keygen > "$demo/demo.secret")
printf '# who may sign in\n@example.com\n' > "$demo/company.allow"
printf '# who may use GPT-4\nalice@example.com\n' > "$demo/gpt4.allow"
cat > "$demo/prices.txt" <<PRICES
# US dollars per million tokens (gpt_auth_prices)
gpt-4o       input=2.50 cached_input=1.25 output=10
gpt-4o-mini  input=0.15 cached_input=0.075 output=0.60
gpt-4.1      input=2 cached_input=0.50 output=8
gpt-4.1-mini input=0.40 cached_input=0.10 output=1.60
o1-mini      input=1.10 cached_input=0.55 output=4.40
PRICES
cat > "$demo/oidc.json" <<JSON
{
  "issuer": "http://127.0.0.1:$idp_port",
  "clients": [{
    "client_id": "demo",
    "client_secret": "$(cat "$demo/demo.secret")",
    "redirect_uris": ["http://127.0.0.1:$port/callback"],
    "token_endpoint_auth_method": "client_secret_basic"
  }],
  "users": [
    { "email": "alice@example.com", "email_verified": true, "name": "Alice", "password": "alice" },
    { "email": "bob@example.com", "email_verified": true, "name": "Bob", "password": "bob" },
    { "email": "eve@example.org", "email_verified": true, "name": "Eve", "password": "eve" }
  ]
}
JSON

node "$top/t/oidc/provider.mjs" --port "$idp_port" --config "$demo/oidc.json" --log "$demo/oidc.log" &
provider=$!
ai=""
nginx_pid=""
stop() {
    trap - EXIT INT TERM
    [ -z "$nginx_pid" ] || kill -QUIT "$nginx_pid" 2>/dev/null || true
    kill "$provider" 2>/dev/null || true
    [ -z "$ai" ] || kill "$ai" 2>/dev/null || true
    [ -z "$nginx_pid" ] || wait "$nginx_pid" 2>/dev/null || true
    wait "$provider" 2>/dev/null || true
    [ -z "$ai" ] || wait "$ai" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT
# The AI provider: answers only with the company's key, which nginx adds (users never see it).
python3 "$top/t/ai/mock_provider.py" --port "$ai_port" --log "$demo/ai-provider.log" \
    --require-key demo-provider-key > /dev/null &
ai=$!
wait_for() { # port, name, log
    local i=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "run-demo: the $2 did not start (see $3)" >&2; exit 1; }
        sleep 0.1
    done
}
wait_for "$idp_port" provider "$demo/oidc.log"
wait_for "$ai_port" "AI provider" "the messages above"

user=""
[ "$(id -u)" -ne 0 ] || user="user root;"

cat <<MSG

gpt_auth demo: open http://127.0.0.1:$port/ in a browser (Ctrl-C or SIGTERM stops it; logs in
$demo/). A mock AI provider (OpenAI-compatible) runs on 127.0.0.1:$ai_port.

  Sign in with the demo provider as
    alice@example.com / alice   may chat with every gpt-4* and o1* model; /gpt4/, /usage
    bob@example.com   / bob     may chat with gpt-4o-mini only; 403 for gpt-4o and at /gpt4/
    eve@example.org   / eve     is not on company.allow: "not allowed" at sign-in

  The chat (http://127.0.0.1:$port/chat.html) talks to /v1/ through nginx, which checks the
  model, adds the provider key and meters tokens and cost (access.log, /usage).

  From a shell:
    curl -i http://127.0.0.1:$port/api/whoami                    # 401: no session
    curl -i -H 'Accept: text/html' http://127.0.0.1:$port/        # 302 to the login page
    curl -b "\$($cli mint -k $demo/demo.keys -e alice@example.com --pair)" \\
         http://127.0.0.1:$port/api/whoami                      # {"user": "alice@example.com"}
    curl -b "\$($cli mint -k $demo/demo.keys -e bob@example.com --pair)" \\
         http://127.0.0.1:$port/v1/models                       # only gpt-4o-mini
    curl -b "\$($cli mint -k $demo/demo.keys -e bob@example.com --pair)" \\
         -H 'Content-Type: application/json' \\
         -d '{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}' \\
         http://127.0.0.1:$port/v1/chat/completions             # 403: not for bob

MSG
# In the background, so that the traps run when a signal comes (bash runs them only between
# commands, never while it waits for a foreground one).
"$nginx" -p "$demo/" -c "$demo/nginx.conf" -e "$demo/error.log" \
    -g "load_module $module; daemon off; $user" &
nginx_pid=$!
wait "$nginx_pid"
