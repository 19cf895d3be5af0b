#!/usr/bin/env python3
"""Drives the official `openai` and `anthropic` Python SDKs for gpt_auth's tests.

Run it with the venv of tools/install-python.sh:

    build/pyenv/bin/python t/ai/client.py --sdk openai --call chat \\
        --base-url http://127.0.0.1:PORT/v1 --api-key KEY --model gpt-4o --stream --include-usage

It makes one call and prints one JSON object on stdout:

    {"ok": true, "sdk": "openai", "call": "chat", "stream": true, "model": "gpt-4o",
     "content": "...", "usage": {...} or null, "chunks": 53, "finish_reason": "stop", ...}

or, when the SDK raised:

    {"ok": false, "error_class": "PermissionDeniedError", "error_module": "openai",
     "status": 403, "message": "...", "body": {...}, "content": "<what arrived before>", ...}

Exit status: 0 when ok, 1 when the SDK raised (the JSON says what), 2 on bad arguments.
Retries are off (max_retries=0) and the timeout short (--timeout, 10 s) so that tests are fast
and deterministic. See t/ai/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdk", choices=["openai", "anthropic"], required=True)
    ap.add_argument("--call", required=True,
                    choices=["chat", "completions", "responses", "embeddings", "models",
                             "model", "messages", "count_tokens"],
                    help="openai: chat, completions, responses, embeddings, models, model; "
                         "anthropic: messages, count_tokens, models")
    ap.add_argument("--base-url", required=True,
                    help="openai: the API root with /v1 (http://H:P/v1); "
                         "anthropic: the host root without /v1 (http://H:P)")
    ap.add_argument("--api-key", help="sent as the SDK sends its key (Authorization: Bearer for "
                                      "both SDKs of these versions); omitted: no key is sent")
    ap.add_argument("--x-api-key", help="anthropic: send this as x-api-key (the header the "
                                        "Messages API documents) instead of an SDK key")
    ap.add_argument("--cookie", help="Cookie header value, e.g. 'gpt_auth=...'")
    ap.add_argument("--header", action="append", default=[], metavar="NAME: VALUE",
                    help="an extra request header (repeatable)")
    ap.add_argument("--mock", action="append", default=[], metavar="NAME=VALUE",
                    help="a mock scenario header: --mock split=bytewise sends X-Mock-Split: "
                         "bytewise (repeatable)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompt", default="Hello", help="the user message / input text")
    ap.add_argument("--system", default=None, help="system prompt / instructions")
    ap.add_argument("--max-tokens", type=int, default=None,
                    help="chat: max_completion_tokens; responses: max_output_tokens; "
                         "messages: max_tokens (default 1024, the API requires one)")
    ap.add_argument("--seed", type=int, default=None, help="sent as X-Mock-Seed")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--include-usage", action="store_true",
                    help="chat/completions stream: stream_options={'include_usage': True}")
    ap.add_argument("--helper", action="store_true",
                    help="use the SDK's stream helper (openai: chat.completions.stream() / "
                         "responses.stream(); anthropic: messages.stream()) and its final "
                         "message, instead of iterating create(stream=True)")
    ap.add_argument("--input", action="append", default=None,
                    help="embeddings: an input string (repeatable; default: --prompt)")
    ap.add_argument("--dimensions", type=int, default=None, help="embeddings: dimensions")
    ap.add_argument("--encoding-format", choices=["float", "base64"], default=None,
                    help="embeddings: left to the SDK when omitted (it asks for base64)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--events", action="store_true",
                    help="list the type of every stream item received in the output")
    return ap.parse_args(argv)


def headers_from(args):
    h = {}
    for item in args.header:
        if ":" not in item:
            raise SystemExit(f"client: --header {item!r}: expected 'Name: value'")
        k, v = item.split(":", 1)
        h[k.strip()] = v.strip()
    for item in args.mock:
        if "=" not in item:
            raise SystemExit(f"client: --mock {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        name = "X-Mock-" + "-".join(p[:1].upper() + p[1:] for p in k.strip().split("-"))
        h[name] = v.strip()
    if args.seed is not None:
        h["X-Mock-Seed"] = str(args.seed)
    if args.cookie is not None:
        h["Cookie"] = args.cookie
    return h


def dump(obj):
    """A plain-JSON form of an SDK model (or None)."""
    if obj is None:
        return None
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", exclude_unset=True)
    return obj


# -------------------------------------------------------------------------------------------------
# openai

def openai_client(args, headers):
    import openai

    # No key: the SDK insists on one, or on Authorization being left out explicitly, which it
    # accepts only per request (extra_headers), so every call below gets `x` (extra kwargs).
    x = {} if args.api_key is not None else {"extra_headers": {"Authorization": openai.Omit()}}
    client = openai.OpenAI(base_url=args.base_url, default_headers=headers, max_retries=0,
                           timeout=args.timeout,
                           api_key=args.api_key if args.api_key is not None else "unused")
    return client, x


def run_openai(args, out):
    headers = headers_from(args)
    client, x = openai_client(args, headers)
    call = args.call
    if call == "models":
        page = client.models.list(**x)
        out["models"] = [m.id for m in page.data]
        out["data"] = [dump(m) for m in page.data]
        return
    if call == "model":
        m = client.models.retrieve(args.model, **x)
        out["data"] = dump(m)
        out["model"] = m.id
        return
    if call == "embeddings":
        kw = {}
        if args.dimensions is not None:
            kw["dimensions"] = args.dimensions
        if args.encoding_format is not None:
            kw["encoding_format"] = args.encoding_format
        inputs = args.input or [args.prompt]
        r = client.embeddings.create(model=args.model or "text-embedding-3-small",
                                     input=inputs if len(inputs) > 1 else inputs[0], **kw, **x)
        out["model"] = r.model
        out["usage"] = dump(r.usage)
        out["embeddings"] = [e.embedding if isinstance(e.embedding, list) else e.embedding
                             for e in r.data]
        out["dimensions"] = len(r.data[0].embedding) if r.data else 0
        return
    model = args.model or "gpt-4o"
    if call == "chat":
        messages = []
        if args.system is not None:
            messages.append({"role": "system", "content": args.system})
        messages.append({"role": "user", "content": args.prompt})
        kw = {}
        if args.max_tokens is not None:
            kw["max_completion_tokens"] = args.max_tokens
        if args.stream and args.include_usage:
            kw["stream_options"] = {"include_usage": True}
        if not args.stream:
            r = client.chat.completions.create(model=model, messages=messages, **kw, **x)
            out.update(model=r.model, id=r.id, content=r.choices[0].message.content,
                       finish_reason=r.choices[0].finish_reason, usage=dump(r.usage))
            return
        if args.helper:
            with client.chat.completions.stream(model=model, messages=messages, **kw, **x) as s:
                for ev in s:
                    out["chunks"] += 1
                    if args.events:
                        out["events"].append(ev.type)
                    if ev.type == "content.delta":
                        out["content"] += ev.delta
                    elif ev.type == "chunk":
                        out["model"] = ev.chunk.model
                        if ev.chunk.usage is not None:
                            out["usage"] = dump(ev.chunk.usage)
                final = s.get_final_completion()
            out["final_content"] = final.choices[0].message.content if final.choices else None
            out["finish_reason"] = final.choices[0].finish_reason if final.choices else None
            out["usage"] = dump(final.usage)
            return
        stream = client.chat.completions.create(model=model, messages=messages, stream=True,
                                                **kw, **x)
        out["usage_null_chunks"] = 0
        for chunk in stream:
            out["chunks"] += 1
            out["model"], out["id"] = chunk.model, chunk.id
            if args.events:
                out["events"].append("chunk" if chunk.choices else "usage-chunk")
            if chunk.usage is not None:
                out["usage"] = dump(chunk.usage)
            elif "usage" in (chunk.model_fields_set or ()):
                out["usage_null_chunks"] += 1
            for ch in chunk.choices:
                if ch.delta and ch.delta.content:
                    out["content"] += ch.delta.content
                if ch.finish_reason:
                    out["finish_reason"] = ch.finish_reason
        return
    if call == "completions":
        kw = {}
        if args.max_tokens is not None:
            kw["max_tokens"] = args.max_tokens
        if args.stream and args.include_usage:
            kw["stream_options"] = {"include_usage": True}
        if not args.stream:
            r = client.completions.create(model=model, prompt=args.prompt, **kw, **x)
            out.update(model=r.model, id=r.id, content=r.choices[0].text,
                       finish_reason=r.choices[0].finish_reason, usage=dump(r.usage))
            return
        for chunk in client.completions.create(model=model, prompt=args.prompt, stream=True,
                                               **kw, **x):
            out["chunks"] += 1
            out["model"] = chunk.model
            if chunk.usage is not None:
                out["usage"] = dump(chunk.usage)
            for ch in chunk.choices:
                out["content"] += ch.text
                if ch.finish_reason:
                    out["finish_reason"] = ch.finish_reason
        return
    if call == "responses":
        kw = {}
        if args.max_tokens is not None:
            kw["max_output_tokens"] = args.max_tokens
        if args.system is not None:
            kw["instructions"] = args.system
        if not args.stream:
            r = client.responses.create(model=model, input=args.prompt, **kw, **x)
            out.update(model=r.model, id=r.id, content=r.output_text, status_field=r.status,
                       usage=dump(r.usage))
            return
        if args.helper:
            with client.responses.stream(model=model, input=args.prompt, **kw, **x) as s:
                for ev in s:
                    out["chunks"] += 1
                    if args.events:
                        out["events"].append(ev.type)
                    if ev.type == "response.output_text.delta":
                        out["content"] += ev.delta
                final = s.get_final_response()
            out.update(model=final.model, id=final.id, final_content=final.output_text,
                       status_field=final.status, usage=dump(final.usage))
            return
        seqs = []
        for ev in client.responses.create(model=model, input=args.prompt, stream=True, **kw,
                                          **x):
            out["chunks"] += 1
            seqs.append(ev.sequence_number)
            if args.events:
                out["events"].append(ev.type)
            if ev.type == "response.output_text.delta":
                out["content"] += ev.delta
            elif ev.type in ("response.completed", "response.incomplete", "response.failed"):
                out.update(model=ev.response.model, id=ev.response.id,
                           status_field=ev.response.status, usage=dump(ev.response.usage))
            elif ev.type == "response.created":
                out["model"] = ev.response.model
            elif ev.type == "error":
                # The SDK hands an error event over as an item; it does not raise.
                out["stream_error"] = {"code": ev.code, "message": ev.message}
        out["sequence_ok"] = seqs == list(range(len(seqs)))
        return
    raise SystemExit(f"client: --call {call} is not an openai call")


# -------------------------------------------------------------------------------------------------
# anthropic

def anthropic_client(args, headers):
    import anthropic

    kw = {}
    if args.x_api_key is not None:
        headers = dict(headers, **{"x-api-key": args.x_api_key})
    if args.api_key is not None:
        kw["api_key"] = args.api_key
    else:
        # No key: tell the SDK (which otherwise refuses to send) that Authorization is left out.
        headers = dict(headers, Authorization=anthropic.Omit())
        kw["api_key"] = None
    return anthropic.Anthropic(base_url=args.base_url, default_headers=headers, max_retries=0,
                               timeout=args.timeout, **kw)


def run_anthropic(args, out):
    headers = headers_from(args)
    client = anthropic_client(args, headers)
    call = args.call
    if call == "models":
        page = client.models.list()
        out["models"] = [m.id for m in page.data]
        out["data"] = [dump(m) for m in page.data]
        return
    model = args.model or "claude-sonnet-4-5"
    messages = [{"role": "user", "content": args.prompt}]
    kw = {}
    if args.system is not None:
        kw["system"] = args.system
    if call == "count_tokens":
        r = client.messages.count_tokens(model=model, messages=messages, **kw)
        out["input_tokens"] = r.input_tokens
        return
    if call != "messages":
        raise SystemExit(f"client: --call {call} is not an anthropic call")
    max_tokens = args.max_tokens if args.max_tokens is not None else 1024
    if not args.stream:
        r = client.messages.create(model=model, max_tokens=max_tokens, messages=messages, **kw)
        out.update(model=r.model, id=r.id, stop_reason=r.stop_reason, usage=dump(r.usage),
                   content="".join(b.text for b in r.content if b.type == "text"))
        return
    if args.helper:
        with client.messages.stream(model=model, max_tokens=max_tokens, messages=messages,
                                    **kw) as s:
            for ev in s:
                out["chunks"] += 1
                if args.events:
                    out["events"].append(ev.type)
                if ev.type == "text":
                    out["content"] += ev.text
            final = s.get_final_message()
        out.update(model=final.model, id=final.id, stop_reason=final.stop_reason,
                   usage=dump(final.usage),
                   final_content="".join(b.text for b in final.content if b.type == "text"))
        return
    usage = None
    for ev in client.messages.create(model=model, max_tokens=max_tokens, messages=messages,
                                     stream=True, **kw):
        out["chunks"] += 1
        if args.events:
            out["events"].append(ev.type)
        if ev.type == "message_start":
            out.update(model=ev.message.model, id=ev.message.id)
            usage = dump(ev.message.usage)
            out["usage_start"] = dict(usage)
        elif ev.type == "content_block_delta" and ev.delta.type == "text_delta":
            out["content"] += ev.delta.text
        elif ev.type == "message_delta":
            out["stop_reason"] = ev.delta.stop_reason
            # message_delta's counts are cumulative: they replace those of message_start.
            delta = {k: v for k, v in dump(ev.usage).items() if v is not None}
            usage = dict(usage or {}, **delta)
            out["usage"] = usage
        elif ev.type == "message_stop":
            out["message_stop"] = True
    return


# -------------------------------------------------------------------------------------------------

def error_json(e, out):
    mod = type(e).__module__.split(".")[0]
    out["ok"] = False
    out["error_class"] = type(e).__name__
    out["error_module"] = mod
    out["error_qualname"] = f"{type(e).__module__}.{type(e).__qualname__}"
    out["status"] = getattr(e, "status_code", None)
    out["message"] = str(e)
    body = getattr(e, "body", None)
    out["body"] = body if isinstance(body, (dict, list, str, type(None))) else repr(body)
    resp = getattr(e, "response", None)
    if resp is not None and getattr(e, "status_code", None) is not None:
        out["response_headers"] = {k.lower(): v for k, v in resp.headers.items()}
    cause = e.__cause__ or e.__context__
    if cause is not None and out["status"] is None:
        out["cause"] = f"{type(cause).__module__}.{type(cause).__name__}: {cause}"


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    out = {"ok": True, "sdk": args.sdk, "call": args.call, "stream": args.stream,
           "model": None, "content": "", "usage": None, "chunks": 0}
    if args.events:
        out["events"] = []
    try:
        # Only the SDK in use is imported: each takes about a second to import.
        sdk = __import__(args.sdk)
        out["sdk_version"] = sdk.__version__
        if args.sdk == "openai":
            run_openai(args, out)
        else:
            run_anthropic(args, out)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is reported, as JSON
        error_json(e, out)
        base = sdk.OpenAIError if args.sdk == "openai" else sdk.AnthropicError
        if not isinstance(e, base):
            # Not one of the SDK's exceptions (e.g. a transport error it let through).
            out["not_sdk_error"] = True
            if not isinstance(e, OSError) and "httpx" not in type(e).__module__ and \
                    "httpcore" not in type(e).__module__:
                out["traceback"] = traceback.format_exc()
        print(json.dumps(out, ensure_ascii=False))
        return 1
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
