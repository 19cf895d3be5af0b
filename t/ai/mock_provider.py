#!/usr/bin/env python3
"""A mock of the OpenAI and Anthropic HTTP APIs for gpt_auth's tests (Python 3.11, stdlib only).

    python3 t/ai/mock_provider.py --port N [--log FILE] [--port-file FILE] [--require-key KEY]

Binds 127.0.0.1 (--host to change it). --port 0 takes a free port; the port is printed as
"mock_provider: listening on 127.0.0.1:PORT" on stdout once the socket accepts, and written to
--port-file if given (written whole, by rename, so a reader never sees half a number).

The answers follow the providers' published API references: field names, object types, SSE
framing, error bodies, content types. Everything an answer contains is deterministic (but ids
and `created`), so a test can know in advance the content and the usage a request will be
answered with. Scenario headers (X-Mock-*) bend the transport: how the body is framed, split
into TCP writes, compressed, delayed, cut off. See t/ai/README.md for the full contract: the
endpoints, the token-count rules, the X-Mock-* headers and the log format.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import struct
import time
import zlib

MOCK_VERSION = "1"

# -------------------------------------------------------------------------------------------------
# Deterministic content.

# Each piece is one "token": one content delta of a stream, one output token in the usage. The
# vocabulary mixes ASCII with 2-, 3- and 4-byte UTF-8 characters so that a split inside a
# multibyte character is possible at most positions.
VOCAB = [
    "Hello", "world", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
    "naïve", "café", "Grüße", "señor", "Ωmega", "€uro", "日本", "語", "テスト", "中文",
    "🙂", "🚀ok", "data:", "event:", "[DONE]", "\\n", "\"quoted\"", "tab\t", "a,b", "{x}",
]

DEFAULT_EVENTS = 50
DEFAULT_DIMENSIONS = 8

MODELS = [
    # id, created, owned_by (OpenAI list); Anthropic models carry a display name.
    ("gpt-4o", 1715367049, "system"),
    ("gpt-4o-mini", 1721172741, "system"),
    ("gpt-4.1", 1744316542, "system"),
    ("gpt-4.1-mini", 1744318173, "system"),
    ("o1-mini", 1725649008, "system"),
    ("o3-mini", 1737146383, "system"),
    ("text-embedding-3-small", 1705948997, "system"),
    ("text-embedding-3-large", 1705953180, "system"),
    ("claude-sonnet-4-5", 1759104000, "anthropic"),
    ("claude-haiku-4-5", 1760486400, "anthropic"),
    ("claude-opus-4-1", 1754352000, "anthropic"),
]
ANTHROPIC_DISPLAY = {
    "claude-sonnet-4-5": "Claude Sonnet 4.5",
    "claude-haiku-4-5": "Claude Haiku 4.5",
    "claude-opus-4-1": "Claude Opus 4.1",
}


def make_pieces(seed: int, count: int) -> list[str]:
    """The `count` content pieces for `seed`: the first without a leading space, the others with."""
    rng = random.Random(f"gpt_auth-mock/{seed}")
    words = [rng.choice(VOCAB) for _ in range(count)]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def text_tokens(text: str) -> int:
    """The token count of a text: ceil(UTF-8 bytes / 4). The empty text counts 0."""
    return (len(text.encode("utf-8")) + 3) // 4


def prompt_texts(value) -> list[str]:
    """The texts of a prompt value: a string; a list of strings or of content parts; a message."""
    out: list[str] = []
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for v in value:
            out.extend(prompt_texts(v))
    elif isinstance(value, dict):
        # A message ({"role", "content"}) or a content part ({"type": "text"|"input_text", "text"}).
        if "content" in value:
            out.extend(prompt_texts(value["content"]))
        elif isinstance(value.get("text"), str):
            out.append(value["text"])
    return out


def count_input_tokens(api: str, req: dict) -> int:
    """input/prompt tokens: text_tokens of every prompt text of the request, summed (at least 1).

    chat:        every messages[].content (string, or the "text" of each part)
    completions: prompt (string or list of strings)
    responses:   instructions + input (string, or items with content strings or parts)
    messages:    system (string or text blocks) + every messages[].content
    embeddings:  input: each string counts text_tokens; a list of token ids counts its length
    """
    total = 0
    if api == "chat":
        texts = prompt_texts(req.get("messages", []))
    elif api == "completions":
        texts = prompt_texts(req.get("prompt", ""))
    elif api == "responses":
        texts = prompt_texts(req.get("instructions") or "") + prompt_texts(req.get("input", ""))
    elif api in ("messages", "count_tokens"):
        texts = prompt_texts(req.get("system") or "") + prompt_texts(req.get("messages", []))
    elif api == "embeddings":
        inp = req.get("input", "")
        items = inp if isinstance(inp, list) else [inp]
        if items and all(isinstance(x, int) for x in items):
            items = [items]  # one list of token ids
        texts = []
        for item in items:
            if isinstance(item, list):
                total += len(item)
            elif isinstance(item, str):
                texts.append(item)
    else:
        texts = []
    total += sum(text_tokens(t) for t in texts)
    return max(total, 1)


def embedding_vector(seed: int, index: int, dims: int) -> list[float]:
    rng = random.Random(f"gpt_auth-mock/emb/{seed}/{index}")
    # Values exactly representable in float32, so that the base64 and float forms agree.
    return [struct.unpack("<f", struct.pack("<f", rng.uniform(-1, 1)))[0] for _ in range(dims)]


# -------------------------------------------------------------------------------------------------
# Errors in the providers' formats.

OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request (mock)."),
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided: sk-mock****. You can find your API key at "
          "https://platform.openai.com/account/api-keys."),
    403: ("request_forbidden", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model `{model}` does not exist or you do not have access to it."),
    409: ("invalid_request_error", None, "Conflict (mock)."),
    422: ("invalid_request_error", None, "Unprocessable entity (mock)."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for {model} in organization org-mock on requests per min (RPM): "
          "Limit 3, Used 3, Requested 1. Please try again in 20s."),
    500: ("server_error", None,
          "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "Invalid request (mock)."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


def openai_error_body(status: int, model: str, message: str | None = None,
                      etype: str | None = None, code: str | None = None, param=None) -> dict:
    d_type, d_code, d_msg = OPENAI_ERRORS.get(status, ("server_error" if status >= 500
                                                       else "invalid_request_error", None,
                                                       f"Mock error {status}."))
    return {"error": {"message": message or d_msg.format(model=model), "type": etype or d_type,
                      "param": param, "code": code if code is not None else d_code}}


def anthropic_error_body(status: int, model: str, message: str | None = None,
                         etype: str | None = None, request_id: str = "") -> dict:
    d_type, d_msg = ANTHROPIC_ERRORS.get(status, ("api_error" if status >= 500
                                                  else "invalid_request_error",
                                                  f"Mock error {status}."))
    body = {"type": "error", "error": {"type": etype or d_type,
                                       "message": message or d_msg.format(model=model)}}
    if request_id:
        body["request_id"] = request_id
    return body


API_OF_PATH = {
    "/v1/chat/completions": "chat", "/v1/completions": "completions",
    "/v1/responses": "responses", "/v1/embeddings": "embeddings", "/v1/models": "models",
    "/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str | None = None, etype: str | None = None,
                 code: str | None = None, param=None):
        super().__init__(message)
        self.status, self.message, self.etype, self.code, self.param = (
            status, message, etype, code, param)


# -------------------------------------------------------------------------------------------------
# HTTP.

REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    409: "Conflict", 413: "Payload Too Large", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 529: "Site Overloaded",
}

MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024


class BadRequest(Exception):
    pass


class Request:
    def __init__(self, method, target, version, headers, body):
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self.version = version
        self.headers = headers  # list of (name, value) as received
        self.body = body

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def headers_dict(self) -> dict:
        out: dict = {}
        for k, v in self.headers:
            k = k.lower()
            if k in out:
                out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
            else:
                out[k] = v
        return out

    def keep_alive(self) -> bool:
        conn = (self.header("connection") or "").lower()
        tokens = {t.strip() for t in conn.split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


async def read_request(reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise BadRequest("incomplete request head")
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("request head too large")
    lines = head[:-4].decode("latin-1").split("\r\n")
    # Tolerate empty lines before the request line (RFC 9112 2.2).
    while lines and not lines[0]:
        lines.pop(0)
    try:
        method, target, version = lines[0].split(" ")
    except (ValueError, IndexError):
        raise BadRequest("bad request line")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest("bad version")
    headers = []
    for line in lines[1:]:
        if ":" not in line or line[0] in " \t":
            raise BadRequest("bad header line")
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    req = Request(method, target, version, headers, b"")
    if version == "HTTP/1.1" and (req.header("expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl asks for it on large bodies
        await writer.drain()
    te = (req.header("transfer-encoding") or "").lower()
    if te:
        if te != "chunked":
            raise BadRequest("unsupported transfer-encoding")
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                break
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise BadRequest("bad chunk")
            if len(body) > MAX_BODY:
                raise BadRequest("body too large")
        req.body = bytes(body)
    else:
        cl = req.header("content-length")
        if cl:
            n = int(cl)
            if n < 0 or n > MAX_BODY:
                raise BadRequest("bad content-length")
            req.body = await reader.readexactly(n)
    return req


def http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


# -------------------------------------------------------------------------------------------------
# Scenario controls.

class Scenario:
    """The X-Mock-* request headers, parsed. Bad values are a 400 from the mock itself."""

    def __init__(self, req: Request):
        h = req.header
        self.status = self._int(h("x-mock-status"), None)
        self.events = self._int(h("x-mock-events"), None)
        self.seed = self._int(h("x-mock-seed"), None)
        self.delay_ms = self._int(h("x-mock-delay-ms"), 0)
        self.header_delay_ms = self._int(h("x-mock-header-delay-ms"), 0)
        self.crlf = (h("x-mock-crlf") or "0").lower()
        if self.crlf not in ("0", "1", "cr"):
            raise ApiError(400, "X-Mock-CRLF: 0, 1 or cr")
        self.gzip = (h("x-mock-gzip") or "0") == "1"
        ch = (h("x-mock-chunked") or "").lower()
        if ch not in ("", "0", "1", "close"):
            raise ApiError(400, "X-Mock-Chunked: 0, 1 or close")
        self.chunked = ch or None
        self.split = (h("x-mock-split") or "").strip() or None
        if self.split and not (self.split in ("bytewise", "awkward") or self.split.isdigit()
                               or self.split.startswith("random:")):
            raise ApiError(400, "X-Mock-Split: N, random:SEED, bytewise or awkward")
        self.interrupt = self._interrupt(h("x-mock-interrupt"))
        self.reset = (h("x-mock-reset") or "0") == "1"
        self.stall = self._int(h("x-mock-stall"), None)
        self.stream_error = self._int(h("x-mock-stream-error"), None)
        self.comments = (h("x-mock-sse-comments") or "0") == "1"
        self.input_tokens = self._int(h("x-mock-input-tokens"), None)
        self.cache_read = self._int(h("x-mock-cache-read"), 0)
        self.cache_creation = self._int(h("x-mock-cache-creation"), 0)
        self.anthropic_delta_usage = (h("x-mock-anthropic-delta-usage") or "output").lower()
        if self.anthropic_delta_usage not in ("output", "full"):
            raise ApiError(400, "X-Mock-Anthropic-Delta-Usage: output or full")
        self.error_message = h("x-mock-error-message")
        self.error_type = h("x-mock-error-type")
        self.error_code = h("x-mock-error-code")

    @staticmethod
    def _int(v, default):
        if v is None or v == "":
            return default
        try:
            n = int(v)
        except ValueError:
            raise ApiError(400, f"mock header value {v!r} is not an integer")
        if n < 0:
            raise ApiError(400, f"mock header value {v!r} is negative")
        return n

    @staticmethod
    def _interrupt(v):
        if not v:
            return None
        events, _, extra = v.partition("+")
        try:
            return int(events), int(extra or 0)
        except ValueError:
            raise ApiError(400, "X-Mock-Interrupt: N or N+BYTES")


def split_points(data: bytes, mode: str, eol: bytes) -> list[int]:
    """Cut positions (0 < p < len) for splitting `data` into TCP writes."""
    n = len(data)
    if mode == "bytewise":
        return list(range(1, n))
    if mode.isdigit():
        step = max(int(mode), 1)
        return list(range(step, n, step))
    if mode.startswith("random:"):
        rng = random.Random(f"gpt_auth-mock/split/{mode[7:]}")
        out, p = [], 0
        while True:
            p += rng.randint(1, 23)
            if p >= n:
                return out
            out.append(p)
    # awkward: inside every multibyte UTF-8 character, between CR and LF, inside "data:" and
    # "event:", between the two line ends that close an event.
    cuts = set()
    for i in range(1, n):
        b = data[i]
        if 0x80 <= b < 0xC0:  # a continuation byte: the cut falls inside a character
            cuts.add(i)
        if data[i - 1] == 0x0D and b == 0x0A:
            cuts.add(i)
    for token in (b"data:", b"event:"):
        start = 0
        while (j := data.find(token, start)) >= 0:
            cuts.add(j + 2)
            start = j + 1
    blank = eol + eol
    start = 0
    while (j := data.find(blank, start)) >= 0:
        cuts.add(j + len(eol))
        start = j + 1
    return sorted(c for c in cuts if 0 < c < n)


# -------------------------------------------------------------------------------------------------
# Answers.

class Answer:
    """What to send: status, headers, and the body as pieces.

    For a stream each piece is one SSE event (bytes), with the usage object it reports (final
    usage) or None. For JSON there is one piece.
    """

    def __init__(self, status: int, content_type: str, pieces: list[tuple[bytes, dict | None]],
                 sse: bool, headers: list[tuple[str, str]] | None = None):
        self.status = status
        self.content_type = content_type
        self.pieces = pieces
        self.sse = sse
        self.headers = headers or []
        self.log: dict = {}


class Server:
    def __init__(self, log_path: str | None, require_key: str | None):
        self.log_path = log_path
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self.entries: list[dict] = []
        self.require_key = require_key
        self.counter = 0
        self.conn_counter = 0

    # ---- logging
    def record(self, entry: dict) -> None:
        self.entries.append(entry)
        if self.log_file:
            self.log_file.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
            self.log_file.flush()

    # ---- connection loop
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conn_counter += 1
        conn_id = self.conn_counter
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        seq = 0
        try:
            while True:
                try:
                    req = await read_request(reader, writer)
                except (BadRequest, ValueError, asyncio.IncompleteReadError,
                        asyncio.LimitOverrunError) as e:
                    body = json.dumps(openai_error_body(400, "", f"mock: bad HTTP request: {e}"))
                    writer.write(("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                                  ).encode() + body.encode())
                    await writer.drain()
                    break
                if req is None:
                    break
                seq += 1
                keep = await self.serve(req, reader, writer, conn_id, seq)
                if not keep:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def serve(self, req: Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, conn_id: int, seq: int) -> bool:
        """Answers one request; returns whether the connection stays open."""
        if req.path.startswith("/_mock/"):
            return await self.serve_control(req, writer)
        self.counter += 1
        n = self.counter
        started = time.time()
        anthropic_style = req.path.startswith("/v1/messages") or (
            req.header("anthropic-version") is not None)
        entry = {
            "n": n, "conn": conn_id, "conn_seq": seq, "time": round(started, 3),
            "method": req.method, "path": req.path, "http_version": req.version,
            "request_headers": req.headers_dict(), "request_body_bytes": len(req.body),
            "api": None, "model": None, "stream": False, "include_usage": None,
            "status": None, "usage": None, "usage_start": None, "events_sent": 0,
            "events_planned": 0, "content": None, "interrupted": False, "client_gone": False,
            "stalled": False, "stream_error": False, "framing": None, "gzip": False,
            "split": None, "crlf": None, "seed": None,
        }
        model = ""
        sc = None
        try:
            sc = Scenario(req)
            body = self.parse_body(req)
            model = body.get("model", "") if isinstance(body.get("model", ""), str) else ""
            answer = self.route(req, body, sc, n, anthropic_style)
        except ApiError as e:
            answer = self.error_answer(e, model, anthropic_style, n)
            answer.log.update({"api": API_OF_PATH.get(req.path.rstrip("/")),
                               "model": model or None})
        entry.update(answer.log)
        entry["status"] = answer.status
        keep = req.keep_alive()
        return await self.send(req, reader, writer, answer, sc, entry, keep)

    async def serve_control(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        if req.path == "/_mock/log" and req.method == "GET":
            body = json.dumps(self.entries, ensure_ascii=False).encode()
        elif req.path == "/_mock/reset" and req.method == "POST":
            self.entries.clear()
            body = b'{"ok":true}'
        elif req.path == "/_mock/health":
            body = json.dumps({"ok": True, "version": MOCK_VERSION}).encode()
        else:
            body = b'{"error":"unknown mock control path"}'
            head = (f"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
            return req.keep_alive()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        writer.write(head.encode() + body)
        await writer.drain()
        return req.keep_alive()

    @staticmethod
    def parse_body(req: Request) -> dict:
        if req.method != "POST":
            return {}
        if not req.body:
            raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This "
                                "likely means you aren't using your HTTP library correctly. The "
                                "OpenAI API expects a JSON payload, but what was sent was not "
                                "valid JSON.)")
        try:
            body = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This "
                                "likely means you aren't using your HTTP library correctly. The "
                                "OpenAI API expects a JSON payload, but what was sent was not "
                                "valid JSON.)")
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return body

    def check_key(self, req: Request) -> None:
        if self.require_key is None:
            return
        auth = req.header("authorization") or ""
        if auth == f"Bearer {self.require_key}" or req.header("x-api-key") == self.require_key:
            return
        raise ApiError(401)

    # ---- routing
    def route(self, req: Request, body: dict, sc: Scenario, n: int, anthropic_style: bool) -> Answer:
        p = req.path.rstrip("/")
        routes_post = {
            "/v1/chat/completions": self.chat,
            "/v1/completions": self.completions,
            "/v1/responses": self.responses,
            "/v1/embeddings": self.embeddings,
            "/v1/messages": self.messages,
            "/v1/messages/count_tokens": self.count_tokens,
        }
        if p in routes_post:
            if req.method != "POST":
                raise ApiError(405, f"Invalid method for URL ({req.method} {req.path})",
                               code="method_not_supported")
            self.check_key(req)
            if sc.status is not None and sc.status != 200:
                raise ApiError(sc.status, sc.error_message, sc.error_type, sc.error_code)
            return routes_post[p](req, body, sc, n)
        if p == "/v1/models" or p.startswith("/v1/models/"):
            if req.method != "GET":
                raise ApiError(405, f"Invalid method for URL ({req.method} {req.path})",
                               code="method_not_supported")
            self.check_key(req)
            if sc.status is not None and sc.status != 200:
                raise ApiError(sc.status, sc.error_message, sc.error_type, sc.error_code)
            return self.models(p, anthropic_style, sc)
        raise ApiError(404, f"Invalid URL ({req.method} {req.path})", code="unknown_url")

    def error_answer(self, e: ApiError, model: str, anthropic_style: bool, n: int) -> Answer:
        headers = []
        if anthropic_style:
            rid = f"req_mock{n:06d}"
            body = anthropic_error_body(e.status, model, e.message, e.etype, rid)
            headers.append(("request-id", rid))
            if e.status == 529:
                headers.append(("x-should-retry", "true"))
        else:
            body = openai_error_body(e.status, model, e.message, e.etype, e.code, e.param)
            headers.append(("x-request-id", f"req_mock{n:06d}"))
        if e.status == 429:
            headers.append(("retry-after", "20"))
        data = json.dumps(body, ensure_ascii=False, indent=None if anthropic_style else 2,
                          separators=(",", ":") if anthropic_style else None)
        a = Answer(e.status, "application/json", [((data + ("" if anthropic_style else "\n"))
                                                   .encode(), None)], False, headers)
        a.log = {"error": body}
        return a

    # ---- content planning shared by the generating endpoints
    @staticmethod
    def plan(body: dict, sc: Scenario, api: str, max_key: str | None) -> dict:
        seed = sc.seed if sc.seed is not None else (body.get("seed") if isinstance(
            body.get("seed"), int) and body.get("seed") >= 0 else 0)
        count = sc.events if sc.events is not None else DEFAULT_EVENTS
        truncated = False
        if max_key and isinstance(body.get(max_key), int) and 0 < body[max_key] < count:
            count, truncated = body[max_key], True
        pieces = make_pieces(seed, count)
        input_tokens = (sc.input_tokens if sc.input_tokens is not None
                        else count_input_tokens(api, body))
        return {"seed": seed, "pieces": pieces, "text": "".join(pieces), "truncated": truncated,
                "input_tokens": input_tokens, "output_tokens": len(pieces)}

    @staticmethod
    def require_model(body: dict, anthropic: bool = False) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            if anthropic:
                raise ApiError(400, "model: Field required")
            raise ApiError(400, "you must provide a model parameter", param="model")
        return model

    def sse(self, sc: Scenario, event: str | None, data) -> bytes:
        eol = {"0": "\n", "1": "\r\n", "cr": "\r"}[sc.crlf]
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False,
                                                                separators=(",", ":"))
        out = f"event: {event}{eol}" if event is not None else ""
        out += f"data: {payload}{eol}{eol}"
        return out.encode("utf-8")

    @staticmethod
    def json_answer(obj: dict, log: dict, headers=None, pretty=True) -> Answer:
        data = json.dumps(obj, ensure_ascii=False, indent=2 if pretty else None,
                          separators=None if pretty else (",", ":"))
        a = Answer(200, "application/json", [((data + ("\n" if pretty else "")).encode(), None)],
                   False, headers)
        a.log = log
        return a

    def sse_answer(self, sc: Scenario, events: list, error_event: bytes | None, log: dict,
                   headers=None) -> Answer:
        """A stream of `events` ((bytes, meta) pairs; meta may carry "usage", the final usage,
        or "usage_start"). With X-Mock-Stream-Error: N the stream is its first N events and then
        `error_event`, and ends there. With X-Mock-SSE-Comments: 1 a comment line goes before
        the first event and after each one."""
        if sc.stream_error is not None and sc.stream_error < len(events):
            events = events[:sc.stream_error] + [(error_event, {"error": True})]
            log["stream_error"] = True
        if sc.comments:
            eol = {"0": "\n", "1": "\r\n", "cr": "\r"}[sc.crlf]
            comment = (": keep-alive" + eol + eol).encode()
            out = [(comment, {"comment": True})]
            for e in events:
                out += [e, (comment, {"comment": True})]
            events = out
        a = Answer(200, "text/event-stream; charset=utf-8", events, True, headers)
        a.log = log
        return a

    @staticmethod
    def openai_headers(n: int) -> list[tuple[str, str]]:
        return [("x-request-id", f"req_mock{n:06d}"), ("openai-version", "2020-10-01"),
                ("openai-processing-ms", "1"), ("openai-organization", "org-mock"),
                ("x-ratelimit-limit-requests", "10000"),
                ("x-ratelimit-remaining-requests", "9999")]

    @staticmethod
    def openai_usage(plan: dict, sc: Scenario, details: bool = True) -> dict:
        pt, ct = plan["input_tokens"], plan["output_tokens"]
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        if details:
            usage["prompt_tokens_details"] = {"cached_tokens": min(sc.cache_read, pt),
                                              "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0,
                                                  "accepted_prediction_tokens": 0,
                                                  "rejected_prediction_tokens": 0}
        return usage

    def openai_stream_error(self, sc: Scenario, model: str) -> bytes:
        return self.sse(sc, None, openai_error_body(
            500, model, sc.error_message or "The server had an error while processing your "
            "request. Sorry about that!", sc.error_type, sc.error_code))

    @staticmethod
    def include_usage(body: dict) -> bool:
        so = body.get("stream_options")
        return isinstance(so, dict) and so.get("include_usage") is True

    # ---- OpenAI chat completions
    def chat(self, req: Request, body: dict, sc: Scenario, n: int) -> Answer:
        model = self.require_model(body)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise ApiError(400, "Missing required parameter: 'messages'.", param="messages",
                           code="missing_required_parameter")
        max_key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        plan = self.plan(body, sc, "chat", max_key)
        usage = self.openai_usage(plan, sc)
        finish = "length" if plan["truncated"] else "stop"
        cid, created, fp = f"chatcmpl-mock{n:06d}", int(time.time()), "fp_mock0001"
        stream = body.get("stream") is True
        inc = stream and self.include_usage(body)
        log = {"api": "chat", "model": model, "stream": stream,
               "include_usage": inc if stream else None, "seed": plan["seed"],
               "content": plan["text"], "usage": usage}
        headers = self.openai_headers(n)
        if not stream:
            obj = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0,
                                "message": {"role": "assistant", "content": plan["text"],
                                            "refusal": None, "annotations": []},
                                "logprobs": None, "finish_reason": finish}],
                   "usage": usage, "service_tier": "default", "system_fingerprint": fp}
            return self.json_answer(obj, log, headers)

        def chunk(choices, with_usage=None):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created,
                 "model": model, "service_tier": "default", "system_fingerprint": fp,
                 "choices": choices}
            if inc:
                c["usage"] = with_usage
            return c

        def choice(delta, reason=None):
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]

        events = [(self.sse(sc, None, chunk(choice({"role": "assistant", "content": "",
                                                    "refusal": None}))), None)]
        events += [(self.sse(sc, None, chunk(choice({"content": p}))), None)
                   for p in plan["pieces"]]
        events.append((self.sse(sc, None, chunk(choice({}, finish))), None))
        if inc:
            events.append((self.sse(sc, None, chunk([], usage)), {"usage": usage}))
        events.append((self.sse(sc, None, "[DONE]"), None))
        return self.sse_answer(sc, events, self.openai_stream_error(sc, model), log, headers)

    # ---- OpenAI legacy completions
    def completions(self, req: Request, body: dict, sc: Scenario, n: int) -> Answer:
        model = self.require_model(body)
        plan = self.plan(body, sc, "completions", "max_tokens")
        usage = self.openai_usage(plan, sc, details=False)
        finish = "length" if plan["truncated"] else "stop"
        cid, created, fp = f"cmpl-mock{n:06d}", int(time.time()), "fp_mock0001"
        stream = body.get("stream") is True
        inc = stream and self.include_usage(body)
        log = {"api": "completions", "model": model, "stream": stream,
               "include_usage": inc if stream else None, "seed": plan["seed"],
               "content": plan["text"], "usage": usage}
        headers = self.openai_headers(n)
        if not stream:
            obj = {"id": cid, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"text": plan["text"], "index": 0, "logprobs": None,
                                "finish_reason": finish}],
                   "usage": usage, "system_fingerprint": fp}
            return self.json_answer(obj, log, headers)

        def chunk(choices, with_usage=None):
            c = {"id": cid, "object": "text_completion", "created": created, "model": model,
                 "choices": choices, "system_fingerprint": fp}
            if inc:
                c["usage"] = with_usage
            return c

        last = len(plan["pieces"]) - 1
        events = [(self.sse(sc, None, chunk([{"text": p, "index": 0, "logprobs": None,
                                              "finish_reason": finish if i == last else None}])),
                   None) for i, p in enumerate(plan["pieces"])]
        if inc:
            events.append((self.sse(sc, None, chunk([], usage)), {"usage": usage}))
        events.append((self.sse(sc, None, "[DONE]"), None))
        return self.sse_answer(sc, events, self.openai_stream_error(sc, model), log, headers)

    # ---- OpenAI Responses
    def responses(self, req: Request, body: dict, sc: Scenario, n: int) -> Answer:
        model = self.require_model(body)
        if "input" not in body and "prompt" not in body and "previous_response_id" not in body:
            raise ApiError(400, "Missing required parameter: 'input'.", param="input",
                           code="missing_required_parameter")
        plan = self.plan(body, sc, "responses", "max_output_tokens")
        it, ot = plan["input_tokens"], plan["output_tokens"]
        usage = {"input_tokens": it,
                 "input_tokens_details": {"cached_tokens": min(sc.cache_read, it)},
                 "output_tokens": ot, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": it + ot}
        rid, mid, created = f"resp_mock{n:06d}", f"msg_mock{n:06d}", int(time.time())
        incomplete = plan["truncated"]
        final_status = "incomplete" if incomplete else "completed"
        stream = body.get("stream") is True
        log = {"api": "responses", "model": model, "stream": stream, "include_usage": None,
               "seed": plan["seed"], "content": plan["text"], "usage": usage}
        headers = self.openai_headers(n)

        def response_obj(status, output, with_usage):
            return {"id": rid, "object": "response", "created_at": created, "status": status,
                    "background": False,
                    "completed_at": created if status == "completed" else None,
                    "error": None,
                    "incomplete_details": ({"reason": "max_output_tokens"}
                                           if status == "incomplete" else None),
                    "instructions": body.get("instructions"),
                    "max_output_tokens": body.get("max_output_tokens"), "max_tool_calls": None,
                    "model": model, "output": output, "parallel_tool_calls": True,
                    "previous_response_id": body.get("previous_response_id"),
                    "prompt_cache_key": None, "reasoning": {"effort": None, "summary": None},
                    "safety_identifier": None, "service_tier": "default",
                    "store": body.get("store", True),
                    "temperature": body.get("temperature", 1.0),
                    "text": {"format": {"type": "text"}, "verbosity": "medium"},
                    "tool_choice": "auto", "tools": [], "top_logprobs": 0,
                    "top_p": body.get("top_p", 1.0), "truncation": "disabled",
                    "usage": with_usage, "user": None, "metadata": body.get("metadata") or {}}

        part_done = {"type": "output_text", "annotations": [], "logprobs": [],
                     "text": plan["text"]}
        item_done = {"id": mid, "type": "message", "status": final_status,
                     "content": [part_done], "role": "assistant"}
        if not stream:
            return self.json_answer(response_obj(final_status, [item_done], usage), log, headers)
        events = []

        def ev(name, payload, meta=None):
            events.append((self.sse(sc, name, {"type": name, "sequence_number": len(events),
                                               **payload}), meta))

        ev("response.created", {"response": response_obj("in_progress", [], None)})
        ev("response.in_progress", {"response": response_obj("in_progress", [], None)})
        ev("response.output_item.added", {"output_index": 0, "item": {
            "id": mid, "type": "message", "status": "in_progress", "content": [],
            "role": "assistant"}})
        ev("response.content_part.added", {"item_id": mid, "output_index": 0, "content_index": 0,
                                           "part": {"type": "output_text", "annotations": [],
                                                    "logprobs": [], "text": ""}})
        for piece in plan["pieces"]:
            ev("response.output_text.delta", {"item_id": mid, "output_index": 0,
                                              "content_index": 0, "delta": piece,
                                              "logprobs": []})
        ev("response.output_text.done", {"item_id": mid, "output_index": 0, "content_index": 0,
                                         "text": plan["text"], "logprobs": []})
        ev("response.content_part.done", {"item_id": mid, "output_index": 0, "content_index": 0,
                                          "part": part_done})
        ev("response.output_item.done", {"output_index": 0, "item": item_done})
        ev("response.incomplete" if incomplete else "response.completed",
           {"response": response_obj(final_status, [item_done], usage)}, {"usage": usage})
        error_event = self.sse(sc, "error", {
            "type": "error", "sequence_number": sc.stream_error or 0,
            "code": sc.error_code or "server_error",
            "message": sc.error_message or "The server had an error while processing your "
                                            "request.", "param": None})
        return self.sse_answer(sc, events, error_event, log, headers)

    # ---- OpenAI embeddings
    def embeddings(self, req: Request, body: dict, sc: Scenario, n: int) -> Answer:
        model = self.require_model(body)
        if "input" not in body:
            raise ApiError(400, "'input' is a required property", param="input")
        inp = body["input"]
        items = inp if isinstance(inp, list) else [inp]
        if items and all(isinstance(x, int) for x in items):
            items = [items]
        if not items:
            raise ApiError(400, "'$.input' is invalid. Please check the API reference: "
                                "https://platform.openai.com/docs/api-reference.")
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else None
        dims = dims or DEFAULT_DIMENSIONS
        seed = sc.seed if sc.seed is not None else 0
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise ApiError(400, f"Invalid value for 'encoding_format': {fmt!r}",
                           param="encoding_format")
        data = []
        for i in range(len(items)):
            vec = embedding_vector(seed, i, dims)
            emb = (base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
                   if fmt == "base64" else vec)
            data.append({"object": "embedding", "index": i, "embedding": emb})
        pt = sc.input_tokens if sc.input_tokens is not None else count_input_tokens(
            "embeddings", body)
        usage = {"prompt_tokens": pt, "total_tokens": pt}
        log = {"api": "embeddings", "model": model, "seed": seed, "usage": usage,
               "content": None, "embeddings": len(data), "dimensions": dims,
               "encoding_format": fmt}
        return self.json_answer({"object": "list", "data": data, "model": model,
                                 "usage": usage}, log, self.openai_headers(n))

    # ---- models (OpenAI format, or Anthropic's when the request has anthropic-version)
    def models(self, path: str, anthropic_style: bool, sc: Scenario) -> Answer:
        def anth(m):
            return {"type": "model", "id": m[0],
                    "display_name": ANTHROPIC_DISPLAY.get(m[0], m[0]),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m[1]))}

        def oai(m):
            return {"id": m[0], "object": "model", "created": m[1], "owned_by": m[2]}

        log = {"api": "models", "usage": None}
        if path == "/v1/models":
            if anthropic_style:
                lst = [anth(m) for m in MODELS if m[2] == "anthropic"]
                obj = {"data": lst, "has_more": False, "first_id": lst[0]["id"],
                       "last_id": lst[-1]["id"]}
            else:
                obj = {"object": "list", "data": [oai(m) for m in MODELS]}
            return self.json_answer(obj, log, pretty=not anthropic_style)
        mid = path[len("/v1/models/"):]
        log["model"] = mid
        for m in MODELS:
            if m[0] == mid:
                return self.json_answer(anth(m) if anthropic_style else oai(m), log,
                                        pretty=not anthropic_style)
        raise ApiError(404, f"The model '{mid}' does not exist" if not anthropic_style
                       else f"model: {mid}", code="model_not_found", param="model")

    # ---- Anthropic messages
    def anthropic_checks(self, body: dict) -> str:
        model = self.require_model(body, anthropic=True)
        if not isinstance(body.get("messages"), list):
            raise ApiError(400, "messages: Field required")
        return model

    def count_tokens(self, req: Request, body: dict, sc: Scenario, n: int) -> Answer:
        self.anthropic_checks(body)
        it = sc.input_tokens if sc.input_tokens is not None else count_input_tokens(
            "count_tokens", body)
        log = {"api": "count_tokens", "model": body.get("model"), "usage": None,
               "input_tokens": it}
        return self.json_answer({"input_tokens": it}, log, [("request-id", f"req_mock{n:06d}")],
                                pretty=False)

    def messages(self, req: Request, body: dict, sc: Scenario, n: int) -> Answer:
        model = self.anthropic_checks(body)
        if not isinstance(body.get("max_tokens"), int):
            raise ApiError(400, "max_tokens: Field required")
        plan = self.plan(body, sc, "messages", "max_tokens")
        it, ot = plan["input_tokens"], plan["output_tokens"]
        stop_reason = "max_tokens" if plan["truncated"] else "end_turn"
        usage = {"input_tokens": it, "cache_creation_input_tokens": sc.cache_creation,
                 "cache_read_input_tokens": sc.cache_read,
                 "cache_creation": {"ephemeral_5m_input_tokens": sc.cache_creation,
                                    "ephemeral_1h_input_tokens": 0},
                 "output_tokens": ot, "service_tier": "standard"}
        mid = f"msg_mock{n:06d}"
        stream = body.get("stream") is True
        log = {"api": "messages", "model": model, "stream": stream, "include_usage": None,
               "seed": plan["seed"], "content": plan["text"], "usage": usage}
        headers = [("request-id", f"req_mock{n:06d}"),
                   ("anthropic-organization-id", "00000000-0000-0000-0000-000000000000")]
        if not stream:
            obj = {"id": mid, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": plan["text"]}],
                   "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}
            return self.json_answer(obj, log, headers, pretty=False)
        # message_start carries the input side and output_tokens 1; message_delta the final,
        # cumulative output_tokens (and with X-Mock-Anthropic-Delta-Usage: full the input side).
        start_usage = dict(usage, output_tokens=1)
        if sc.anthropic_delta_usage == "full":
            delta_usage = {"input_tokens": it, "cache_creation_input_tokens": sc.cache_creation,
                           "cache_read_input_tokens": sc.cache_read, "output_tokens": ot}
        else:
            delta_usage = {"output_tokens": ot}
        events = []

        def ev(name, payload, meta=None):
            events.append((self.sse(sc, name, {"type": name, **payload}), meta))

        ev("message_start", {"message": {"id": mid, "type": "message", "role": "assistant",
                                         "model": model, "content": [], "stop_reason": None,
                                         "stop_sequence": None, "usage": start_usage}},
           {"usage_start": start_usage})
        ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        ev("ping", {})
        for piece in plan["pieces"]:
            ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                             "text": piece}})
        ev("content_block_stop", {"index": 0})
        ev("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                             "usage": delta_usage}, {"usage": usage})
        ev("message_stop", {})
        error_event = self.sse(sc, "error", anthropic_error_body(
            529, model, sc.error_message, sc.error_type))
        return self.sse_answer(sc, events, error_event, log, headers)

    # ---- the wire
    @staticmethod
    def plan_writes(answer: Answer, sc, eol: bytes, cut) -> list[tuple[bytes, int | None]]:
        """The body as raw (uncompressed, unframed) writes, each with the number of events
        complete once it is written (None: unchanged). `cut` is None (everything) or
        (events, bytes): for a stream, that many SSE events (comments not counted) and that many
        bytes of the next piece; for JSON, (0, bytes) keeps that many bytes of the body."""
        pieces = answer.pieces
        bodies: list[tuple[bytes, int | None]] = []
        if not answer.sse:
            data = pieces[0][0]
            bodies = [(data, 1)] if cut is None else [(data[:cut[1]], None)]
        else:
            events = 0
            for i, (p, meta) in enumerate(pieces):
                comment = bool(meta and meta.get("comment"))
                if cut is not None and not comment and events == cut[0]:
                    if cut[1]:
                        bodies.append((p[:cut[1]], None))
                    break
                if not comment:
                    events += 1
                bodies.append((p, events))
        if not sc.split:
            return bodies
        data = b"".join(b for b, _ in bodies)
        ends: dict[int, int] = {}
        pos = 0
        for b, done in bodies:
            pos += len(b)
            if done is not None:
                ends[pos] = done
        writes = []
        prev = 0
        for c in split_points(data, sc.split, eol) + [len(data)]:
            done = [ends[e] for e in ends if prev < e <= c]
            writes.append((data[prev:c], max(done) if done else None))
            prev = c
        return writes

    @staticmethod
    def gzip_writes(writes, finish: bool) -> list[tuple[bytes, int | None]]:
        """Compresses the writes as one gzip stream, flushed (Z_SYNC_FLUSH) after each write so
        that every write can be decoded on arrival; the gzip trailer goes with the last write
        when `finish`."""
        enc = zlib.compressobj(6, zlib.DEFLATED, 31)
        out = []
        for i, (seg, done) in enumerate(writes):
            last = i == len(writes) - 1
            out.append((enc.compress(seg) + enc.flush(zlib.Z_FINISH if (last and finish)
                                                      else zlib.Z_SYNC_FLUSH), done))
        if finish and not writes:
            out.append((enc.flush(zlib.Z_FINISH), None))
        return out

    async def send(self, req: Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter, answer: Answer, sc, entry: dict,
                   keep: bool) -> bool:
        if sc is None:  # the scenario headers themselves were bad: answer plainly
            sc = PLAIN
        eol = {"0": b"\n", "1": b"\r\n", "cr": b"\r"}[sc.crlf]
        n_events = sum(1 for _, m in answer.pieces if not (m and m.get("comment")))
        cut = None
        if sc.interrupt is not None:
            if answer.sse:
                if sc.interrupt[0] < n_events or (sc.interrupt[0] == n_events
                                                  and sc.interrupt[1] > 0):
                    cut = sc.interrupt
            elif sc.interrupt[0] < len(answer.pieces[0][0]):
                cut = (0, sc.interrupt[0])
        interrupted = cut is not None

        # Framing: chunked for a stream, a length for JSON, unless X-Mock-Chunked says otherwise.
        # An HTTP/1.0 request never gets chunked (it gets the close-delimited body instead).
        framing = {"1": "chunked", "0": "length", "close": "close"}.get(
            sc.chunked or "", "chunked" if answer.sse else "length")
        if req.version == "HTTP/1.0" and framing == "chunked":
            framing = "close"
        if framing == "close":
            keep = False
        accept = (req.header("accept-encoding") or "").lower()
        use_gzip = sc.gzip and any(t.split(";")[0].strip() in ("gzip", "x-gzip", "*")
                                   for t in accept.split(","))

        writes = self.plan_writes(answer, sc, eol, cut)
        if use_gzip:
            writes = self.gzip_writes(writes, finish=not interrupted)
        content_length = None
        if framing == "length":
            whole = writes if not interrupted else self.plan_writes(answer, sc, eol, None)
            if use_gzip and interrupted:
                whole = self.gzip_writes(whole, finish=True)
            content_length = sum(len(b) for b, _ in whole)

        head = [f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Unknown')}",
                f"Date: {http_date()}", f"Content-Type: {answer.content_type}"]
        if framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        elif framing == "length":
            head.append(f"Content-Length: {content_length}")
        if use_gzip:
            head.append("Content-Encoding: gzip")
        if answer.sse:
            head.append("Cache-Control: no-cache")
        head.append("Connection: keep-alive" if keep else "Connection: close")
        head += [f"{k}: {v}" for k, v in answer.headers]
        head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

        entry.update({"framing": framing, "gzip": use_gzip, "split": sc.split,
                      "crlf": sc.crlf if answer.sse else None, "interrupted": interrupted,
                      "events_planned": n_events if answer.sse else 0})
        events_done = 0
        stall_at = sc.stall if answer.sse else None
        stalled = False
        try:
            if sc.header_delay_ms:
                await asyncio.sleep(sc.header_delay_ms / 1000)
            writer.write(head_bytes)
            await writer.drain()
            for i, (seg, done) in enumerate(writes):
                if sc.delay_ms and (i > 0 or answer.sse):
                    await asyncio.sleep(sc.delay_ms / 1000)
                if seg:
                    writer.write(f"{len(seg):x}\r\n".encode() + seg + b"\r\n"
                                 if framing == "chunked" else seg)
                    await writer.drain()
                if done is not None:
                    events_done = done
                if stall_at is not None and events_done >= stall_at and i < len(writes) - 1:
                    stalled = True
                    break
            if stalled or (stall_at is not None and events_done >= stall_at and
                           not interrupted and stall_at < n_events):
                stalled = True
                entry["stalled"] = True
                # Send nothing more; wait for the peer to go away (or 120 s).
                try:
                    await asyncio.wait_for(reader.read(1), timeout=120)
                except (asyncio.TimeoutError, ConnectionError, OSError):
                    pass
                keep = False
            elif interrupted:
                keep = False
            else:
                if framing == "chunked":
                    writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            entry["client_gone"] = True
            keep = False
        if (interrupted or stalled) and sc.reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
        # What was reported: the usage of the last complete event that carries one.
        if answer.sse:
            entry["events_sent"] = events_done
            final, start = None, None
            k = 0
            for p, meta in answer.pieces:
                if meta and meta.get("comment"):
                    continue
                if k >= events_done:
                    break
                k += 1
                if meta and "usage" in meta:
                    final = meta["usage"]
                if meta and "usage_start" in meta:
                    start = meta["usage_start"]
            entry["usage"] = final
            entry["usage_start"] = start
        else:
            entry["events_sent"] = 0
            if interrupted or answer.status != 200 or entry.get("client_gone"):
                entry["usage"] = None
        entry["duration_ms"] = int((time.time() - entry["time"]) * 1000)
        self.record(entry)
        return keep


class _Plain:
    delay_ms = header_delay_ms = 0
    crlf = "0"
    gzip = reset = False
    chunked = split = interrupt = stall = None


PLAIN = _Plain()


async def main_async(args) -> None:
    server = Server(args.log, args.require_key)
    srv = await asyncio.start_server(server.handle, args.host, args.port, limit=MAX_HEAD,
                                     reuse_address=True)
    port = srv.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"mock_provider: listening on {args.host}:{port}", flush=True)
    async with srv:
        await srv.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description="Mock OpenAI/Anthropic provider for gpt_auth tests")
    ap.add_argument("--port", type=int, required=True, help="TCP port (0: any free port)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--log", help="append one JSON line per answer to this file")
    ap.add_argument("--port-file", help="write the bound port to this file when listening")
    ap.add_argument("--require-key", help="answer 401 unless Authorization: Bearer KEY or "
                                          "x-api-key: KEY is sent")
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
