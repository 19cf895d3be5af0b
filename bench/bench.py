#!/usr/bin/env python3
"""gpt_auth benchmark (`make bench`; bench/run.sh installs the tools, then runs this).

Five nginx setups serving the same 2-byte static file on loopback, one worker each,
`access_log off`:

  noauth         no access check (the baseline)
  gpt_auth       gpt_auth on, a valid session cookie
  gpt_auth_100k  gpt_auth on + an allowlist of 100,000 addresses, the cookie's user on it
  secure_link    nginx's own secure_link checking a signed cookie (C, in-process)
  auth_request   auth_request to a Flask service under gunicorn (the design being replaced)

Phases: build the criterion benchmark of gpt-auth-core and run it; prepare keys, cookies and
configurations; verify every setup (valid -> 200 "ok"; none/forged/tampered/expired -> 401;
not on the allowlist -> 403) and abort if anything is off; time the setups interleaved with
wrk; count instructions and allocator calls per request with callgrind; measure the worker's
RSS over 1,000,000 requests; write bench/results/<date>-<host>.md and bench/results/latest.md.

Settings come from the environment (see bench/README.md). Only 127.0.0.1 is ever contacted.
Every process started here is stopped on exit, also on failure or Ctrl-C.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
WORK = os.path.join(BENCH, "work")
CONF = os.path.join(BENCH, "conf")
RESULTS = os.path.join(BENCH, "results")

PATH = "/ok.txt"
BODY = b"ok"
EMAIL = "user050000@example.com"  # on the generated allowlist
OUTSIDER = "outsider@example.org"  # valid session, not on the allowlist
FORGED_EMAIL = "mallory@example.com"

# name, label, configuration template, loads the module, measured with callgrind
SETUPS = [
    ("noauth", "no auth", "noauth.conf", False, True),
    ("gpt_auth", "`gpt_auth on`, valid cookie", "gpt_auth.conf", True, True),
    ("gpt_auth_100k", "`gpt_auth on` + 100k allowlist", "gpt_auth_100k.conf", True, True),
    ("gpt_auth_quota", "`gpt_auth on` + per-user quota", "gpt_auth_quota.conf", True, True),
    ("secure_link", "nginx `secure_link` cookie (C)", "secure_link.conf", False, True),
    ("auth_request", "`auth_request` → Flask/gunicorn", "auth_request.conf", False, False),
]
LABEL = {s[0]: s[1] for s in SETUPS}
TEMPLATES = {s[0]: s[2] for s in SETUPS}
# Measured with callgrind only, to explain the numbers above.
TEMPLATES["gpt_auth_1"] = "gpt_auth_1.conf"
LABEL["gpt_auth_1"] = "`gpt_auth on` + 1-entry allowlist"
TEMPLATES["gpt_auth_ai_elsewhere"] = "gpt_auth_ai_elsewhere.conf"
TEMPLATES["gpt_auth_two"] = "gpt_auth_two.conf"
TEMPLATES["gpt_auth_quota_redis"] = "gpt_auth_quota_redis.conf"
LABEL["gpt_auth_quota_redis"] = "`gpt_auth on` + per-user quota shared through Redis"
LABEL["gpt_auth_two"] = "`gpt_auth on`, another location without AI"
LABEL["gpt_auth_ai_elsewhere"] = "`gpt_auth on`, an AI API in another location"

# AI APIs: one streamed chat answer of AI_EVENTS content events from the mock provider
# (t/ai/mock_provider.py, outside callgrind), proxied by plain nginx, behind `gpt_auth on`, and
# metered. key, label, template.
AI_EVENTS = 50
# The provider writes each event AI_DELAY_MS after the last, as a model streams its tokens: nginx
# then reads (and passes on) one event at a time, as in production, rather than many at once.
AI_DELAY_MS = 1
AI_VARIANTS = [
    ("ai_proxy", "plain nginx proxying the stream", "ai_proxy.conf", AI_EVENTS),
    ("ai_auth", "the same behind `gpt_auth on`", "ai_auth.conf", AI_EVENTS),
    ("ai_meter", "the same, metered (model rules, usage, budget)", "ai_meter.conf", AI_EVENTS),
    # The same with 10 events: what grows with the stream (allocations must not).
    ("ai_meter_10", "metered, a stream of 10 events", "ai_meter.conf", 10),
]
for _k, _label, _tpl, _events in AI_VARIANTS:
    TEMPLATES[_k] = _tpl
    LABEL[_k] = _label
AI_PROMPT = "Hello, how are you today? Tell me about nginx modules."
AI_BODY = ('{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"'
           + AI_PROMPT + '"}]}').encode()

ALLOC_FNS = {"malloc", "calloc", "realloc"}
ALIGNED_ALLOC_FNS = {"posix_memalign", "memalign", "aligned_alloc", "valloc", "pvalloc"}


class Abort(Exception):
    """A failed step: message for the user, exit status 1."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Settings


class Settings:
    def __init__(self, args):
        self.nginx = os.path.abspath(args.nginx)
        self.module = os.path.abspath(args.module)
        self.cli = os.path.abspath(args.cli)
        self.venv = os.path.abspath(args.venv)
        self.quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        q = self.quick

        def num(name, default, quick_default, kind=int):
            raw = os.environ.get(name)
            if raw is None or raw == "":
                return quick_default if q else default
            try:
                value = kind(raw)
            except ValueError:
                raise Abort(f"{name}={raw!r} is not a number")
            if value < 0:
                raise Abort(f"{name} must not be negative")
            return value

        self.rounds = num("BENCH_ROUNDS", 5, 2)
        self.duration = num("BENCH_DURATION", 6, 2)
        self.warmup = num("BENCH_WARMUP", 2, 1)
        self.connections = num("BENCH_CONNECTIONS", 32, 32)
        self.cg_warm = num("BENCH_CG_WARM", 2000, 300)
        self.cg_requests = num("BENCH_CG_REQUESTS", 10000, 1000)
        self.cg_ai_requests = num("BENCH_CG_AI_REQUESTS", 1000, 200)
        self.rss_requests = num("BENCH_RSS_REQUESTS", 1_000_000, 100_000)
        self.rss_warm = num("BENCH_RSS_WARM", 20_000, 5_000)
        self.allowlist_size = num("BENCH_ALLOWLIST_SIZE", 100_000, 100_000)
        self.port_base = num("BENCH_PORT_BASE", 18480, 18480)
        self.gunicorn_workers = num("BENCH_GUNICORN_WORKERS", 2, 2)
        self.retries = num("BENCH_RETRIES", 3, 1)
        self.max_other = num("BENCH_MAX_OTHER", 0.05, 0.05, float)
        self.server_cpu = os.environ.get("BENCH_SERVER_CPU", "0")
        self.client_cpu = os.environ.get("BENCH_CLIENT_CPU", "1")
        self.skip_cargo = os.environ.get("BENCH_SKIP_CARGO", "") not in ("", "0")
        self.note = os.environ.get("BENCH_NOTE", "")
        # "callgrind": only the instruction counts (no criterion, timing or RSS), printed and
        # not written to bench/results/ (for working on the hot path).
        self.only = os.environ.get("BENCH_ONLY", "")
        if self.only not in ("", "callgrind"):
            raise Abort(f"BENCH_ONLY={self.only!r}: only \"callgrind\" is known")
        self.cg_only = [k for k in os.environ.get("BENCH_CG_VARIANTS", "").split(",") if k]
        if self.rounds < 1 or self.duration < 1 or self.cg_requests < 1 or self.rss_requests < 1:
            raise Abort("BENCH_ROUNDS, BENCH_DURATION, BENCH_CG_REQUESTS and BENCH_RSS_REQUESTS "
                        "must be at least 1")
        if self.allowlist_size <= int(EMAIL[4:10]):
            raise Abort(f"BENCH_ALLOWLIST_SIZE must be more than {int(EMAIL[4:10])}")
        if self.server_cpu == self.client_cpu:
            log(f"warning: server and client pinned to the same CPU {self.server_cpu}")


# ---------------------------------------------------------------------------------------------
# Processes: everything started here is in its own process group and stopped at exit.

PROCS = []


def spawn(cmd, log_path=None, env=None):
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)
    finally:
        if log_path:
            out.close()
    PROCS.append(p)
    return p


def stop(p, timeout=15):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left of the group (workers of a master that died first).
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass
    if p in PROCS:
        PROCS.remove(p)


def stop_all():
    for p in list(reversed(PROCS)):
        stop(p)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def run(cmd, timeout=None, cwd=None, env=None, check=True):
    """Runs a command to completion; its output (stdout+stderr) as text."""
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        raise Abort(f"timed out after {timeout}s: {' '.join(cmd)}")
    text = r.stdout.decode(errors="replace")
    if check and r.returncode != 0:
        raise Abort(f"failed (exit {r.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    return text


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port(port, proc, what, timeout, errlog=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = read_tail(errlog) if errlog else ""
            raise Abort(f"{what} exited (status {proc.returncode}) before listening on {port}\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise Abort(f"{what} not listening on 127.0.0.1:{port} after {timeout}s")


def read_tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def children(pid):
    return [p for p, (ppid, _, _) in processes().items() if ppid == pid]


def vm_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Abort(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------------------------------------
# HTTP client (raw sockets, to 127.0.0.1 only)


def request_bytes(port, cookie, close):
    lines = [f"GET {PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if cookie is not None:
        lines.append(f"Cookie: {cookie}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock, buf):
    """Reads one response with a Content-Length; (status, headers, body, rest of buffer)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response headers")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the response body")
        buf += chunk
    return status, headers, buf[:length], buf[length:]


def http_get(port, cookie=None):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request_bytes(port, cookie, close=True))
        status, headers, body, _ = read_response(s, b"")
        return status, body


class KeepAliveClient:
    """Sequential requests over one keep-alive connection (reconnects when nginx closes it)."""

    def __init__(self, port, cookies):
        self.port = port
        self.reqs = [request_bytes(port, c, close=False) for c in cookies]
        self.next = 0
        self.sock = None
        self.buf = b""

    def get(self):
        for attempt in (1, 2):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
                self.buf = b""
            try:
                self.sock.sendall(self.reqs[self.next % len(self.reqs)])
                status, headers, body, self.buf = read_response(self.sock, self.buf)
            except (ConnectionError, OSError):
                self.close()
                if attempt == 2:
                    raise
                continue
            if headers.get("connection", "").lower() == "close":
                self.close()
            self.next += 1
            return status, body

    def run(self, n):
        bad = 0
        for _ in range(n):
            status, body = self.get()
            if status != 200 or body != BODY:
                bad += 1
        return bad

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# ---------------------------------------------------------------------------------------------
# Preparation: files, cookies, configurations


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Material:
    """Keys, allowlist, static file and every cookie the bench sends."""

    def __init__(self, st):
        self.st = st
        self.html = os.path.join(WORK, "html")
        self.keys = os.path.join(WORK, "gpt_auth.keys")
        self.allow = os.path.join(WORK, "allow-100k.txt")
        self.allow1 = os.path.join(WORK, "allow-1.txt")
        os.makedirs(self.html, exist_ok=True)
        with open(os.path.join(self.html, PATH.lstrip("/")), "wb") as f:
            f.write(BODY)
        os.chmod(self.html, 0o755)

        key = run([st.cli, "keygen"]).strip().splitlines()[-1]
        fd = os.open(self.keys, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        with open(self.allow, "w") as f:
            f.write(f"# {st.allowlist_size} generated addresses\n")
            f.writelines(f"user{i:06d}@example.com\n" for i in range(st.allowlist_size))
        with open(self.allow1, "w") as f:
            f.write(f"{EMAIL}\n")
        # quota overrides (gpt_auth_quota.conf): 1,000 power users and a partner domain, not
        # the bench user, so each request looks up both its address and its domain
        with open(os.path.join(WORK, "quota.overrides"), "w") as f:
            f.writelines(f"power{i:04d}@example.com day=1000\n" for i in range(1000))
            f.write("@partner.example day=10\n")

        now = int(time.time())

        def mint(email, *extra):
            return run([st.cli, "mint", "-k", self.keys, "-e", email, *extra]).strip()

        self.valid = mint(EMAIL, "--ttl", "2d")
        self.outsider = mint(OUTSIDER, "--ttl", "2d")
        self.expired = mint(EMAIL, "--ttl", "1h", "--now", str(now - 7200))
        parts = self.valid.split(".")
        parts[4] = b64u(FORGED_EMAIL.encode())  # another user, the original signature
        self.forged = ".".join(parts)
        self.tampered = flip_at(self.valid, len(self.valid) - 43)  # first character of the MAC

        # secure_link: base64url(MD5("<expires> <user> <secret>")), as secure_link_md5 says.
        self.sl_secret = secrets.token_hex(16)

        def sl(user, expires):
            md5 = hashlib.md5(f"{expires} {user} {self.sl_secret}".encode()).digest()
            return f"slu={user}; sle={expires}; slm={b64u(md5)}"

        self.sl_valid = sl(EMAIL, now + 2 * 86400)
        self.sl_expired = sl(EMAIL, now - 60)
        good = self.sl_valid.split("; ")
        self.sl_forged = "; ".join([f"slu={FORGED_EMAIL}"] + good[1:])
        self.sl_tampered = "; ".join(good[:2] + [flip_at(good[2], len("slm="))])

        with open(self.keys) as f:
            line = f.readline().strip()
        self.secret = base64.b64decode(line.replace("-", "+").replace("_", "/")
                                       + "=" * (-len(line) % 4))
        self.now = now
        if mint_py(self.secret, EMAIL, now, now + 1, "x") == mint_py(self.secret, EMAIL, now, now + 1):
            raise Abort("cookie minting is broken")

        self.python_minted = mint_py(self.secret, EMAIL, now, now + 2 * 86400)

        # What every timed request carries, byte-identical for every setup: the secure_link
        # cookies first and the gpt_auth cookie last (the module scans past the others).
        self.bench_cookie = f"{self.sl_valid}; gpt_auth={self.valid}"


DISTINCT_SESSIONS = 12_000  # more than the module's per-worker cache of verified cookies (4096)


def mint_py(secret, email, iat, exp, name="gpt_auth"):
    """A session cookie value, minted in Python from docs/cookie-format.md."""
    kid = b64u(hashlib.sha256(secret).digest()[:6])
    body = f"1.{kid}.{iat}.{exp}.{b64u(email.encode())}"
    mac = hmac.new(secret, f"{name}={body}".encode(), hashlib.sha256).digest()
    return f"{body}.{b64u(mac)}"


def distinct_cookies(mat):
    """DISTINCT_SESSIONS valid cookies of the same length, for listed users."""
    return [mint_py(mat.secret, f"user{i:06d}@example.com", mat.now, mat.now + 2 * 86400)
            for i in range(DISTINCT_SESSIONS)]


def flip_at(s, i):
    """`s` with the character at `i` changed (not the last base64 character, whose low bits
    may be padding that decoders ignore)."""
    return s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]


def render(template, values, dest):
    with open(os.path.join(CONF, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise Abort(f"{template}: unknown placeholders {sorted(set(left))}")
    with open(dest, "w") as f:
        f.write(text)


class Nginx:
    """One nginx (master + 1 worker, or single-process under callgrind)."""

    def __init__(self, st, mat, setup, name, port, auth_port):
        self.st = st
        self.setup = setup
        self.port = port
        self.prefix = os.path.join(WORK, name)
        shutil.rmtree(self.prefix, ignore_errors=True)
        os.makedirs(os.path.join(self.prefix, "tmp"))
        self.conf = os.path.join(self.prefix, "nginx.conf")
        self.errlog = os.path.join(self.prefix, "error.log")
        template = TEMPLATES[setup]
        values = {
            "GLOBALS": "user root;" if os.geteuid() == 0 else "",
            "LOAD_MODULE": f"load_module {st.module};",
            "PREFIX": self.prefix,
            "PORT": str(port),
            "HTML": mat.html,
            "WORK": WORK,
            "SL_SECRET": mat.sl_secret,
            "AUTH_PORT": str(auth_port),
            "AI_PORT": str(st.port_base + 8),
            "REDIS_PORT": str(st.port_base + 7),
        }
        render("common.inc", values, os.path.join(self.prefix, "common.inc"))
        render(template, values, self.conf)
        self.proc = None

    def args(self, globals_):
        return [self.st.nginx, "-p", self.prefix + "/", "-c", self.conf, "-e", self.errlog,
                "-g", globals_]

    def test(self):
        out = run(self.args("daemon off;") + ["-t"], timeout=60, check=False)
        if "test is successful" not in out:
            raise Abort(f"nginx -t failed for {self.setup} ({self.conf}):\n{out}")

    def start(self, callgrind_out=None):
        if not port_free(self.port):
            raise Abort(f"port 127.0.0.1:{self.port} is in use (set BENCH_PORT_BASE)")
        pin = ["taskset", "-c", self.st.server_cpu]
        if callgrind_out:
            cmd = pin + ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind_out}",
                         "--dump-instr=no", "--collect-jumps=no"] + \
                os.environ.get("BENCH_CG_ARGS", "").split() + \
                self.args("daemon off; master_process off;")
            timeout = 180
        else:
            cmd = pin + self.args("daemon off;")
            timeout = 30
        self.proc = spawn(cmd, log_path=os.path.join(self.prefix, "stdout.log"))
        wait_port(self.port, self.proc, f"nginx ({self.setup})", timeout, self.errlog)

    def worker_pid(self):
        kids = children(self.proc.pid)
        if len(kids) != 1:
            raise Abort(f"nginx ({self.setup}): expected 1 worker, found {kids}")
        return kids[0]

    def stop(self):
        if self.proc:
            stop(self.proc)
            self.proc = None


# ---------------------------------------------------------------------------------------------
# Verification


def verify(mat, setup, port):
    gpt_cases = [
        ("valid gpt_auth cookie", f"gpt_auth={mat.valid}", 200),
        ("no cookie", None, 401),
        ("forged cookie (other user, original MAC)", f"gpt_auth={mat.forged}", 401),
        ("tampered cookie (MAC changed)", f"gpt_auth={mat.tampered}", 401),
        ("expired cookie", f"gpt_auth={mat.expired}", 401),
        ("unrelated cookie only", "theme=dark", 401),
        ("cookie minted in Python from docs/cookie-format.md", f"gpt_auth={mat.python_minted}",
         200),
    ]
    cases = [("benchmark request (all cookies)", mat.bench_cookie, 200)]
    if setup == "noauth":
        cases += [("no cookie (no check here)", None, 200)]
    elif setup in ("gpt_auth", "gpt_auth_quota", "auth_request"):
        cases += gpt_cases + [("valid cookie, any user (no allowlist)", f"gpt_auth={mat.outsider}", 200)]
    elif setup == "gpt_auth_100k":
        cases += gpt_cases + [("valid cookie, user not on the allowlist", f"gpt_auth={mat.outsider}", 403)]
    elif setup == "secure_link":
        cases += [
            ("valid secure_link cookies", mat.sl_valid, 200),
            ("no cookie", None, 401),
            ("forged cookies (other user, original hash)", mat.sl_forged, 401),
            ("tampered hash", mat.sl_tampered, 401),
            ("expired", mat.sl_expired, 401),
            ("gpt_auth cookie only", f"gpt_auth={mat.valid}", 401),
        ]
    failures = []
    for what, cookie, want in cases:
        try:
            status, body = http_get(port, cookie)
        except (OSError, ValueError, IndexError) as e:
            failures.append(f"{what}: request failed: {e}")
            continue
        if status != want or (want == 200 and body != BODY):
            hint = ""
            if want != 200 and status == 200:
                hint = (" -- the access check did not run: a `return` in the location or a "
                        "missing directive lets everyone in")
            failures.append(f"{what}: expected {want}{' ' + repr(BODY) if want == 200 else ''}, "
                            f"got {status} {body[:40]!r}{hint}")
    if failures:
        raise Abort(f"verification of setup {setup} (127.0.0.1:{port}) failed:\n  - "
                    + "\n  - ".join(failures))
    return len(cases)


# ---------------------------------------------------------------------------------------------
# wrk

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_latency(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise Abort(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(st, port, cookie, duration):
    cmd = ["taskset", "-c", st.client_cpu, "wrk", "-t1", f"-c{st.connections}", f"-d{duration}s",
           "--latency", "-H", f"Cookie: {cookie}", f"http://127.0.0.1:{port}{PATH}"]
    return parse_wrk(run(cmd, timeout=duration + 60))


def wrk_count(st, port, cookie, n, limit):
    """wrk until n responses (see stop_after.lua), at most `limit` seconds."""
    marker = os.path.join(WORK, "wrk.stop")
    out_path = os.path.join(WORK, "wrk-count.log")
    for path in (marker, out_path):
        if os.path.exists(path):
            os.unlink(path)
    env = dict(os.environ, BENCH_STOP_AFTER=str(n), BENCH_STOP_FILE=marker)
    cmd = ["taskset", "-c", st.client_cpu, "wrk", "-t1", f"-c{st.connections}", f"-d{limit}s",
           "--latency", "-s", os.path.join(BENCH, "stop_after.lua"), "-H", f"Cookie: {cookie}",
           f"http://127.0.0.1:{port}{PATH}"]
    p = spawn(cmd, log_path=out_path, env=env)
    deadline = time.time() + limit + 60
    signalled = False
    while p.poll() is None:
        if not signalled and os.path.exists(marker):
            p.send_signal(signal.SIGINT)
            signalled = True
        if time.time() > deadline:
            stop(p)
            raise Abort(f"wrk did not finish {n} requests in {limit}s")
        time.sleep(0.05)
    PROCS.remove(p)
    with open(out_path, errors="replace") as f:
        out = f.read()
    if p.returncode != 0:
        raise Abort(f"wrk failed (exit {p.returncode}):\n{out}")
    res = parse_wrk(out)
    if res["requests"] < n:
        raise Abort(f"wrk made {res['requests']} requests, not {n}, in {limit}s")
    return res


def parse_wrk(out):
    res = {"raw": out}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not m:
        raise Abort(f"cannot parse wrk output:\n{out}")
    res["rps"] = float(m.group(1))
    m = re.search(r"^\s+(\d+) requests in ([\d.]+)(\w+)", out, re.M)
    res["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if not m:
            raise Abort(f"no {pct}% latency in wrk output:\n{out}")
        res[f"p{pct}"] = parse_latency(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(map(int, m.groups())) if m else 0
    return res


# ---------------------------------------------------------------------------------------------
# callgrind output


def canonical_fn(name):
    name = name.split("'")[0]  # callgrind's recursion suffix
    return re.sub(r"^(?:__GI_)?_*(?:libc_)?", "", name)


def parse_callgrind(path):
    """Totals, self cost per (object, function) and call edges of one callgrind dump."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    kind_of = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
               "cfl": "fl", "fn": "fn", "cfn": "fn"}
    self_cost = defaultdict(int)
    calls = defaultdict(int)  # (caller ob, caller fn, callee ob, callee fn) -> count
    incl = defaultdict(int)  # same key -> inclusive Ir of those calls
    total = None
    ob = fn = cob = cfn = None
    pending_call = None
    npos = 1  # position columns before the cost (`positions: instr line` with --dump-instr)

    def name(kind, value):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), value)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                ir = int(parts[npos]) if len(parts) > npos else 0
                if pending_call is not None:
                    key = (ob, fn, cob or ob, cfn)
                    calls[key] += pending_call
                    incl[key] += ir
                    pending_call = None
                    cob = cfn = None
                else:
                    self_cost[(ob, fn)] += ir
                continue
            key, eq, value = line.partition("=")
            if eq:
                if key in kind_of:
                    n = name(kind_of[key], value.strip())
                    if key == "ob":
                        ob = n
                    elif key == "fn":
                        fn = n
                        cob = cfn = None
                    elif key == "cob":
                        cob = n
                    elif key == "cfn":
                        cfn = n
                    continue
                if key == "calls":
                    pending_call = int(value.split()[0])
                    continue
            if line.startswith("positions:"):
                npos = len(line.split()) - 1
                continue
            m = re.match(r"(summary|totals):\s*(\d+)", line)
            if m:
                total = int(m.group(2))
    if total is None:
        total = sum(self_cost.values())
    return {"total": total, "self": self_cost, "calls": calls, "incl": incl}


def alloc_stats(cg, module_path):
    """Calls per dump to the C allocator from outside libc (posix_memalign calls malloc
    internally: not counted twice), in total and made directly from the module's code."""
    out = {"alloc": 0, "aligned": 0, "free": 0, "module_alloc": 0, "module_free": 0,
           "callers": defaultdict(int)}
    mod = os.path.basename(module_path)
    for (caller_ob, caller_fn, callee_ob, callee_fn), n in cg["calls"].items():
        if not callee_ob or "libc.so" not in callee_ob or not callee_fn:
            continue
        if caller_ob and "libc.so" in caller_ob:
            continue
        if canonical_fn(callee_fn) in ALLOC_FNS | ALIGNED_ALLOC_FNS:
            out["callers"][f"{caller_fn} → {canonical_fn(callee_fn)}"] += n
        f = canonical_fn(callee_fn)
        from_module = caller_ob is not None and os.path.basename(caller_ob) == mod
        if f in ALLOC_FNS:
            out["alloc"] += n
        elif f in ALIGNED_ALLOC_FNS:
            out["aligned"] += n
        elif f == "free":
            out["free"] += n
            if from_module:
                out["module_free"] += n
            continue
        else:
            continue
        if from_module:
            out["module_alloc"] += n
    return out


def by_function(cg):
    """Self Ir per function name (objects merged), and per object."""
    fns = defaultdict(int)
    obs = defaultdict(int)
    for (ob, fn), ir in cg["self"].items():
        if not fn or fn.startswith("0x"):
            fn = f"{os.path.basename(ob or '???')}:{fn or '???'}"
        fns[fn] += ir
        obs[os.path.basename(ob or "???")] += ir
    return fns, obs


# ---------------------------------------------------------------------------------------------
# Phases


def phase_cargo(st, results):
    if st.skip_cargo:
        log("criterion: skipped (BENCH_SKIP_CARGO)")
        return
    log("criterion: cargo bench -p gpt-auth-core --bench hot_paths (builds first: a few minutes "
        "the first time)")
    cmd = ["cargo", "bench", "-p", "gpt-auth-core", "--bench", "hot_paths", "--"]
    if st.quick:
        cmd.append("--quick")
    logfile = os.path.join(WORK, "criterion.log")
    out = run(cmd, timeout=1800, cwd=REPO)
    with open(logfile, "w") as f:
        f.write(out)
    meta = json.loads(run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=REPO,
                          timeout=120).splitlines()[-1])
    crit = os.path.join(meta["target_directory"], "criterion")
    rows = []
    for group, bench, what in [
        ("idtoken_verify", "rs256", "ID token verified (RS256, warm JWKS, claims checked)"),
        ("idtoken_verify", "es256", "ID token verified (ES256, warm JWKS, claims checked)"),
        ("session", "decode", "`session::decode` (session cookie verified)"),
        ("session", "scan_and_decode", "Cookie header scanned + `session::decode`"),
        ("allowlist_allows", "100k_hit", "`Allowlist::allows`, 100k entries, listed user"),
        ("allowlist_allows", "100k_miss", "`Allowlist::allows`, 100k entries, unlisted user"),
        ("allowlist_allows", "3_hit", "`Allowlist::allows`, 3 entries, listed user"),
    ]:
        path = os.path.join(crit, group, bench, "new", "estimates.json")
        try:
            with open(path) as f:
                est = json.load(f)
        except OSError:
            raise Abort(f"criterion left no {path} (see {logfile})")
        ns = est["median"]["point_estimate"]
        lo = est["median"]["confidence_interval"]["lower_bound"]
        hi = est["median"]["confidence_interval"]["upper_bound"]
        rows.append((f"{group}/{bench}", what, ns, lo, hi))
    # The same cookie check with sha2's portable code (`force-soft`), which is what runs under
    # valgrind: its virtual CPU does not offer the SHA extensions. Own output directory, so that
    # the two runs do not compare themselves with each other.
    log("criterion: session/* again with sha2's portable code (--features sha2/force-soft)")
    soft_home = os.path.join(meta["target_directory"], "criterion-sha2-force-soft")
    out = run(["cargo", "bench", "-p", "gpt-auth-core", "--bench", "hot_paths", "--features",
               "sha2/force-soft", "--", "session/"] + (["--quick"] if st.quick else []),
              timeout=1800, cwd=REPO, env=dict(os.environ, CRITERION_HOME=soft_home))
    with open(logfile, "a") as f:
        f.write("\n--- sha2/force-soft ---\n" + out)
    for bench, what in [("decode", "`session::decode`, sha2 portable code (as under valgrind)"),
                        ("scan_and_decode", "scan + `session::decode`, sha2 portable code")]:
        path = os.path.join(soft_home, "session", bench, "new", "estimates.json")
        try:
            with open(path) as f:
                est = json.load(f)
        except OSError:
            raise Abort(f"criterion left no {path} (see {logfile})")
        m = est["median"]
        rows.append((f"session/{bench} (force-soft)", what, m["point_estimate"],
                     m["confidence_interval"]["lower_bound"],
                     m["confidence_interval"]["upper_bound"]))
    results["criterion"] = rows
    for name, _, ns, _, _ in rows:
        log(f"criterion: {name}: {fmt_time_ns(ns)} ({1e9 / ns:,.0f}/s)")


def fmt_time_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def start_auth_service(st, mat, port):
    if not port_free(port):
        raise Abort(f"port 127.0.0.1:{port} is in use (set BENCH_PORT_BASE)")
    gunicorn = os.path.join(st.venv, "bin", "gunicorn")
    env = dict(os.environ, GPT_AUTH_KEY_FILE=mat.keys)
    cmd = ["taskset", "-c", st.server_cpu, gunicorn, "--chdir", BENCH,
           "--workers", str(st.gunicorn_workers), "--bind", f"127.0.0.1:{port}",
           "--log-level", "warning", "auth_service:app"]
    p = spawn(cmd, log_path=os.path.join(WORK, "gunicorn.log"), env=env)
    wait_port(port, p, "gunicorn (auth service)", 30, os.path.join(WORK, "gunicorn.log"))
    return p


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_cpu():
    """(busy, steal) CPU seconds so far, all CPUs. Busy is user+nice+system+irq+softirq: with
    tick-based accounting a task's stime includes the interrupts served while it ran, which
    /proc/stat files under irq and softirq (loopback TCP is mostly softirq)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK, v[7] / CLK_TCK


def processes():
    """pid -> (ppid, comm, CPU seconds incl. reaped children) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        cpu = sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
        out[int(d)] = (int(fields[1]), comm, cpu)
    return out


def ours(procs):
    """This script, its descendants, and the kernel's softirq threads (which serve our
    loopback traffic)."""
    mine = {os.getpid()}
    kids = defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        kids[ppid].append(pid)
    todo = [os.getpid()]
    while todo:
        for k in kids[todo.pop()]:
            mine.add(k)
            todo.append(k)
    mine.update(pid for pid, (_, comm, _) in procs.items() if comm.startswith("ksoftirqd"))
    return mine


class CpuWatch:
    """CPU used by everything but the bench over a time window."""

    def __init__(self):
        self.t0 = time.time()
        self.m0 = machine_cpu()
        self.p0 = processes()
        self.self0 = sum(os.times()[:4])

    def stop(self):
        wall = time.time() - self.t0
        busy, steal = machine_cpu()
        p1 = processes()
        mine = ours(p1) | ours(self.p0)
        our = sum(os.times()[:4]) - self.self0
        our += sum(c - self.p0.get(pid, (0, "", 0))[2] for pid, (_, _, c) in p1.items()
                   if pid in mine and pid != os.getpid())
        foreign = defaultdict(float)
        for pid, (_, comm, c) in p1.items():
            if pid not in mine:
                d = c - self.p0[pid][2] if pid in self.p0 else c
                if d > 0:
                    foreign[comm] += d
        top = sorted(foreign.items(), key=lambda kv: -kv[1])[:3]
        return {
            "other": max(0.0, (busy - self.m0[0]) - our) / wall,
            "steal": (steal - self.m0[1]) / wall,
            "top": ", ".join(f"{c} {t / wall:.0%}" for c, t in top if t / wall >= 0.01),
        }


def phase_timing(st, mat, servers, results):
    order = [s[0] for s in SETUPS]
    w = CpuWatch()
    time.sleep(3)
    results["busy_before"] = w.stop()
    if results["busy_before"]["other"] > 0.05:
        log(f"warning: other processes use {results['busy_before']['other']:.0%} of a CPU "
            f"({results['busy_before']['top']}): req/s and latencies will be off (instruction "
            "counts are not affected)")
    w = CpuWatch()
    for name in order:
        log(f"warm-up {name}: wrk {st.warmup}s")
        if st.warmup:
            wrk(st, servers[name].port, mat.bench_cookie, st.warmup)
    runs = defaultdict(list)
    results["repeated"] = 0
    for r in range(1, st.rounds + 1):
        for name in order:
            # A run during which other processes took CPU is repeated (up to BENCH_RETRIES
            # times), so that a shared machine still gives clean numbers.
            for attempt in range(st.retries + 1):
                rw = CpuWatch()
                res = wrk(st, servers[name].port, mat.bench_cookie, st.duration)
                busy = rw.stop()
                if res["non2xx"]:
                    raise Abort(f"{name}, round {r}: {res['non2xx']} responses were not 2xx/3xx "
                                f"(the valid cookie was refused?)\n{res['raw']}")
                if busy["other"] <= st.max_other or attempt == st.retries:
                    break
                results["repeated"] += 1
                log(f"round {r}/{st.rounds} {name:14s} repeated: other processes used "
                    f"{busy['other']:.0%} of a CPU ({busy['top']})")
                time.sleep(st.duration)
            if res["socket_errors"]:
                log(f"warning: {name}, round {r}: socket errors\n{res['raw']}")
            res["other"] = busy["other"]
            runs[name].append(res)
            log(f"round {r}/{st.rounds} {name:14s} {res['rps']:>10,.0f} req/s  "
                f"p50 {res['p50']:.3f} ms  p99 {res['p99']:.3f} ms"
                + (f"  (other processes {busy['other']:.0%} of a CPU)"
                   if busy["other"] > st.max_other else ""))
    results["timing"] = runs
    results["busy_during"] = b = w.stop()
    log(f"while timing, other processes used {b['other']:.1%} of a CPU "
        f"({b['top'] or 'none above 1 %'}), the hypervisor stole {b['steal']:.1%}")


def phase_rss(st, mat, results):
    rows = []
    for i, name in enumerate(["gpt_auth", "gpt_auth_100k"]):
        srv = Nginx(st, mat, name, f"rss-{name}", st.port_base + 20 + i, st.port_base + 9)
        srv.start()
        try:
            pid = srv.worker_pid()
            start = vm_rss_kb(pid)
            warm = wrk_count(st, srv.port, mat.bench_cookie, st.rss_warm, 120)
            after_warm = vm_rss_kb(pid)
            log(f"rss {name}: {st.rss_requests:,} requests")
            limit = max(120, st.rss_requests // 5_000)
            res = wrk_count(st, srv.port, mat.bench_cookie, st.rss_requests, limit)
            after = vm_rss_kb(pid)
            if res["non2xx"] or warm["non2xx"]:
                raise Abort(f"rss {name}: refused requests\n{res['raw']}")
            if pid != srv.worker_pid():
                raise Abort(f"rss {name}: the worker was replaced during the run")
            rows.append({"setup": name, "start": start, "warm": after_warm, "after": after,
                         "requests": res["requests"], "warm_requests": warm["requests"]})
            log(f"rss {name}: VmRSS {start} kB at start, {after_warm} kB after "
                f"{warm['requests']:,} requests, {after} kB after {res['requests']:,} more")
        finally:
            srv.stop()
    results["rss"] = rows


# key, setup (configuration), which cookies the request carries
CG_VARIANTS = [
    ("noauth", "noauth", "bench"),
    ("gpt_auth", "gpt_auth", "bench"),
    ("gpt_auth_100k", "gpt_auth_100k", "bench"),
    ("gpt_auth_quota", "gpt_auth_quota", "bench"),
    ("secure_link", "secure_link", "bench"),
    # To explain the numbers: an allowlist of one entry, and requests carrying only the
    # gpt_auth cookie (the module then has no other cookies to scan past).
    ("gpt_auth_1", "gpt_auth_1", "bench"),
    ("noauth_own", "noauth", "own"),
    ("gpt_auth_own", "gpt_auth", "own"),
    # Every request with a different (valid) session cookie, more than the module's cache of
    # verified cookies holds: the first request of a session, every time.
    ("gpt_auth_distinct", "gpt_auth", "distinct"),
    # The same location in a configuration that also fronts an AI API elsewhere: what the AI
    # features (their filters and log handler, installed then) cost other locations.
    ("gpt_auth_ai_elsewhere", "gpt_auth_ai_elsewhere", "bench"),
    ("gpt_auth_two", "gpt_auth_two", "bench"),
    # The quota zone shared through a local Redis (the rounds run in the same worker, so the
    # count includes them): against gpt_auth_quota, what the sharing costs.
    ("gpt_auth_quota_redis", "gpt_auth_quota_redis", "bench"),
]


def callgrind_run(st, mat, key, setup, port, warm, measured, what):
    """nginx of `setup` under callgrind: `warm()`, a dump, `measured()`, a dump; returns the
    parsed second dump (dumps are incremental: it holds exactly the measured requests).
    `warm` and `measured` return how many answers were wrong."""
    srv = Nginx(st, mat, setup, f"cg-{key}", port, st.port_base + 9)
    cg_file = os.path.join(srv.prefix, "callgrind.out")
    log(f"callgrind {key}: starting nginx under valgrind")
    srv.start(callgrind_out=cg_file)
    try:
        bad = warm()
        cg_dump(srv, "warm")
        t0 = time.time()
        bad += measured()
        cg_dump(srv, "measured")
        if bad:
            raise Abort(f"callgrind {key}: {bad} {what} were not as expected")
        log(f"callgrind {key}: measured {what} in {time.time() - t0:.1f}s")
    finally:
        srv.stop()
    dumps = sorted((p for p in os.listdir(srv.prefix) if re.fullmatch(r"callgrind\.out\.\d+", p)),
                   key=lambda p: int(p.rsplit(".", 1)[1]))
    if len(dumps) < 2:
        raise Abort(f"callgrind {key}: expected 2 dumps in {srv.prefix}, found {dumps}")
    cg = parse_callgrind(os.path.join(srv.prefix, dumps[1]))
    cg["path"] = os.path.join(srv.prefix, dumps[1])
    return cg


# glibc's allocator internals (self instructions), for the shared-zone comparison.
MALLOC_INTERNALS = {"_int_malloc", "_int_free", "unlink_chunk.constprop.0", "malloc",
                    "free", "_mid_memalign.constprop.0", "malloc_consolidate", "_int_memalign"}


def start_redis(st):
    """A redis-server for the shared zone, on loopback, without persistence."""
    port = st.port_base + 7
    redis = spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", WORK],
                  log_path=os.path.join(WORK, "redis.log"))
    wait_port(port, redis, "redis-server", 30)
    return redis, port


def redis_keys(port, pattern):
    r = subprocess.run(["redis-cli", "-p", str(port), "--scan", "--pattern", pattern],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
    return r.stdout.decode(errors="replace").split()


def phase_callgrind(st, mat, results):
    out = {}
    for i, (key, setup, cookies) in enumerate(CG_VARIANTS):
        if st.cg_only and key not in st.cg_only:
            continue
        redis = None
        if key == "gpt_auth_quota_redis":
            redis, redis_port = start_redis(st)
        if cookies == "bench":
            jar = [mat.bench_cookie]
        elif cookies == "own":
            jar = [f"gpt_auth={mat.valid}"]
        else:
            jar = [f"{mat.sl_valid}; gpt_auth={v}" for v in distinct_cookies(mat)]
        client = None

        def warm():
            nonlocal client
            client = KeepAliveClient(st.port_base + 10 + i, jar)
            return client.run(st.cg_warm)

        def measured():
            bad = client.run(st.cg_requests)
            client.close()
            return bad

        try:
            cg = callgrind_run(st, mat, key, setup, st.port_base + 10 + i, warm, measured,
                               f"{st.cg_requests} requests (200 {BODY!r})")
            if redis is not None:
                # The rounds ran: the user's day hash is in Redis.
                if not redis_keys(redis_port, "bench:bench:d:*"):
                    raise Abort(f"callgrind {key}: no counts reached Redis (see the error log)")
        finally:
            if redis is not None:
                stop(redis)
        out[key] = cg
        log(f"callgrind {key}: {cg['total'] / st.cg_requests:,.0f} instructions/request")
    results["callgrind"] = out


class StreamClient:
    """Streamed chat requests over one keep-alive connection; reads each chunked answer whole
    and counts its events."""

    def __init__(self, port, cookie, events):
        self.port = port
        self.events = events
        self.req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Cookie: {cookie}\r\nContent-Type: application/json\r\n"
                    f"X-Mock-Events: {events}\r\nX-Mock-Delay-Ms: {AI_DELAY_MS}\r\n"
                    f"Content-Length: {len(AI_BODY)}\r\n\r\n").encode() + AI_BODY
        self.sock = None
        self.buf = b""

    def _read(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in a response")
        self.buf += chunk

    def one(self):
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.buf = b""
        self.sock.sendall(self.req)
        while b"\r\n\r\n" not in self.buf:
            self._read()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        # nginx closes a keep-alive connection after keepalive_requests (1000) answers.
        closing = b"\r\nconnection: close" in head.lower()
        if b"chunked" not in head.lower():
            raise Abort(f"AI bench: expected a chunked answer, got:\n{head.decode('latin-1')}")
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._read()
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self._read()
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if size == 0:
                if closing:
                    self.close()
                return status, body

    def run(self, n):
        """Returns how many answers were not a 200 with every event."""
        bad = 0
        for _ in range(n):
            status, body = self.one()
            # role chunk, the events, the finish chunk, [DONE]: the usage chunk the module
            # asked for is never passed on.
            if status != 200 or body.count(b"data: ") != self.events + 3 or b'"usage": {' in body:
                bad += 1
        return bad

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def inclusive(cg, pattern):
    """Inclusive instructions of the calls into functions whose name matches `pattern` from
    functions that do not (so recursion and inner calls are not counted twice)."""
    rx = re.compile(pattern)
    return sum(ir for (_, caller, _, callee), ir in cg["incl"].items()
               if callee and rx.search(callee) and not (caller and rx.search(caller)))


def phase_ai(st, mat, results):
    """Instructions per streamed answer: plain nginx proxying it, behind `gpt_auth on`, and
    metered; the request body's model scan against nginx's reading of that body."""
    with open(os.path.join(WORK, "prices"), "w") as f:
        f.write("gpt-4o-mini input=0.15 cached_input=0.075 output=0.60\n")
    ai_port = st.port_base + 8
    mock = spawn([sys.executable, os.path.join(REPO, "t", "ai", "mock_provider.py"), "--port",
                  str(ai_port)], log_path=os.path.join(WORK, "mock_provider.log"))
    wait_port(ai_port, mock, "the mock provider", 30)
    out = {}
    n = st.cg_ai_requests
    for i, (key, _label, _tpl, events) in enumerate(AI_VARIANTS):
        if st.cg_only and key not in st.cg_only:
            continue
        port = st.port_base + 30 + i
        client = None

        def warm():
            nonlocal client
            client = StreamClient(port, f"gpt_auth={mat.valid}", events)
            return client.run(max(20, n // 10))

        def measured():
            bad = client.run(n)
            client.close()
            return bad

        cg = callgrind_run(st, mat, key, key, port, warm, measured, f"{n} streamed answers")
        out[key] = cg
        log(f"callgrind {key}: {cg['total'] / n:,.0f} instructions/answer")
    stop(mock)
    results["ai"] = out


def ai_summary(st, ai):
    """The AI numbers per answer: (rows, checks)."""
    n = st.cg_ai_requests
    per = {k: c["total"] / n for k, c in ai.items()}
    rows, checks = [], []
    for key, label, _, _ in AI_VARIANTS:
        if key in per:
            a = alloc_stats(ai[key], st.module)
            rows.append((label, per[key], a["module_alloc"] / n))
    if {"ai_proxy", "ai_auth", "ai_meter"} <= per.keys():
        m, a = ai["ai_meter"], ai["ai_auth"]
        # The answer's metering: the module's header and body filters, without the nginx
        # filters they hand the answer on to (static functions of the nginx binary, which
        # callgrind names by address), metered minus `gpt_auth on` (which has no body filter).
        def own_filters(cg):
            mod = os.path.basename(st.module)
            onward = sum(ir for (cob, _cfn, ob, fn), ir in cg["incl"].items()
                         if cob and mod in cob and ob and mod not in ob
                         and fn and fn.startswith("0x"))
            return inclusive(cg, r"gpt_auth_module::(header|body)_filter$") - onward

        whole = per["ai_meter"] - per["ai_auth"]
        answer = (own_filters(m) - own_filters(a)) / n
        settling = (inclusive(m, r"gpt_auth_module::log_handler$")
                    - inclusive(a, r"gpt_auth_module::log_handler$")) / n
        request_side = whole - answer - settling
        share = answer / per["ai_proxy"]
        checks.append((f"metering a {AI_EVENTS}-event answer < 10 % of proxying it (callgrind)",
                       f"{answer:+,.0f} instructions = {share:.1%} of {per['ai_proxy']:,.0f}",
                       share < 0.10))
        rows.append(("metering in all (request, answer, settlement)", whole, None))
        rows.append(("… the request (body read and checked, budget; the rest)", request_side,
                     None))
        rows.append(("… reading the answer (the filters)", answer, None))
        rows.append(("… settling (log phase)", settling, None))
        scan = inclusive(m, r"gpt_auth_core::usage::request::parse")
        read = inclusive(m, r"^ngx_http_read_client_request_body$")
        checks.append(("the body's model scan costs less than nginx reading the body",
                       f"{scan / n:,.0f} vs {read / n:,.0f} instructions/request",
                       scan < read))
    if {"ai_meter", "ai_meter_10"} <= per.keys():
        a50 = alloc_stats(ai["ai_meter"], st.module)["module_alloc"] / n
        a10 = alloc_stats(ai["ai_meter_10"], st.module)["module_alloc"] / n
        checks.append(("no heap allocation per buffer: allocations do not grow with the stream",
                       f"{a10:.1f} (10 events) vs {a50:.1f} ({AI_EVENTS} events) per answer",
                       a50 - a10 < 1))
    return rows, checks


def callgrind_only(st, results):
    """BENCH_ONLY=callgrind: instructions per request of each callgrind variant, printed."""
    mat = Material(st)
    phase_callgrind(st, mat, results)
    if not st.cg_only or any(k.startswith("ai_") for k in st.cg_only):
        phase_ai(st, mat, results)
        rows, checks = ai_summary(st, results["ai"])
        for label, per, allocs in rows:
            extra = "" if allocs is None else f", {allocs:.1f} module allocations"
            print(f"{label:48} {per:10,.0f} instructions/answer{extra}")
        for what, value, ok in checks:
            print(f"{'met' if ok else 'NOT MET'}: {what}: {value}")
    cg = results["callgrind"]
    base = cg.get("noauth", {}).get("total")
    for key, c in cg.items():
        per = c["total"] / st.cg_requests
        delta = f" ({per - base / st.cg_requests:+,.0f} vs noauth)" if base else ""
        print(f"{key:16} {per:10,.0f} instructions/request{delta}")
    return 0


def cg_dump(srv, label):
    before = set(os.listdir(srv.prefix))
    run(["callgrind_control", f"--dump={label}", str(srv.proc.pid)], timeout=120)
    deadline = time.time() + 60
    while time.time() < deadline:
        new = [p for p in set(os.listdir(srv.prefix)) - before if p.startswith("callgrind.out.")]
        if new:
            path = os.path.join(srv.prefix, new[0])
            # Written completely once the totals line is there.
            if "totals:" in read_tail(path, 3) or "summary:" in read_tail(path, 3):
                return
        time.sleep(0.2)
    raise Abort(f"callgrind_control --dump produced no file in {srv.prefix}")


# ---------------------------------------------------------------------------------------------
# Report


def machine(st):
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            return r.stdout.decode(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open(st.module, "rb") as f:
        module_sha = hashlib.sha256(f.read()).hexdigest()[:16]
    head = first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "crates",
                            "Cargo.toml", "Cargo.lock"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL).stdout.strip()
    pyver = first_line([os.path.join(st.venv, "bin", "python"), "-c",
                        "import sys; from importlib.metadata import version as v; "
                        "print('Python', sys.version.split()[0], 'Flask', v('flask'), "
                        "'gunicorn', v('gunicorn'))"])
    return [
        ("host", socket.gethostname()),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu),
        ("kernel", " ".join(os.uname()[2:3])),
        ("nginx", first_line([st.nginx, "-V"])),
        ("module", f"`{st.module}` (sha256 {module_sha}…), repository HEAD {head}"
                   + (" with uncommitted changes in src/ or crates/" if dirty else "")),
        ("rustc", first_line(["rustc", "-V"])),
        ("load", f"{first_line(['wrk', '-v'])}; {first_line(['valgrind', '--version'])}"),
        ("auth service", pyver + f", {st.gunicorn_workers} sync workers"),
    ]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def report(st, results, elapsed):
    timing = results["timing"]
    cg = results.get("callgrind", {})
    M = st.cg_requests
    base = {k: median([r[k] for r in timing["noauth"]]) for k in ("rps", "p50", "p99")}
    base_ir = cg["noauth"]["total"] / M if "noauth" in cg else None
    base_alloc = alloc_stats(cg["noauth"], st.module) if "noauth" in cg else None

    lines = []
    add = lines.append
    add("# gpt_auth benchmark" + (" (quick mode)" if st.quick else ""))
    add("")
    add("Produced by `make bench` (bench/run.sh, bench/bench.py); see bench/README.md for the "
        "method.")
    if st.note:
        add("")
        add(f"Note: {st.note}")
    add("")
    add("## Machine")
    add("")
    for k, v in machine(st):
        add(f"- {k}: {v}")
    add(f"- settings: {st.rounds} interleaved rounds × {st.duration}s per setup, "
        f"`wrk -t1 -c{st.connections} --latency`, nginx (and gunicorn) on CPU {st.server_cpu}, "
        f"wrk on CPU {st.client_cpu}; callgrind: {st.cg_warm} warm-up + {M} measured requests "
        f"over keep-alive; RSS: {st.rss_requests:,} requests; bench took {elapsed / 60:.1f} min")
    if "busy_before" in results:
        b0, b1 = results["busy_before"], results["busy_during"]
        add(f"- CPU used by other processes: {b0['other']:.1%} of a CPU just before timing, "
            f"{b1['other']:.1%} while timing ({b1['top'] or 'none above 1 %'}); steal time "
            f"(CPU taken by the hypervisor) {b0['steal']:.1%} before, {b1['steal']:.1%} while "
            "timing. Above a few % the req/s and latencies are suspect; instruction counts "
            "are not affected.")
        add(f"- wrk runs repeated because other processes used more than {st.max_other:.0%} of "
            f"a CPU meanwhile: {results.get('repeated', 0)}; runs kept despite that: "
            f"{sum(1 for rs in results['timing'].values() for x in rs if x['other'] > st.max_other)}")
    add("")
    add("## Results")
    add("")
    add("| setup | req/s | ratio to no auth | p50 | p99 | instructions/request (Δ vs no auth) "
        "| mallocs/request (from the module) |")
    add("|---|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name, label, _, _, measured in SETUPS:
        rps = median([r["rps"] for r in timing[name]])
        p50 = median([r["p50"] for r in timing[name]])
        p99 = median([r["p99"] for r in timing[name]])
        row = {"rps": rps, "p50": p50, "p99": p99, "ratio": rps / base["rps"]}
        if measured and name in cg:
            ir = cg[name]["total"] / M
            a = alloc_stats(cg[name], st.module)
            row.update(ir=ir, alloc=a)
            ir_s = f"{ir:,.0f}" + ("" if name == "noauth" else f" ({ir - base_ir:+,.0f})")
            alloc_s = f"{(a['alloc'] + a['aligned']) / M:.2f} ({a['module_alloc'] / M:.2f})"
        else:
            ir_s = "n/a"
            alloc_s = "n/a"
        summary[name] = row
        add(f"| {label} | {rps:,.0f} | {row['ratio']:.3f} | {p50:.3f} ms | {p99:.3f} ms "
            f"| {ir_s} | {alloc_s} |")
    add("")
    add("req/s, p50 and p99 are medians over the rounds; the ratio is median req/s over the "
        "no-auth median. Instructions are user-space instructions per request counted by "
        "callgrind (Ir of the measured requests ÷ their number); mallocs are calls to "
        "malloc/calloc/realloc/posix_memalign per request (nginx's own request pools "
        "included), in parentheses those made from the module's code.")
    add("")

    # Allocation proof.
    if "gpt_auth" in cg and base_alloc:
        add("### Heap allocations on the accept path")
        add("")
        add("| setup | malloc+calloc+realloc | posix_memalign & co. | free | from the module "
            "(alloc / free) | allocating callers |")
        add("|---|---:|---:|---:|---:|---|")
        for name in ("noauth", "gpt_auth", "gpt_auth_100k", "secure_link"):
            if name not in cg:
                continue
            a = alloc_stats(cg[name], st.module)
            callers = ", ".join(f"`{short(k, 60)}` {n / M:.2f}"
                                for k, n in sorted(a["callers"].items(), key=lambda kv: -kv[1])
                                if n / M >= 0.005)
            add(f"| {LABEL[name]} | {a['alloc'] / M:.3f} | {a['aligned'] / M:.3f} "
                f"| {a['free'] / M:.3f} | {a['module_alloc'] / M:.3f} / {a['module_free'] / M:.3f} "
                f"| {callers} |")
        add("")
        add("Calls per request over the measured requests, from outside libc (glibc's "
            "posix_memalign calls malloc internally; that is not counted again). nginx's pools "
            "come from posix_memalign, large pool allocations from malloc (`ngx_alloc`). "
            "`from the module`: calls whose caller is code in the module's .so (Rust's "
            "allocator calls malloc from there).")
        add("")

    # Per-round numbers.
    add("### Rounds (req/s)")
    add("")
    add("| setup | " + " | ".join(f"round {i + 1}" for i in range(st.rounds))
        + " | ratio per round (min–max) |")
    add("|---|" + "---:|" * (st.rounds + 1))
    for name, label, *_ in SETUPS:
        ratios = [r["rps"] / b["rps"] for r, b in zip(timing[name], timing["noauth"])]
        add(f"| {label} | " + " | ".join(f"{r['rps']:,.0f}" + ("*" if r["other"] > st.max_other
                                                                 else "")
                                         for r in timing[name])
            + f" | {min(ratios):.3f}–{max(ratios):.3f} |")
    add("")
    add(f"\\* other processes used more than {st.max_other:.0%} of a CPU during this run (kept "
        f"after {st.retries} repetitions).")
    add("")

    # RSS.
    if results.get("rss"):
        add("### Worker memory")
        add("")
        add("| setup | VmRSS at start | after warm-up | after N more requests | growth |")
        add("|---|---:|---:|---:|---:|")
        for r in results["rss"]:
            add(f"| {LABEL[r['setup']]} | {r['start']:,} kB | {r['warm']:,} kB "
                f"({r['warm_requests']:,} requests) | {r['after']:,} kB ({r['requests']:,} requests) "
                f"| {r['after'] - r['warm']:+,} kB |")
        add("")

    # Criterion.
    if results.get("criterion"):
        add("### gpt-auth-core micro-benchmarks (criterion, `cargo bench -p gpt-auth-core`)")
        add("")
        add("| benchmark | what | median time | per second |")
        add("|---|---|---:|---:|")
        for name, what, ns, lo, hi in results["criterion"]:
            add(f"| `{name}` | {what} | {fmt_time_ns(ns)} | {1e9 / ns:,.0f} |")
        add("")

    # Targets.
    add("## Targets (issue 4)")
    add("")
    checks = []
    g = summary["gpt_auth"]
    # Timing-based targets are not judged from disturbed runs (see BENCH_MAX_OTHER).
    disturbed = any(x["other"] > st.max_other for rs in timing.values() for x in rs)

    def timed(ok):
        return None if disturbed else ok

    checks.append(("`gpt_auth` ≥ 0.97× no-auth req/s", f"{g['ratio']:.3f}×",
                   timed(g["ratio"] >= 0.97)))
    if "ir" in g:
        d = g["ir"] - base_ir
        checks.append(("`gpt_auth` ≤ +1,500 instructions/request", f"{d:+,.0f}", d <= 1500))
    handler = inclusive_of(results.get("callgrind", {}).get("gpt_auth", {"incl": {}}),
                           "access_handler")
    if handler:
        per = handler[0] / st.cg_requests
        checks.append(("the access check (the access handler, inclusive) ≤ 700 "
                       "instructions/request (issue 10)", f"{per:,.0f}", per <= 700))
    a100 = summary["gpt_auth_100k"]
    if "ir" in a100 and "ir" in g:
        rel = (a100["ir"] - g["ir"]) / g["ir"]
        checks.append(("100k allowlist within 2 % of no allowlist (instructions/request)",
                       f"{rel * 100:+.2f} % ({a100['ir'] - g['ir']:+,.0f})", abs(rel) <= 0.02))
    gq = summary.get("gpt_auth_quota", {})
    if "ir" in gq and "ir" in g:
        dq = gq["ir"] - g["ir"]
        checks.append(("quota ≤ +1,000 instructions/request over the plain check (issue 6)",
                       f"{dq:+,.0f}", dq <= 1000))
    rel_rps = a100["rps"] / g["rps"] - 1
    checks.append(("100k allowlist within 2 % of no allowlist (req/s)", f"{rel_rps * 100:+.2f} %",
                   timed(abs(rel_rps) <= 0.02)))
    for name in ("gpt_auth", "gpt_auth_100k", "gpt_auth_quota"):
        if "alloc" in summary.get(name, {}):
            a = summary[name]["alloc"]
            extra = (a["alloc"] + a["aligned"] - base_alloc["alloc"] - base_alloc["aligned"]) / M
            checks.append((f"0 heap allocations from the module ({name})",
                           f"{a['module_alloc'] / M:.3f}/request from the module, "
                           f"{extra:+.3f}/request vs no auth", a["module_alloc"] == 0))
    for r in results.get("rss", []):
        growth = r["after"] - r["warm"]
        checks.append((f"no RSS growth over {r['requests']:,} requests ({r['setup']})",
                       f"{growth:+,} kB", growth <= 256))
    d99 = g["p99"] - base["p99"]
    checks.append(("`gpt_auth` p99 within 0.02 ms of no auth", f"{d99:+.3f} ms",
                   timed(d99 <= 0.02)))
    ai_rows, ai_checks = ai_summary(st, results.get("ai", {}))
    checks.extend(ai_checks)
    if "gpt_auth_quota_redis" in cg and "gpt_auth_quota" in cg:
        q, qr = cg["gpt_auth_quota"]["total"] / M, cg["gpt_auth_quota_redis"]["total"] / M

        def in_malloc(c):
            # glibc's allocator inside (nginx's request pools come from posix_memalign)
            return sum(v for (ob, fn), v in c["self"].items()
                       if "libc.so" in ob and fn in MALLOC_INTERNALS) / M

        heap = in_malloc(cg["gpt_auth_quota_redis"]) - in_malloc(cg["gpt_auth_quota"])
        checks.append(("a quota zone shared through Redis: within 2 % of a local zone "
                       "(instructions/request, the rounds of worker 0 included; issue 13)",
                       f"{qr:,.0f} vs {q:,.0f} ({(qr - q) / q * 100:+.2f} %; of the difference "
                       f"{heap:+,.0f} in glibc's malloc)", abs(qr - q) <= 0.02 * q))
    crit_ns = {r[0]: r[2] for r in results.get("criterion", [])}
    if "idtoken_verify/rs256" in crit_ns:
        per_s = 1e9 / crit_ns["idtoken_verify/rs256"]
        checks.append(("ID tokens verified (RS256, warm key set, criterion): at least 10,000 per "
                       "second per core (issue 14)", f"{per_s:,.0f}/s", per_s >= 10_000))
    if "gpt_auth_ai_elsewhere" in cg and "gpt_auth_two" in cg:
        d = (cg["gpt_auth_ai_elsewhere"]["total"] - cg["gpt_auth_two"]["total"]) / M
        checks.append(("a location without AI features, another one fronting an AI API: at most "
                       "+100 instructions/request (the body filter's and log handler's calls; "
                       "without an AI API they are not installed)", f"{d:+,.0f}", d <= 100))
    add("| target | measured | met |")
    add("|---|---:|:---:|")
    for what, value, ok in checks:
        verdict = "not judged (timing disturbed)" if ok is None else "yes" if ok else "**no**"
        add(f"| {what} | {value} | {verdict} |")
    add("")
    add("RSS: growth of at most 256 kB counts as none (one leaked byte per request would show "
        "as about 1 MB over 1,000,000 requests).")
    add("")
    if ai_rows:
        add(f"## AI APIs: one streamed answer of {AI_EVENTS} events (callgrind)")
        add("")
        add("| setup | instructions/answer | allocations/answer from the module |")
        add("|---|---:|---:|")
        for label, per, allocs in ai_rows:
            add(f"| {label} | {per:,.0f} | {'' if allocs is None else f'{allocs:.1f}'} |")
        add("")
        add(f"{st.cg_ai_requests} answers over keep-alive from t/ai/mock_provider.py (one TCP "
            f"write per event, one every {AI_DELAY_MS} ms; `proxy_buffering off`); metering = "
            "metered minus `gpt_auth on`.")
        add("")

    # Profile.
    if "gpt_auth" in cg and "noauth" in cg:
        add("## Where the instructions go (callgrind, self instructions per request)")
        add("")
        fb, ob_b = by_function(cg["noauth"])
        for name in ("gpt_auth", "gpt_auth_100k", "gpt_auth_quota", "secure_link"):
            if name not in cg:
                continue
            fg, ob_g = by_function(cg[name])
            add(f"### {LABEL[name]} minus no auth")
            add("")
            add("| function | no auth | this setup | Δ |")
            add("|---|---:|---:|---:|")
            deltas = sorted(((fg.get(f, 0) - fb.get(f, 0), f) for f in set(fg) | set(fb)),
                            reverse=True)
            shown = [d for d in deltas if abs(d[0]) / M >= 5][:15]
            for delta, f in shown:
                add(f"| `{short(f)}` | {fb.get(f, 0) / M:,.0f} | {fg.get(f, 0) / M:,.0f} "
                    f"| {delta / M:+,.0f} |")
            add("")
            add("By object: " + ", ".join(
                f"{o} {(ob_g.get(o, 0) - ob_b.get(o, 0)) / M:+,.0f}"
                for o in sorted(set(ob_g) | set(ob_b),
                                key=lambda o: -abs(ob_g.get(o, 0) - ob_b.get(o, 0)))
                if abs(ob_g.get(o, 0) - ob_b.get(o, 0)) / M >= 1))
            add("")
        handler = inclusive_of(cg["gpt_auth"], "access_handler")
        if handler:
            add(f"The module's access handler (inclusive of everything it calls): "
                f"{handler[0] / M:,.0f} instructions/request over {handler[1] / M:.2f} "
                f"calls/request (`{short(handler[2])}`).")
            add("")
        add_explanations(add, st, results, cg, M)
    return "\n".join(lines) + "\n", checks


def add_explanations(add, st, results, cg, M):
    ir = {k: v["total"] / M for k, v in cg.items()}
    add("### Variants (callgrind only)")
    add("")
    add("| variant | instructions/request | compared with |")
    add("|---|---:|---|")
    if "gpt_auth_1" in ir:
        add(f"| {LABEL['gpt_auth_1']} | {ir['gpt_auth_1']:,.0f} | "
            f"{ir['gpt_auth_1'] - ir['gpt_auth']:+,.0f} vs no allowlist; the 100k list "
            f"{ir['gpt_auth_100k'] - ir['gpt_auth_1']:+,.0f} vs this |")
    if "noauth_own" in ir and "gpt_auth_own" in ir:
        add(f"| no auth, request with only the gpt_auth cookie | {ir['noauth_own']:,.0f} | "
            f"{ir['noauth_own'] - ir['noauth']:+,.0f} vs the benchmark request |")
        add(f"| `gpt_auth on`, request with only the gpt_auth cookie | {ir['gpt_auth_own']:,.0f} "
            f"| {ir['gpt_auth_own'] - ir['noauth_own']:+,.0f} vs no auth with the same request |")
    if "gpt_auth_distinct" in ir:
        a = alloc_stats(cg["gpt_auth_distinct"], st.module)
        add(f"| `gpt_auth on`, a different session on every request ({DISTINCT_SESSIONS:,} "
            f"cookies in turn) | {ir['gpt_auth_distinct']:,.0f} | "
            f"{ir['gpt_auth_distinct'] - ir['noauth']:+,.0f} vs no auth; allocator calls from "
            f"the module {a['module_alloc'] / M:.2f}/request, frees {a['module_free'] / M:.2f} |")
    add("")
    add("The benchmark request carries the secure_link cookies before the gpt_auth cookie "
        "(the same bytes for every setup), so the module scans past them; the last rows show "
        "the module's cost when its cookie is the only one.")
    add("")

    # SHA-256: valgrind's virtual CPU has no SHA extensions. Shown for the first variant that
    # computes an HMAC per request (with a cache of verified cookies, the cached path does not).
    for key, base in (("gpt_auth", "noauth"), ("gpt_auth_distinct", "noauth")):
        if key not in cg:
            continue
        sha_ir = sha_calls = 0
        for (_ob, fn), v in cg[key]["self"].items():
            if fn and "sha256" in fn and "compress" in fn:
                sha_ir += v
        for edge, n in cg[key]["calls"].items():
            if edge[3] and "sha256" in edge[3] and "compress" in edge[3] \
                    and "sha256" not in (edge[1] or ""):
                sha_calls += n
        if sha_ir / M < 100:
            continue
        with open("/proc/cpuinfo") as f:
            has_sha = any(line.startswith("flags") and " sha_ni" in line for line in f)
        delta = ir[key] - ir[base]
        add("### SHA-256 under valgrind")
        add("")
        add(f"In `{key}`, of the module's {delta:+,.0f} instructions/request, {sha_ir / M:,.0f} are "
            f"SHA-256 block compression (`sha2::sha256::compress256`, {sha_calls / M:.2f} "
            "calls/request, one per 64-byte block, i.e. about "
            f"{sha_ir / max(sha_calls, 1):,.0f} instructions per block): the HMAC of the cookie. "
            "valgrind's virtual CPU does not report the SHA extensions, so under callgrind the "
            "sha2 crate always runs its portable code"
            + (" — while natively this CPU has them (`sha_ni` in /proc/cpuinfo) and the module "
               "uses them" if has_sha else "; this CPU has no SHA extensions either")
            + f". Without the compression the module adds {delta - sha_ir / M:+,.0f} "
            "instructions/request.")
        crit = {r[0]: r[2] for r in results.get("criterion", [])}
        if "session/decode" in crit and "session/decode (force-soft)" in crit:
            add(f"Natively (criterion): `session::decode` takes {fmt_time_ns(crit['session/decode'])}"
                f" as built, {fmt_time_ns(crit['session/decode (force-soft)'])} with sha2's "
                "portable code (`--features sha2/force-soft`).")
        add("")
        break


def inclusive_of(cg, needle):
    tot = calls = 0
    name = None
    for key, ir in cg["incl"].items():
        fn = key[3] or ""
        if needle in fn and "gpt_auth" in (key[2] or ""):
            tot += ir
            calls += cg["calls"][key]
            name = fn
    return (tot, calls, name) if name else None


def short(fn, width=90):
    return fn if len(fn) <= width else fn[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nginx", required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--venv", required=True)
    args = ap.parse_args()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    t0 = time.time()
    st = Settings(args)
    os.makedirs(WORK, exist_ok=True)
    results = {}
    try:
        if st.only == "callgrind":
            return callgrind_only(st, results)
        phase_cargo(st, results)

        log("preparing keys, cookies, a 100k allowlist and configurations")
        mat = Material(st)
        servers = {}
        auth_port = st.port_base + 9
        for i, (name, *_rest) in enumerate(SETUPS):
            servers[name] = Nginx(st, mat, name, name, st.port_base + i, auth_port)
            servers[name].test()
        start_auth_service(st, mat, auth_port)
        for name, srv in servers.items():
            srv.start()
            n = verify(mat, name, srv.port)
            log(f"verified {name} on 127.0.0.1:{srv.port} ({n} checks)")

        phase_timing(st, mat, servers, results)
        stop_all()

        phase_rss(st, mat, results)
        phase_callgrind(st, mat, results)
        phase_ai(st, mat, results)

        text, checks = report(st, results, time.time() - t0)
        os.makedirs(RESULTS, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())
        day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        # A quick run is a smoke test: it never replaces latest.md.
        names = [f"{day}-{host}-quick.md"] if st.quick else [f"{day}-{host}.md", "latest.md"]
        for name in names:
            with open(os.path.join(RESULTS, name), "w") as f:
                f.write(text)
        print()
        print(text)
        log(f"written to {' and '.join('bench/results/' + n for n in names)} "
            f"({(time.time() - t0) / 60:.1f} min)")
        missed = [c[0] for c in checks if c[2] is False]
        if missed:
            log(f"{len(missed)} target(s) not met (a result, not a failure of the bench): "
                + "; ".join(missed))
    except Abort as e:
        print(f"\nbench: FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
