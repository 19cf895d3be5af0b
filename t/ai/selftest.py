#!/usr/bin/env python3
"""Self-test of t/ai: the mock provider against the official SDKs (through t/ai/client.py) and
against the wire formats of the API references (raw sockets). No nginx.

    build/pyenv/bin/python t/ai/selftest.py [-v] [-j JOBS]

(t/ai/selftest.sh builds the venv first.) Prints one line per check and, last,
"N passed, N failed"; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no t/ai/__pycache__ from importing the mock
import mock_provider as mp  # noqa: E402  (the expectations come from the mock's own rules)

PY = sys.executable
CLIENT = os.path.join(HERE, "client.py")
MOCK = os.path.join(HERE, "mock_provider.py")

E = 12          # content deltas per answer in most checks
SEED = 3
PROMPT = "Grüße aus Köln — 日本語 🙂!"  # 37 UTF-8 bytes: 10 tokens
SYSTEM = "Be brief."                   # 9 bytes: 3 tokens


def expected_text(seed=SEED, n=E):
    return "".join(mp.make_pieces(seed, n))


def pieces(seed=SEED, n=E):
    return mp.make_pieces(seed, n)


# The documented rule, restated here rather than taken from the mock: ceil(UTF-8 bytes / 4).
IT = 10                 # input tokens of a call with --prompt PROMPT
IT_SYS = 10 + 3         # ... and --system SYSTEM
assert IT == -(-len(PROMPT.encode()) // 4) and IT_SYS == IT + -(-len(SYSTEM.encode()) // 4)


class Results:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            if self.verbose:
                print(f"ok - {name}")
        else:
            self.failed += 1
            print(f"not ok - {name}" + (f"\n    {detail}" if detail else ""))
        return cond


# -------------------------------------------------------------------------------------------------
# The mock process

class Mock:
    def __init__(self, tmp, name, extra=()):
        self.log = os.path.join(tmp, f"{name}.log")
        port_file = os.path.join(tmp, f"{name}.port")
        self.proc = subprocess.Popen([sys.executable, MOCK, "--port", "0", "--log", self.log,
                                      "--port-file", port_file, *extra],
                                     stdout=subprocess.DEVNULL, stderr=open(
                                         os.path.join(tmp, f"{name}.err"), "w"))
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"selftest: the mock {name} did not start")
            time.sleep(0.05)
        self.port = int(open(port_file).read())

    def entries(self):
        with open(self.log, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -------------------------------------------------------------------------------------------------
# Client runs (in parallel) and their checks

class Case:
    counter = 0

    def __init__(self, name, sdk, call, *args, check=None, mock=None, timeout=60):
        Case.counter += 1
        self.id = f"t{Case.counter:04d}"
        self.name = name
        self.sdk = sdk
        self.mock = mock
        self.argv = ["--sdk", sdk, "--call", call, *args, "--header", f"X-Test-Id: {self.id}"]
        self.check = check
        self.timeout = timeout
        self.result = None
        self.log = None
        self.rc = None
        self.stderr = ""

    def run(self, default_mock):
        m = self.mock or default_mock
        base = f"http://127.0.0.1:{m.port}" + ("/v1" if self.sdk == "openai" else "")
        argv = [PY, CLIENT, "--base-url", base, *self.argv]
        if "--api-key" not in self.argv and "--cookie" not in self.argv and \
                "--x-api-key" not in self.argv:
            argv += ["--api-key", "sk-selftest"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        self.rc = p.returncode
        self.stderr = p.stderr
        try:
            self.result = json.loads(p.stdout)
        except json.JSONDecodeError:
            self.result = {"ok": None, "unparsable_stdout": p.stdout[-2000:]}


def sub(d, keys):
    return {k: (d or {}).get(k) for k in keys}


def usage_openai(pt, ct):
    return {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}


def usage_responses(it, ot):
    return {"input_tokens": it, "output_tokens": ot, "total_tokens": it + ot}


def usage_anthropic(it, ot, cr=0, cc=0):
    return {"input_tokens": it, "output_tokens": ot, "cache_read_input_tokens": cr,
            "cache_creation_input_tokens": cc}


OAI_U = ["prompt_tokens", "completion_tokens", "total_tokens"]
RESP_U = ["input_tokens", "output_tokens", "total_tokens"]
ANT_U = ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]


def build_cases():
    cases = []
    add = cases.append
    text = expected_text()
    common = ["--prompt", PROMPT, "--seed", str(SEED), "--mock", f"events={E}"]

    # ---- content and usage, non-stream and stream, for every generating API
    def ok_content(r, log, *, usage_keys, usage, content=text, log_usage="same",
                   stream=None, include_usage=None):
        out = [("ok", r.get("ok") is True, r)]
        out.append(("content", r.get("content") == content, (r.get("content"), content)))
        out.append(("usage", (r.get("usage") is None if usage is None
                              else sub(r.get("usage"), usage_keys) == usage),
                    (r.get("usage"), usage)))
        out.append(("log entry found", log is not None, None))
        if log is not None:
            out.append(("log content", log.get("content") == text, log.get("content")))
            lu = log.get("usage")
            want = usage if log_usage == "same" else log_usage
            out.append(("log usage", (lu is None if want is None
                                      else sub(lu, usage_keys) == want), (lu, want)))
            out.append(("log status 200", log.get("status") == 200, log.get("status")))
            if stream is not None:
                out.append(("log stream flag", log.get("stream") is stream, log.get("stream")))
            if include_usage is not None:
                out.append(("log include_usage", log.get("include_usage") is include_usage,
                            log.get("include_usage")))
        return out

    u_chat = usage_openai(IT, E)
    u_resp = usage_responses(IT, E)
    u_ant = usage_anthropic(IT, E)

    add(Case("chat non-stream", "openai", "chat", *common, "--model", "gpt-4o",
             check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=u_chat, stream=False)
             + [("model echoed", r.get("model") == "gpt-4o", r.get("model")),
                ("finish_reason stop", r.get("finish_reason") == "stop", r.get("finish_reason"))]))
    add(Case("chat stream without include_usage", "openai", "chat", *common, "--stream",
             check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=None, log_usage=None,
                                           stream=True, include_usage=False)
             + [("no usage field on any chunk", r.get("usage_null_chunks") == 0, r),
                ("chunks = role + E + finish", r.get("chunks") == E + 2, r.get("chunks"))]))
    add(Case("chat stream with include_usage", "openai", "chat", *common, "--stream",
             "--include-usage",
             check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=u_chat, stream=True,
                                           include_usage=True)
             + [("usage:null on every other chunk", r.get("usage_null_chunks") == E + 2, r),
                ("chunks = role + E + finish + usage", r.get("chunks") == E + 3,
                 r.get("chunks"))]))
    add(Case("chat stream helper with include_usage", "openai", "chat", *common, "--stream",
             "--include-usage", "--helper",
             check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=u_chat)
             + [("final completion content", r.get("final_content") == text,
                 r.get("final_content"))]))
    add(Case("chat with system prompt counts both", "openai", "chat", *common, "--system",
             SYSTEM, check=lambda r, l: ok_content(r, l, usage_keys=OAI_U,
                                                   usage=usage_openai(IT_SYS, E))))
    add(Case("completions non-stream", "openai", "completions", *common, "--model",
             "gpt-3.5-turbo-instruct",
             check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=u_chat)))
    add(Case("completions stream with include_usage", "openai", "completions", *common,
             "--stream", "--include-usage",
             check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=u_chat)))
    add(Case("completions stream without include_usage", "openai", "completions", *common,
             "--stream", check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=None,
                                                       log_usage=None)))
    add(Case("responses non-stream", "openai", "responses", *common, "--model", "gpt-4.1",
             check=lambda r, l: ok_content(r, l, usage_keys=RESP_U, usage=u_resp)
             + [("model echoed", r.get("model") == "gpt-4.1", r.get("model")),
                ("status completed", r.get("status_field") == "completed", r)]))
    add(Case("responses stream", "openai", "responses", *common, "--stream", "--events",
             check=lambda r, l: ok_content(r, l, usage_keys=RESP_U, usage=u_resp, stream=True)
             + [("sequence_number 0..n-1", r.get("sequence_ok") is True, r),
                ("event order", (r.get("events") or [None])[0] == "response.created"
                 and r["events"][-1] == "response.completed"
                 and r["events"].count("response.output_text.delta") == E, r.get("events"))]))
    add(Case("responses stream helper", "openai", "responses", *common, "--stream", "--helper",
             check=lambda r, l: ok_content(r, l, usage_keys=RESP_U, usage=u_resp)
             + [("final response text", r.get("final_content") == text, r)]))
    add(Case("responses with instructions counts both", "openai", "responses", *common,
             "--system", SYSTEM,
             check=lambda r, l: ok_content(r, l, usage_keys=RESP_U,
                                           usage=usage_responses(IT_SYS, E))))
    add(Case("messages non-stream", "anthropic", "messages", *common, "--model",
             "claude-haiku-4-5",
             check=lambda r, l: ok_content(r, l, usage_keys=ANT_U, usage=u_ant)
             + [("model echoed", r.get("model") == "claude-haiku-4-5", r.get("model")),
                ("stop_reason end_turn", r.get("stop_reason") == "end_turn", r)]))
    add(Case("messages stream", "anthropic", "messages", *common, "--stream", "--events",
             check=lambda r, l: ok_content(r, l, usage_keys=ANT_U, usage=u_ant, stream=True)
             + [("message_start usage has output_tokens 1",
                 sub(r.get("usage_start"), ANT_U) == usage_anthropic(IT, 1), r),
                ("log usage_start", sub((l or {}).get("usage_start"), ANT_U)
                 == usage_anthropic(IT, 1), l),
                ("events (ping skipped by the SDK)", r.get("events") ==
                 ["message_start", "content_block_start"] + ["content_block_delta"] * E
                 + ["content_block_stop", "message_delta", "message_stop"], r.get("events"))]))
    add(Case("messages stream helper", "anthropic", "messages", *common, "--stream",
             "--helper", check=lambda r, l: ok_content(r, l, usage_keys=ANT_U, usage=u_ant)
             + [("final message text", r.get("final_content") == text, r)]))
    add(Case("messages with system counts both", "anthropic", "messages", *common, "--system",
             SYSTEM, check=lambda r, l: ok_content(r, l, usage_keys=ANT_U,
                                                   usage=usage_anthropic(IT_SYS, E))))
    add(Case("messages cache token headers", "anthropic", "messages", *common, "--stream",
             "--mock", "cache-read=7", "--mock", "cache-creation=5",
             check=lambda r, l: ok_content(r, l, usage_keys=ANT_U,
                                           usage=usage_anthropic(IT, E, 7, 5))))
    add(Case("messages stream, message_delta with full usage", "anthropic", "messages",
             *common, "--stream", "--mock", "anthropic-delta-usage=full",
             check=lambda r, l: ok_content(r, l, usage_keys=ANT_U, usage=u_ant)))
    add(Case("X-Mock-Input-Tokens overrides the count", "openai", "chat", *common, "--stream",
             "--include-usage", "--mock", "input-tokens=1234",
             check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=usage_openai(1234, E))))
    add(Case("default: 50 deltas, seed 0", "openai", "chat", "--stream", "--include-usage",
             check=lambda r, l: [("content", r.get("content") == expected_text(0, 50), r),
                                 ("usage", sub(r.get("usage"), OAI_U) ==
                                  usage_openai(2, 50), r.get("usage"))]))

    # ---- max tokens: a shorter answer, finished by length
    add(Case("chat max_completion_tokens 3", "openai", "chat", *common, "--max-tokens", "3",
             check=lambda r, l: [("content", r.get("content") == expected_text(SEED, 3), r),
                                 ("finish_reason length", r.get("finish_reason") == "length", r),
                                 ("usage", sub(r.get("usage"), OAI_U) == usage_openai(IT, 3),
                                  r)]))
    add(Case("responses max_output_tokens 3 (stream)", "openai", "responses", *common,
             "--stream", "--max-tokens", "3", "--events",
             check=lambda r, l: [("content", r.get("content") == expected_text(SEED, 3), r),
                                 ("incomplete", r.get("status_field") == "incomplete"
                                  and r["events"][-1] == "response.incomplete", r),
                                 ("usage", sub(r.get("usage"), RESP_U) ==
                                  usage_responses(IT, 3), r)]))
    add(Case("messages max_tokens 3 (stream)", "anthropic", "messages", *common, "--stream",
             "--max-tokens", "3",
             check=lambda r, l: [("content", r.get("content") == expected_text(SEED, 3), r),
                                 ("stop_reason max_tokens", r.get("stop_reason") ==
                                  "max_tokens", r),
                                 ("usage", sub(r.get("usage"), ANT_U) ==
                                  usage_anthropic(IT, 3), r)]))

    # ---- transport variants: the same content and usage, however the bytes travel
    variants = [
        ["gzip=1"], ["chunked=0"], ["chunked=close"], ["split=bytewise"], ["split=awkward"],
        ["split=random:5"], ["split=3"], ["crlf=1"], ["crlf=cr"], ["sse-comments=1"],
        ["gzip=1", "split=awkward", "crlf=1"], ["gzip=1", "chunked=0", "split=random:9"],
        ["chunked=close", "split=bytewise", "crlf=1"], ["delay-ms=5", "split=awkward"],
    ]
    streams = [
        ("chat", "openai", ["--include-usage"], OAI_U, u_chat),
        ("completions", "openai", ["--include-usage"], OAI_U, u_chat),
        ("responses", "openai", [], RESP_U, u_resp),
        ("messages", "anthropic", [], ANT_U, u_ant),
    ]
    for call, sdk, extra, keys, usage in streams:
        for v in variants:
            mocks = [x for item in v for x in ("--mock", item)]

            def chk(r, l, keys=keys, usage=usage, v=v):
                out = ok_content(r, l, usage_keys=keys, usage=usage)
                if l is not None and "gzip=1" in v:
                    out.append(("log says gzip", l.get("gzip") is True, l.get("gzip")))
                if l is not None:
                    want = {"chunked=0": "length", "chunked=close": "close"}
                    f = next((want[x] for x in v if x in want), "chunked")
                    out.append(("log framing", l.get("framing") == f, l.get("framing")))
                return out
            add(Case(f"{call} stream, {' '.join(v)}", sdk, call, *common, "--stream", *extra,
                     *mocks, check=chk))
    for v in (["gzip=1"], ["chunked=1"], ["split=bytewise"], ["gzip=1", "split=awkward"],
              ["chunked=close"]):
        mocks = [x for item in v for x in ("--mock", item)]
        add(Case(f"chat non-stream, {' '.join(v)}", "openai", "chat", *common, *mocks,
                 check=lambda r, l: ok_content(r, l, usage_keys=OAI_U, usage=u_chat)))
        add(Case(f"messages non-stream, {' '.join(v)}", "anthropic", "messages", *common,
                 *mocks, check=lambda r, l: ok_content(r, l, usage_keys=ANT_U, usage=u_ant)))

    # ---- errors in the provider's format, raised as the SDK's classes
    oai_classes = {400: "BadRequestError", 401: "AuthenticationError",
                   403: "PermissionDeniedError", 404: "NotFoundError", 409: "ConflictError",
                   422: "UnprocessableEntityError", 429: "RateLimitError",
                   500: "InternalServerError", 503: "InternalServerError"}
    for status, cls in oai_classes.items():
        for call, extra in (("chat", []), ("chat", ["--stream", "--include-usage"]),
                            ("responses", ["--stream"]), ("embeddings", []), ("models", [])):
            def chk(r, l, status=status, cls=cls):
                # The openai SDK keeps the inner {"message", "type", "param", "code"} as
                # e.body (the raw checks below look at the whole body on the wire).
                err = r.get("body") if isinstance(r.get("body"), dict) else {}
                return [("raises", r.get("ok") is False, r),
                        ("class", r.get("error_class") == cls and
                         r.get("error_module") == "openai", r.get("error_class")),
                        ("status", r.get("status") == status, r.get("status")),
                        ("e.body = {message,type,param,code}",
                         set(err) == {"message", "type", "param", "code"}, err),
                        ("log status and no usage", l is not None and l["status"] == status
                         and l["usage"] is None, l)]
            add(Case(f"openai {call} {' '.join(extra)} status {status}", "openai", call,
                     *extra, "--mock", f"status={status}", check=chk))
    ant_classes = {400: "BadRequestError", 401: "AuthenticationError",
                   402: "PaymentRequiredError", 403: "PermissionDeniedError",
                   404: "NotFoundError", 413: "ContentTooLargeError", 429: "RateLimitError",
                   500: "InternalServerError", 529: "OverloadedError"}
    for status, cls in ant_classes.items():
        for extra in ([], ["--stream"]):
            def chk(r, l, status=status, cls=cls):
                body = r.get("body") if isinstance(r.get("body"), dict) else {}
                err = body.get("error") if isinstance(body.get("error"), dict) else {}
                return [("raises", r.get("ok") is False, r),
                        ("class", r.get("error_class") == cls and
                         r.get("error_module") == "anthropic", r.get("error_class")),
                        ("status", r.get("status") == status, r.get("status")),
                        ("body {type:error, error:{type,message}}",
                         body.get("type") == "error" and set(err) == {"type", "message"}
                         and err["type"] == mp.ANTHROPIC_ERRORS[status][0], body),
                        ("request-id header", bool((r.get("response_headers") or {})
                                                   .get("request-id")), r)]
            add(Case(f"anthropic messages {' '.join(extra)} status {status}", "anthropic",
                     "messages", *extra, "--mock", f"status={status}", check=chk))
    add(Case("openai models.retrieve unknown model", "openai", "model", "--model", "nope",
             check=lambda r, l: [("NotFoundError", r.get("error_class") == "NotFoundError", r)]))

    # ---- cut off streams: what each SDK does (these pin the SDK versions' behaviour)
    def interrupted(r, l, *, ok, cls, content, usage=None, keys=OAI_U, events_sent=None):
        out = [("ok" if ok else "raises", r.get("ok") is ok, r),
               ("content so far", r.get("content") == content, (r.get("content"), content)),
               ("log interrupted", l is not None and l.get("interrupted") is True, l)]
        if cls:
            out.append(("error class", r.get("error_qualname") == cls, r.get("error_qualname")))
        out.append(("usage seen", (r.get("usage") is None if usage is None
                                   else sub(r.get("usage"), keys) == usage), r.get("usage")))
        if l is not None:
            out.append(("log usage", (l.get("usage") is None if usage is None
                                      else sub(l.get("usage"), keys) == usage), l.get("usage")))
            if events_sent is not None:
                out.append(("log events_sent", l.get("events_sent") == events_sent,
                            l.get("events_sent")))
        return out

    p = pieces()
    for framing, ok, cls in (("1", False, "openai.APIConnectionError"),
                             ("0", False, "openai.APIConnectionError"),
                             ("close", True, None)):
        add(Case(f"chat stream cut after 5 events, chunked={framing}", "openai", "chat",
                 *common, "--stream", "--include-usage", "--mock", "interrupt=5", "--mock",
                 f"chunked={framing}",
                 check=lambda r, l, ok=ok, cls=cls: interrupted(
                     r, l, ok=ok, cls=cls, content="".join(p[:4]), events_sent=5)
                 + [("no finish_reason", r.get("finish_reason") is None, r)]))
        add(Case(f"chat stream cut inside event 6, chunked={framing}", "openai", "chat",
                 *common, "--stream", "--mock", "interrupt=5+40", "--mock",
                 f"chunked={framing}",
                 check=lambda r, l, ok=ok, cls=cls: interrupted(
                     r, l, ok=ok, cls=cls, content="".join(p[:4]), events_sent=5)))
        add(Case(f"responses stream cut after 6 events, chunked={framing}", "openai",
                 "responses", *common, "--stream", "--mock", "interrupt=6", "--mock",
                 f"chunked={framing}",
                 check=lambda r, l, ok=ok, cls=cls: interrupted(
                     r, l, ok=ok, cls=cls, content="".join(p[:2]), keys=RESP_U)))
        acls = None if ok else "httpx2.RemoteProtocolError"
        add(Case(f"messages stream cut after 6 events, chunked={framing}", "anthropic",
                 "messages", *common, "--stream", "--mock", "interrupt=6", "--mock",
                 f"chunked={framing}",
                 check=lambda r, l, ok=ok, acls=acls: interrupted(
                     r, l, ok=ok, cls=acls, content="".join(p[:3]), keys=ANT_U)
                 + [("usage_start seen", sub(r.get("usage_start"), ANT_U)
                     == usage_anthropic(IT, 1), r),
                    ("not an anthropic exception" if not ok else "no exception",
                     r.get("not_sdk_error") is (True if not ok else None), r)]))
    add(Case("messages stream helper cut, close-delimited: final message has output_tokens 1",
             "anthropic", "messages", *common, "--stream", "--helper", "--mock", "interrupt=6",
             "--mock", "chunked=close",
             check=lambda r, l: [("ok", r.get("ok") is True, r),
                                 ("stop_reason None", r.get("stop_reason") is None, r),
                                 ("usage from message_start",
                                  sub(r.get("usage"), ANT_U) == usage_anthropic(IT, 1), r),
                                 ("log usage None", l is not None and l["usage"] is None, l)]))
    add(Case("chat stream cut after the usage chunk (before [DONE])", "openai", "chat",
             *common, "--stream", "--include-usage", "--mock", f"interrupt={E + 3}",
             check=lambda r, l: interrupted(r, l, ok=False, cls="openai.APIConnectionError",
                                            content=text, usage=u_chat, events_sent=E + 3)))
    add(Case("chat non-stream body cut after 100 bytes", "openai", "chat", *common, "--mock",
             "interrupt=100",
             check=lambda r, l: [("raises", r.get("error_qualname") ==
                                  "openai.APIConnectionError", r),
                                 ("log interrupted, no usage", l is not None and
                                  l["interrupted"] and l["usage"] is None, l)]))
    add(Case("chat stream cut with a TCP reset", "openai", "chat", *common, "--stream",
             "--mock", "interrupt=5", "--mock", "reset=1",
             check=lambda r, l: [("raises", r.get("error_qualname") ==
                                  "openai.APIConnectionError", r)]))

    # ---- errors inside a 200 stream
    add(Case("chat stream error event after 4 events", "openai", "chat", *common, "--stream",
             "--include-usage", "--mock", "stream-error=4",
             check=lambda r, l: [("APIError", r.get("error_qualname") == "openai.APIError", r),
                                 ("content so far", r.get("content") == "".join(p[:3]), r),
                                 ("log stream_error, no usage", l is not None and
                                  l["stream_error"] and l["usage"] is None, l)]))
    add(Case("responses stream error event after 6 events", "openai", "responses", *common,
             "--stream", "--mock", "stream-error=6",
             check=lambda r, l: [("ok (the SDK yields the error event)", r.get("ok") is True,
                                  r),
                                 ("error event seen", (r.get("stream_error") or {}).get("code")
                                  == "server_error", r),
                                 ("content so far", r.get("content") == "".join(p[:2]), r),
                                 ("no usage", r.get("usage") is None, r)]))
    add(Case("messages stream error event after 5 events", "anthropic", "messages", *common,
             "--stream", "--mock", "stream-error=5",
             check=lambda r, l: [("APIStatusError",
                                  r.get("error_qualname") == "anthropic.APIStatusError", r),
                                 ("overloaded_error body", ((r.get("body") or {}).get("error")
                                                            or {}).get("type") ==
                                  "overloaded_error", r),
                                 ("content so far", r.get("content") == "".join(p[:2]), r)]))

    # ---- time: stalls and delays
    add(Case("chat stream stalled after 3 events, 1 s timeout", "openai", "chat", *common,
             "--stream", "--timeout", "1", "--mock", "stall=3",
             check=lambda r, l: [("APITimeoutError", r.get("error_qualname") ==
                                  "openai.APITimeoutError", r),
                                 ("content so far", r.get("content") == "".join(p[:2]), r),
                                 ("log stalled", l is not None and l["stalled"], l)]))
    add(Case("messages stream stalled after 4 events, 1 s timeout", "anthropic", "messages",
             *common, "--stream", "--timeout", "1", "--mock", "stall=4",
             check=lambda r, l: [("raises httpx2.ReadTimeout (not wrapped)",
                                  r.get("error_qualname") == "httpx2.ReadTimeout", r),
                                 ("content so far", r.get("content") == "".join(p[:1]), r)]))
    add(Case("chat headers delayed 1.5 s, 1 s timeout", "openai", "chat", *common, "--timeout",
             "1", "--mock", "header-delay-ms=1500",
             check=lambda r, l: [("APITimeoutError", r.get("error_qualname") ==
                                  "openai.APITimeoutError", r)]))
    add(Case("chat stream 40 ms between events", "openai", "chat", *common, "--stream",
             "--mock", "events=5", "--mock", "delay-ms=40",
             check=lambda r, l: [("ok", r.get("ok") is True, r),
                                 ("took >= 8 x 40 ms", l is not None and
                                  l["duration_ms"] >= 8 * 40, l and l["duration_ms"])]))

    # ---- what reached the provider
    def hdrs(l):
        return (l or {}).get("request_headers") or {}
    add(Case("openai key: Authorization Bearer, no cookie", "openai", "chat", "--api-key",
             "sk-user-key",
             check=lambda r, l: [("authorization", hdrs(l).get("authorization") ==
                                  "Bearer sk-user-key", hdrs(l)),
                                 ("no cookie", "cookie" not in hdrs(l), hdrs(l))]))
    add(Case("openai cookie only: no Authorization", "openai", "chat", "--cookie",
             "gpt_auth=abc.def",
             check=lambda r, l: [("ok", r.get("ok") is True, r),
                                 ("cookie", hdrs(l).get("cookie") == "gpt_auth=abc.def", hdrs(l)),
                                 ("no authorization", "authorization" not in hdrs(l), hdrs(l))]))
    add(Case("anthropic key: sent as Authorization Bearer by this SDK", "anthropic",
             "messages", "--api-key", "sk-ant-user",
             check=lambda r, l: [("authorization", hdrs(l).get("authorization") ==
                                  "Bearer sk-ant-user", hdrs(l)),
                                 ("no x-api-key", "x-api-key" not in hdrs(l), hdrs(l)),
                                 ("anthropic-version", bool(hdrs(l).get("anthropic-version")),
                                  hdrs(l))]))
    add(Case("anthropic x-api-key, no Authorization", "anthropic", "messages", "--x-api-key",
             "sk-ant-x",
             check=lambda r, l: [("x-api-key", hdrs(l).get("x-api-key") == "sk-ant-x", hdrs(l)),
                                 ("no authorization", "authorization" not in hdrs(l),
                                  hdrs(l))]))
    add(Case("anthropic cookie only", "anthropic", "messages", "--cookie", "gpt_auth=zz",
             check=lambda r, l: [("ok", r.get("ok") is True, r),
                                 ("no authorization, no x-api-key", "authorization" not in
                                  hdrs(l) and "x-api-key" not in hdrs(l), hdrs(l)),
                                 ("cookie", hdrs(l).get("cookie") == "gpt_auth=zz", hdrs(l))]))
    add(Case("SDK asks for gzip", "openai", "models",
             check=lambda r, l: [("accept-encoding has gzip", "gzip" in
                                  hdrs(l).get("accept-encoding", ""), hdrs(l))]))

    # ---- embeddings, models, count_tokens
    inputs = ["abc", "Grüße"]     # 3 bytes: 1 token; 7 bytes: 2 tokens
    vecs = [mp.embedding_vector(0, i, 4) for i in range(2)]
    add(Case("embeddings (SDK default: base64 on the wire)", "openai", "embeddings",
             "--input", inputs[0], "--input", inputs[1], "--dimensions", "4",
             check=lambda r, l: [("ok", r.get("ok") is True, r),
                                 ("vectors", r.get("embeddings") == vecs, r.get("embeddings")),
                                 ("usage", r.get("usage") == {"prompt_tokens": 3,
                                                              "total_tokens": 3}, r),
                                 ("log: base64 asked", l is not None and
                                  l["encoding_format"] == "base64", l)]))
    add(Case("embeddings float", "openai", "embeddings", "--input", inputs[0], "--input",
             inputs[1], "--dimensions", "4", "--encoding-format", "float",
             check=lambda r, l: [("vectors", r.get("embeddings") == vecs, r.get("embeddings")),
                                 ("model echoed", r.get("model") == "text-embedding-3-small",
                                  r)]))
    add(Case("openai models.list", "openai", "models",
             check=lambda r, l: [("ids", {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "o1-mini",
                                          "text-embedding-3-small", "claude-sonnet-4-5"}
                                  <= set(r.get("models") or []), r),
                                 ("fields", all(set(m) >= {"id", "object", "created", "owned_by"}
                                                for m in r.get("data") or [None]), r)]))
    add(Case("openai models.retrieve", "openai", "model", "--model", "gpt-4o",
             check=lambda r, l: [("id", r.get("model") == "gpt-4o", r)]))
    add(Case("anthropic models.list", "anthropic", "models",
             check=lambda r, l: [("claude-sonnet-4-5", "claude-sonnet-4-5" in
                                  (r.get("models") or []), r)]))
    add(Case("anthropic count_tokens", "anthropic", "count_tokens", "--prompt", PROMPT,
             "--system", SYSTEM,
             check=lambda r, l: [("input_tokens", r.get("input_tokens") == IT_SYS, r)]))
    return cases


# -------------------------------------------------------------------------------------------------
# Raw socket checks against the references' wire format

def raw_request(port, method, path, headers=None, body=None, version="HTTP/1.1", sock=None,
                close=True):
    """Sends one request; returns (status, headers dict (lowercase), raw body, chunk sizes)."""
    own = sock is None
    if own:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    h = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    if data:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(data))
    req = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    sock.sendall(req.encode() + b"\r\n" + data)
    f = sock.makefile("rb")
    interim = []
    while True:
        status = int(f.readline().decode().split()[1])
        if status >= 200:
            break
        interim.append(status)
        while f.readline() not in (b"\r\n", b""):  # an interim (1xx) answer
            pass
    rh = {"_interim": interim} if interim else {}
    while True:
        line = f.readline().decode()
        if line in ("\r\n", ""):
            break
        k, v = line.split(":", 1)
        rh[k.strip().lower()] = v.strip()
    chunks = []
    if rh.get("transfer-encoding") == "chunked":
        body_b = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                f.readline()
                break
            piece = f.read(size)
            chunks.append(len(piece))
            body_b += piece
            f.read(2)
    elif "content-length" in rh:
        body_b = f.read(int(rh["content-length"]))
    else:
        body_b = f.read()
    if own and close:
        sock.close()
    return status, rh, body_b, chunks


def sse_blocks(text, eol="\n"):
    """Splits an SSE body into events: lists of (field, value); checks the framing."""
    assert text.endswith(eol + eol), "the stream does not end with a blank line"
    out = []
    for block in text[:-2 * len(eol)].split(eol + eol):
        fields = []
        for line in block.split(eol):
            name, _, value = line.partition(":")
            fields.append((name, value[1:] if value.startswith(" ") else value))
        out.append(fields)
    return out


def raw_checks(res, port, mock):
    chat_body = {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}],
                 "stream": True, "stream_options": {"include_usage": True}}
    mh = {"X-Mock-Events": str(E), "X-Mock-Seed": str(SEED)}

    # Chat Completions stream
    st, h, b, chunks = raw_request(port, "POST", "/v1/chat/completions", mh, chat_body)
    res.check("raw chat: 200 text/event-stream, chunked",
              st == 200 and h["content-type"] == "text/event-stream; charset=utf-8"
              and h.get("transfer-encoding") == "chunked", (st, h))
    blocks = sse_blocks(b.decode("utf-8"))
    res.check("raw chat: every event is one data: line",
              all(len(bl) == 1 and bl[0][0] == "data" for bl in blocks), blocks[:2])
    res.check("raw chat: ends with data: [DONE]", blocks[-1] == [("data", "[DONE]")], blocks[-1])
    objs = [json.loads(bl[0][1]) for bl in blocks[:-1]]
    res.check("raw chat: chat.completion.chunk objects with id, created, model, choices",
              all(o["object"] == "chat.completion.chunk" and {"id", "created", "model",
                                                              "choices"} <= set(o)
                  for o in objs) and len({o["id"] for o in objs}) == 1, objs[0])
    res.check("raw chat: usage null on all chunks but the last",
              all("usage" in o and o["usage"] is None for o in objs[:-1]), objs[:-1])
    res.check("raw chat: last chunk has choices [] and the usage",
              objs[-1]["choices"] == [] and objs[-1]["usage"]["prompt_tokens"] == IT
              and objs[-1]["usage"]["completion_tokens"] == E
              and objs[-1]["usage"]["total_tokens"] == IT + E, objs[-1])
    res.check("raw chat: first delta has role assistant, the one before usage finish_reason",
              objs[0]["choices"][0]["delta"].get("role") == "assistant"
              and objs[-2]["choices"][0]["finish_reason"] == "stop"
              and objs[-2]["choices"][0]["delta"] == {}, (objs[0], objs[-2]))
    res.check("raw chat: deltas concatenate to the content",
              "".join(o["choices"][0]["delta"].get("content") or "" for o in objs[:-1])
              == expected_text(), None)
    res.check("raw chat: non-ASCII is raw UTF-8 (not \\u escapes)",
              any(x >= 0x80 for x in b) and b"\\u" not in b, None)
    body_no_usage = dict(chat_body)
    del body_no_usage["stream_options"]
    st, h, b, _ = raw_request(port, "POST", "/v1/chat/completions", mh, body_no_usage)
    objs2 = [json.loads(bl[0][1]) for bl in sse_blocks(b.decode())[:-1]]
    res.check("raw chat without include_usage: no usage key, no empty-choices chunk",
              all("usage" not in o and o["choices"] for o in objs2), objs2[-1])

    # Non-stream chat
    st, h, b, _ = raw_request(port, "POST", "/v1/chat/completions", mh,
                              dict(body_no_usage, stream=False))
    o = json.loads(b)
    res.check("raw chat non-stream: chat.completion, application/json, Content-Length",
              st == 200 and h["content-type"] == "application/json" and "content-length" in h
              and o["object"] == "chat.completion"
              and o["choices"][0]["message"] == {"role": "assistant", "content": expected_text(),
                                                 "refusal": None, "annotations": []}
              and o["usage"]["prompt_tokens"] == IT, o)

    # Responses stream
    st, h, b, _ = raw_request(port, "POST", "/v1/responses", mh,
                              {"model": "gpt-4o", "input": PROMPT, "stream": True})
    blocks = sse_blocks(b.decode())
    ok = all(len(bl) == 2 and bl[0][0] == "event" and bl[1][0] == "data" for bl in blocks)
    res.check("raw responses: every event has an event: line and a data: line", ok, blocks[:1])
    evs = [(bl[0][1], json.loads(bl[1][1])) for bl in blocks] if ok else []
    res.check("raw responses: data.type = event name, sequence_number 0..n-1",
              all(name == d["type"] for name, d in evs)
              and [d["sequence_number"] for _, d in evs] == list(range(len(evs))), evs[:2])
    names = [n for n, _ in evs]
    res.check("raw responses: the documented event order",
              names == ["response.created", "response.in_progress",
                        "response.output_item.added", "response.content_part.added"]
              + ["response.output_text.delta"] * E
              + ["response.output_text.done", "response.content_part.done",
                 "response.output_item.done", "response.completed"], names)
    done = evs[-1][1]["response"] if evs else {}
    res.check("raw responses: response.completed carries the response with usage",
              done.get("object") == "response" and done.get("status") == "completed"
              and done.get("usage", {}).get("input_tokens") == IT
              and done["usage"].get("output_tokens") == E
              and done["usage"].get("total_tokens") == IT + E
              and done["output"][0]["content"][0]["text"] == expected_text(), done)
    res.check("raw responses: no [DONE]", b"[DONE]" not in b.replace(b'"[DONE]"', b""), None)
    st, h, b, _ = raw_request(port, "POST", "/v1/responses", mh,
                              {"model": "gpt-4o", "input": PROMPT})
    o = json.loads(b)
    res.check("raw responses non-stream: usage input/output/total tokens and details",
              o["object"] == "response" and set(o["usage"]) == {
                  "input_tokens", "input_tokens_details", "output_tokens",
                  "output_tokens_details", "total_tokens"}, o.get("usage"))

    # Anthropic messages stream
    st, h, b, _ = raw_request(port, "POST", "/v1/messages",
                              {**mh, "anthropic-version": "2023-06-01", "x-api-key": "k"},
                              {"model": "claude-sonnet-4-5", "max_tokens": 1024,
                               "messages": [{"role": "user", "content": PROMPT}],
                               "stream": True})
    res.check("raw messages: 200 text/event-stream", st == 200 and
              h["content-type"].startswith("text/event-stream"), h)
    blocks = sse_blocks(b.decode())
    evs = [(bl[0][1], json.loads(bl[1][1])) for bl in blocks]
    names = [n for n, _ in evs]
    res.check("raw messages: event: NAME + data with type NAME",
              all(len(bl) == 2 and bl[0][0] == "event" for bl in blocks)
              and all(n == d["type"] for n, d in evs), blocks[:1])
    res.check("raw messages: the documented event order",
              names == ["message_start", "content_block_start", "ping"]
              + ["content_block_delta"] * E
              + ["content_block_stop", "message_delta", "message_stop"], names)
    ms = evs[0][1]["message"]
    res.check("raw messages: message_start message fields and usage",
              {"id", "type", "role", "content", "model", "stop_reason", "stop_sequence",
               "usage"} <= set(ms) and ms["type"] == "message" and ms["content"] == []
              and ms["usage"]["input_tokens"] == IT and ms["usage"]["output_tokens"] == 1
              and "cache_creation_input_tokens" in ms["usage"]
              and "cache_read_input_tokens" in ms["usage"], ms)
    md = evs[-2][1]
    res.check("raw messages: message_delta stop_reason and usage.output_tokens",
              md["delta"]["stop_reason"] == "end_turn" and md["usage"] == {"output_tokens": E},
              md)
    res.check("raw messages: text deltas concatenate to the content",
              "".join(d["delta"]["text"] for n, d in evs if n == "content_block_delta")
              == expected_text(), None)
    st, h, b, _ = raw_request(port, "POST", "/v1/messages",
                              {**mh, "anthropic-version": "2023-06-01"},
                              {"model": "claude-sonnet-4-5", "max_tokens": 1024,
                               "messages": [{"role": "user", "content": PROMPT}]})
    o = json.loads(b)
    res.check("raw messages non-stream: message object",
              o["type"] == "message" and o["role"] == "assistant"
              and o["content"] == [{"type": "text", "text": expected_text()}]
              and o["stop_reason"] == "end_turn"
              and {"input_tokens", "output_tokens", "cache_creation_input_tokens",
                   "cache_read_input_tokens"} <= set(o["usage"]), o)

    # Embeddings and models
    st, h, b, _ = raw_request(port, "POST", "/v1/embeddings", {},
                              {"model": "text-embedding-3-small", "input": "abc",
                               "encoding_format": "base64"})
    o = json.loads(b)
    res.check("raw embeddings: list of embedding objects, usage prompt/total tokens, base64",
              o["object"] == "list" and o["data"][0]["object"] == "embedding"
              and o["data"][0]["index"] == 0
              and len(base64.b64decode(o["data"][0]["embedding"])) == 4 * mp.DEFAULT_DIMENSIONS
              and o["usage"] == {"prompt_tokens": 1, "total_tokens": 1}, o)
    st, h, b, _ = raw_request(port, "GET", "/v1/models")
    o = json.loads(b)
    res.check("raw models: {object: list, data: [{id, object: model, created, owned_by}]}",
              o["object"] == "list" and all(set(m) == {"id", "object", "created", "owned_by"}
                                            and m["object"] == "model" for m in o["data"]), o)

    # Errors
    st, h, b, _ = raw_request(port, "POST", "/v1/chat/completions", {"X-Mock-Status": "403"},
                              body_no_usage)
    o = json.loads(b)
    res.check("raw openai 403: application/json {error:{message,type,param,code}}",
              st == 403 and h["content-type"] == "application/json"
              and set(o["error"]) == {"message", "type", "param", "code"}, (st, o))
    st, h, b, _ = raw_request(port, "POST", "/v1/messages", {"X-Mock-Status": "403"},
                              {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []})
    o = json.loads(b)
    res.check("raw anthropic 403: {type: error, error: {type: permission_error, message}}",
              st == 403 and o["type"] == "error" and o["error"]["type"] == "permission_error"
              and h["content-type"] == "application/json", (st, o))
    st, h, b, _ = raw_request(port, "POST", "/v1/messages", {},
                              {"model": "claude-sonnet-4-5", "messages": []})
    res.check("raw anthropic: max_tokens missing is a 400 invalid_request_error",
              st == 400 and json.loads(b)["error"]["type"] == "invalid_request_error", b)
    st, h, b, _ = raw_request(port, "POST", "/v1/chat/completions", {}, b"{not json")
    res.check("raw openai: bad JSON is a 400", st == 400 and "error" in json.loads(b), b)
    st, h, b, _ = raw_request(port, "GET", "/v1/nothing")
    res.check("raw: unknown path is a 404 in OpenAI format",
              st == 404 and json.loads(b)["error"]["code"] == "unknown_url", b)

    # Transport: splitting, CRLF, gzip, keep-alive, HTTP/1.0
    st, h, b, chunks = raw_request(port, "POST", "/v1/chat/completions",
                                   {**mh, "X-Mock-Split": "bytewise"}, chat_body)
    res.check("raw split=bytewise: one chunk per byte", chunks and set(chunks) == {1}
              and len(chunks) == len(b), chunks[:5])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req_body = json.dumps(chat_body).encode()
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  f"application/json\r\nContent-Length: {len(req_body)}\r\nX-Mock-Split: awkward"
                  f"\r\nX-Mock-CRLF: 1\r\nX-Mock-Delay-Ms: 2\r\nX-Mock-Events: {E}\r\n"
                  f"X-Mock-Seed: {SEED}\r\nConnection: close\r\n\r\n").encode() + req_body)
    wire = b""
    while True:
        d = sock.recv(65536)
        if not d:
            break
        wire += d
    sock.close()
    head, _, rest = wire.partition(b"\r\n\r\n")
    segs = []
    while rest:
        size_s, _, rest = rest.partition(b"\r\n")
        size = int(size_s, 16)
        if size == 0:
            break
        segs.append(rest[:size])
        rest = rest[size + 2:]
    body = b"".join(segs)
    res.check("raw split=awkward + CRLF: a chunk ends between CR and LF",
              any(s.endswith(b"\r") for s in segs[:-1]), None)
    res.check("raw split=awkward: a chunk ends inside a UTF-8 character",
              any(s and (s[-1] >= 0xC0 or 0x80 <= s[-1] < 0xC0) and segs[i + 1][:1]
                  and 0x80 <= segs[i + 1][0] < 0xC0 for i, s in enumerate(segs[:-1])), None)
    res.check("raw split=awkward: a chunk ends inside 'data:'",
              any(s.endswith(b"da") for s in segs), None)
    res.check("raw CRLF: lines end with \\r\\n, events with \\r\\n\\r\\n",
              body.endswith(b"data: [DONE]\r\n\r\n") and b"\n\n" not in body.replace(
                  b"\r\n\r\n", b""), body[-40:])
    plain_objs = [json.loads(bl[0][1]) for bl in sse_blocks(body.decode(), "\r\n")[:-1]]
    res.check("raw split=awkward + CRLF: content intact",
              "".join(o["choices"][0]["delta"].get("content") or "" for o in plain_objs[:-1])
              == expected_text(), None)

    st, h, b, chunks = raw_request(port, "POST", "/v1/chat/completions",
                                   {**mh, "X-Mock-Gzip": "1", "Accept-Encoding": "gzip"},
                                   chat_body)
    dec = gzip.decompress(b)
    gobjs = [json.loads(bl[0][1]) for bl in sse_blocks(dec.decode())[:-1]]
    res.check("raw gzip: Content-Encoding gzip, chunked, decodes to the same stream",
              h.get("content-encoding") == "gzip" and h.get("transfer-encoding") == "chunked"
              and "".join(o["choices"][0]["delta"].get("content") or "" for o in gobjs[:-1])
              == expected_text() and gobjs[-1]["usage"]["completion_tokens"] == E, h)
    res.check("raw gzip: flushed per event (each chunk decodes on arrival)",
              len(chunks) >= E + 4, chunks)
    st, h, b, _ = raw_request(port, "POST", "/v1/chat/completions",
                              {**mh, "X-Mock-Gzip": "1"}, chat_body)
    res.check("raw gzip asked but no Accept-Encoding: identity", "content-encoding" not in h
              and b.startswith(b"data: "), h)

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    r1 = raw_request(port, "POST", "/v1/chat/completions", {**mh, "X-Test-Id": "ka1"},
                     chat_body, sock=sock, close=False)
    r2 = raw_request(port, "POST", "/v1/embeddings", {"X-Test-Id": "ka2"},
                     {"model": "text-embedding-3-small", "input": "x"}, sock=sock, close=False)
    r3 = raw_request(port, "GET", "/v1/models", {"X-Test-Id": "ka3"}, sock=sock, close=False)
    sock.close()
    time.sleep(0.1)
    logs = {e["request_headers"].get("x-test-id"): e for e in mock.entries()}
    res.check("raw keep-alive: three requests on one connection",
              r1[0] == r2[0] == r3[0] == 200 and all(k in logs for k in ("ka1", "ka2", "ka3"))
              and len({logs[k]["conn"] for k in ("ka1", "ka2", "ka3")}) == 1
              and [logs[k]["conn_seq"] for k in ("ka1", "ka2", "ka3")] == [1, 2, 3],
              [logs.get(k) for k in ("ka1", "ka2", "ka3")])

    st, h, b, _ = raw_request(port, "POST", "/v1/chat/completions", mh, chat_body,
                              version="HTTP/1.0")
    res.check("raw HTTP/1.0: no chunked, Connection: close, body to the close",
              "transfer-encoding" not in h and "content-length" not in h
              and h.get("connection") == "close" and b.endswith(b"data: [DONE]\n\n"), h)

    # Concurrency: 16 streams at once, interleaved by the delays
    def one(i):
        st, h, b, _ = raw_request(port, "POST", "/v1/chat/completions",
                                  {"X-Mock-Events": "20", "X-Mock-Seed": str(i),
                                   "X-Mock-Delay-Ms": "5"}, chat_body)
        objs = [json.loads(bl[0][1]) for bl in sse_blocks(b.decode())[:-1]]
        return "".join(o["choices"][0]["delta"].get("content") or ""
                       for o in objs[:-1]) == expected_text(i, 20)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        oks = list(pool.map(one, range(16)))
    res.check("raw: 16 concurrent streams, each intact", all(oks), oks)
    st, h, b, _ = raw_request(port, "POST", "/v1/chat/completions", {"Expect": "100-continue"},
                              dict(body_no_usage, stream=False))
    res.check("raw: Expect: 100-continue gets 100, then the answer",
              st == 200 and h.get("_interim") == [100], (st, h))

    # The log endpoint
    st, h, b, _ = raw_request(port, "GET", "/_mock/log")
    res.check("GET /_mock/log returns the logged entries",
              st == 200 and len(json.loads(b)) == len(mock.entries()), None)


def require_key_checks(res, tmp):
    m = Mock(tmp, "keyed", ["--require-key", "sk-good"])
    try:
        cases = [
            Case("require-key: wrong key", "openai", "chat", "--api-key", "sk-bad", mock=m,
                 check=lambda r, l: [("AuthenticationError",
                                      r.get("error_class") == "AuthenticationError", r)]),
            Case("require-key: right key", "openai", "chat", "--api-key", "sk-good", mock=m,
                 check=lambda r, l: [("ok", r.get("ok") is True, r)]),
            Case("require-key: anthropic x-api-key", "anthropic", "messages", "--x-api-key",
                 "sk-good", mock=m, check=lambda r, l: [("ok", r.get("ok") is True, r)]),
            Case("require-key: anthropic, none", "anthropic", "messages", "--cookie", "a=b",
                 mock=m, check=lambda r, l: [("AuthenticationError", r.get("error_class") ==
                                              "AuthenticationError", r)]),
        ]
        return cases, m
    except Exception:
        m.stop()
        raise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("-j", "--jobs", type=int, default=max(2, (os.cpu_count() or 2)))
    ap.add_argument("-k", "--filter", default=None, help="only the client cases whose name "
                                                         "contains this")
    args = ap.parse_args()
    res = Results(args.verbose)
    tmp = tempfile.mkdtemp(prefix="ai-selftest-")
    mock = Mock(tmp, "mock")
    keyed = None
    try:
        cases = build_cases()
        kcases, keyed = require_key_checks(res, tmp)
        cases += kcases
        if args.filter:
            cases = [c for c in cases if args.filter in c.name]
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda c: c.run(mock), cases))
        time.sleep(0.2)
        logs = {}
        for m in (mock, keyed):
            for e in m.entries():
                tid = e["request_headers"].get("x-test-id")
                if tid:
                    logs[tid] = e
        for c in cases:
            c.log = logs.get(c.id)
            if c.result.get("ok") is None:
                res.check(f"{c.name}: client printed JSON", False,
                          f"rc={c.rc} stdout={c.result} stderr={c.stderr[-1500:]}")
                continue
            if c.result.get("traceback"):
                res.check(f"{c.name}: no unexpected exception", False, c.result["traceback"])
                continue
            for sub_name, cond, detail in (c.check(c.result, c.log) if c.check else []):
                res.check(f"{c.name}: {sub_name}", cond,
                          json.dumps(detail, ensure_ascii=False, default=str)[:1500])
        if args.verbose:
            print(f"# {len(cases)} client runs in {time.time() - t0:.1f} s")
        if not args.filter:
            raw_checks(res, mock.port, mock)
    finally:
        mock.stop()
        if keyed is not None:
            keyed.stop()
    print(f"{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
