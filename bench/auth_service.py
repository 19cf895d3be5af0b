"""The auth service of setup (5): what `auth_request` + a small Flask app looks like.

nginx sends every request's headers to GET /check; the service verifies the `gpt_auth` session
cookie exactly as docs/cookie-format.md specifies (HMAC-SHA256, constant-time compare, expiry,
max age 7 days) and answers 204 (with X-Auth-Email) or 401. Run under gunicorn by bench.py:

    GPT_AUTH_KEY_FILE=... gunicorn --chdir bench auth_service:app
"""

import base64
import binascii
import hashlib
import hmac
import os
import re
import time

from flask import Flask, request

COOKIE = "gpt_auth"
MAX_AGE = 7 * 86400
SKEW = 300
DECIMAL = re.compile(r"(0|[1-9][0-9]{0,11})\Z")


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def load_keys(path):
    keys = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            secret = base64.b64decode(line.replace("-", "+").replace("_", "/") + "=" * (-len(line) % 4))
            keys[b64u(hashlib.sha256(secret).digest()[:6])] = secret
    return keys


KEYS = load_keys(os.environ["GPT_AUTH_KEY_FILE"])
app = Flask(__name__)


def verify(value, now):
    """The session's address, or None."""
    if len(value) > 1024:
        return None
    parts = value.split(".")
    if len(parts) != 6 or parts[0] != "1":
        return None
    _, kid, iat, exp, email, mac = parts
    secret = KEYS.get(kid)
    if secret is None or len(mac) != 43:
        return None
    try:
        tag = b64u_decode(mac)
    except (binascii.Error, ValueError):
        return None
    signed = f"{COOKIE}={value[: -len(mac) - 1]}".encode()
    if not hmac.compare_digest(hmac.new(secret, signed, hashlib.sha256).digest(), tag):
        return None
    if not (DECIMAL.match(iat) and DECIMAL.match(exp)):
        return None
    iat, exp = int(iat), int(exp)
    if exp < iat or iat > now + SKEW or now >= min(exp, iat + MAX_AGE):
        return None
    try:
        return b64u_decode(email).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


@app.route("/check")
def check():
    value = request.cookies.get(COOKIE)
    email = verify(value, int(time.time())) if value else None
    if email is None:
        return "", 401
    return "", 204, {"X-Auth-Email": email}
