"""A fake LLM provider on loopback: OpenAI chat completions, Anthropic messages and Gemini
generateContent, plain and streamed, with tool calls. It records every request it gets and
can be scripted into faults, per model, for the next N requests (each request records the
proxy's TCP address in `client`, so tests can count upstream connections):

    upstream.script("gpt-4.1", Fault.status(503), Fault.status(503))   # two 503s, then normal
    upstream.script("*", Fault.hang(5))

Faults: status (any code, optional Retry-After of any text, e.g. `1s` or `soon`, optional
error `message`), hang (sleep before answering; a caller that disconnects meanwhile is
recorded in `disconnected_at`), malformed (200 with a body that is not JSON), garbage (200,
binary noise, any content type), cut (stream stops mid-way, no terminator), slow_first
(stream waits before its first chunk), slow (delay between chunks), stream_error (some
chunks, then the provider's own error event). In a `message`, `{key}` becomes the API key the
request carried (Authorization, x-api-key, x-goog-api-key or ?key=): a provider that echoes
it, for the tests that grep everything for keys. echo_key: an error quoting that key after
`pad` characters of filler (`after_chunks` >= 0: as an in-band event of a started stream).
A raw ASGI app, so it
is fast enough to serve as the benchmark's zero-delay upstream too.

Run standalone: python -m tests.support.fake_upstream --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 200
    seconds: float = 0.0
    retry_after: str | None = None
    after_chunks: int = 2
    message: str | None = None

    @classmethod
    def status_(cls, code: int, retry_after: float | str | None = None, message: str | None = None) -> Fault:
        return cls("status", status=code, retry_after=None if retry_after is None else str(retry_after), message=message)

    @classmethod
    def stream_error(cls, message: str, after_chunks: int = 2) -> Fault:
        return cls("stream_error", message=message, after_chunks=after_chunks)

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage")

    @classmethod
    def echo_key(cls, code: int = 401, pad: int = 0, after_chunks: int = -1) -> Fault:
        """A careless provider: its error message quotes the caller's API key (as the error
        response, or for a stream with `after_chunks` >= 0, as an event after that many)."""
        return cls("echo_key", status=code, seconds=float(pad), after_chunks=after_chunks)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def cut(cls, after_chunks: int = 2) -> Fault:
        return cls("cut", after_chunks=after_chunks)

    @classmethod
    def slow_first(cls, seconds: float) -> Fault:
        return cls("slow_first", seconds=seconds)

    @classmethod
    def slow(cls, seconds_per_chunk: float) -> Fault:
        return cls("slow", seconds=seconds_per_chunk)


Fault.status = Fault.status_  # type: ignore[assignment,method-assign]


@dataclass
class Received:
    path: str
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    disconnected_at: float | None = None
    completed: bool = False
    client: tuple[str, int] | None = None  # the proxy's end of the TCP connection (host, port)
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens this upstream reported
    query: str = ""


@dataclass
class FakeUpstream:
    """The ASGI app plus its script and its record of what it received."""

    chunks: int = 8  # content chunks per streamed answer
    reply: str = "Hello from the fake upstream."
    replies: dict[str, str] = field(default_factory=dict)  # per upstream model name: another reply
    received: list[Received] = field(default_factory=list)
    _faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    record: bool = True
    # Scripted tool calls: when a request offers tools, the next entry {"name", "arguments"} is
    # called if that tool is offered (then the default: a call when the last turn is the user's,
    # else text); with "force": true it is called even if not offered. `call_tools_forever`
    # names a tool to call on every request that offers it.
    tool_calls: deque[dict[str, Any]] = field(default_factory=deque)
    call_tools_forever: dict[str, Any] | None = None

    # ── control ─────────────────────────────────────────────────────────────
    def script(self, model: str, *faults: Fault) -> None:
        with self._lock:
            self._faults[model].extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.received.clear()
            self.replies.clear()
            self.tool_calls.clear()
            self.call_tools_forever = None

    def requests_for(self, model: str) -> list[Received]:
        return [r for r in self.received if r.model == model]

    def _scripted_call(self, body: dict) -> dict[str, Any] | None:
        names = {(t.get("function") or {}).get("name") or t.get("name") for t in body.get("tools") or () if isinstance(t, dict)}
        forever = self.call_tools_forever
        if forever is not None and forever["name"] in names:
            return forever
        with self._lock:
            if self.tool_calls and (self.tool_calls[0]["name"] in names or self.tool_calls[0].get("force")):
                return self.tool_calls.popleft()
        return None

    def _next_fault(self, model: str) -> Fault | None:
        with self._lock:
            for name in (model, "*"):
                queue = self._faults.get(name)
                if queue:
                    return queue.popleft()
        return None

    # ── ASGI ────────────────────────────────────────────────────────────────
    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path == "/_control/script":
            data = orjson.loads(raw)
            self.script(data["model"], *(Fault(**f) for f in data["faults"]))
            return await _send(send, 200, b"{}")
        if path == "/_control/reset":
            self.reset()
            return await _send(send, 200, b"{}")
        if path == "/_control/received":
            return await _send(send, 200, orjson.dumps([r.__dict__ for r in self.received]))
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return await _send(send, 400, b'{"error": {"message": "bad json"}}')
        if path.endswith("/embeddings") or ":batchEmbedContents" in path:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            rec = Received(
                path, body.get("model") or path.split("/models/")[-1].split(":")[0], body, headers, time.monotonic(), completed=True
            )
            if self.record:
                self.received.append(rec)
            fault = self._next_fault(rec.model)
            if fault and fault.kind == "status":
                return await _send(send, fault.status, orjson.dumps({"error": {"message": f"fake upstream says {fault.status}"}}))
            return await _send(send, 200, orjson.dumps(embeddings_answer(path, body)))
        if path.endswith("/chat/completions"):
            fmt, model, stream = "openai", body.get("model", ""), bool(body.get("stream"))
        elif path.endswith("/messages"):
            fmt, model, stream = "anthropic", body.get("model", ""), bool(body.get("stream"))
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            fmt = "gemini"
            model = path.split("/models/")[-1].split(":")[0]
            stream = ":streamGenerateContent" in path
        else:
            return await _send(send, 404, b'{"error": {"message": "no such route"}}')
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        client = scope.get("client")
        query = scope.get("query_string", b"").decode()
        rec = Received(path, model, body, headers, time.monotonic(), client=tuple(client) if client else None, query=query)
        if self.record:
            self.received.append(rec)
        fault = self._next_fault(model)
        await self._answer(fmt, model, body, stream, fault, rec, receive, send)

    async def _answer(
        self, fmt: str, model: str, body: dict, stream: bool, fault: Fault | None, rec: Received, receive: Any, send: Any
    ) -> None:
        if fault and fault.kind == "hang":
            disconnect = asyncio.ensure_future(_wait_disconnect(receive))
            done, _ = await asyncio.wait({disconnect}, timeout=fault.seconds)
            if done:  # the caller gave up while we hung
                rec.disconnected_at = time.monotonic()
                return
            disconnect.cancel()
        if fault and fault.kind == "status":
            extra = [(b"retry-after", fault.retry_after.encode())] if fault.retry_after else []
            text = _fill(fault.message, rec) if fault.message else f"fake upstream says {fault.status}"
            msg = {"error": {"message": text, "type": "fake_error"}}
            return await _send(send, fault.status, orjson.dumps(msg), extra)
        if fault and fault.kind == "garbage":
            return await _send(send, 200, b"\x00\xff<html>\x1b[31m not an API", [(b"x-garbage", b"1")])
        if fault and fault.kind == "echo_key" and (fault.after_chunks < 0 or not stream):
            return await _send(send, fault.status, orjson.dumps(_echo_error(fault, rec)))
        if fault and fault.kind == "malformed":
            if stream:
                await _start_stream(send)
                await send({"type": "http.response.body", "body": b"data: {not json\n\n", "more_body": False})
                return
            return await _send(send, 200, b'{"id": "x", "choices": [tru')
        answer = _Answer.for_request(fmt, body, self.replies.get(model, self.reply), next(self._ids), self._scripted_call(body))
        rec.usage = (answer.prompt_tokens, answer.completion_tokens)
        if fault and fault.kind == "length":  # cut at the token limit
            answer.finish = "length"
        if not stream:
            rec.completed = True
            return await _send(send, 200, orjson.dumps(answer.full(fmt, model)))
        await _start_stream(send)
        events = answer.events(fmt, model, self.chunks)
        disconnect = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            for i, event in enumerate(events):
                delay = 0.0
                if fault and fault.kind == "slow_first" and i == 0:
                    delay = fault.seconds
                elif fault and fault.kind == "slow":
                    delay = fault.seconds
                if fault and fault.kind == "echo_key" and i >= fault.after_chunks:
                    await send({"type": "http.response.body", "body": _sse(_echo_error(fault, rec)), "more_body": False})
                    return
                if fault and fault.kind == "cut" and i >= fault.after_chunks:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                if fault and fault.kind == "stream_error" and i >= fault.after_chunks:
                    await send(
                        {"type": "http.response.body", "body": _error_event(fmt, _fill(fault.message or "", rec)), "more_body": False}
                    )
                    return
                if delay:
                    done, _ = await asyncio.wait({disconnect}, timeout=delay)
                    if done:
                        rec.disconnected_at = time.monotonic()
                        return
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            rec.completed = True
        except OSError:
            rec.disconnected_at = time.monotonic()
        finally:
            disconnect.cancel()


def _arguments(tool: dict[str, Any]) -> str:
    """A scripted call's arguments as the wire's JSON text (a string is sent as is: broken JSON too)."""
    args = tool["arguments"]
    return args if isinstance(args, str) else orjson.dumps(args).decode()


def _fill(template: str | None, rec: Received) -> str:
    """`{key}` -> the API key the request carried (as a provider that echoes it would)."""
    if not template:
        return ""
    h = rec.headers
    key = h.get("x-api-key") or h.get("x-goog-api-key") or h.get("authorization", "").removeprefix("Bearer ").strip()
    if not key and "key=" in rec.query:
        key = rec.query.split("key=", 1)[1].split("&", 1)[0]
    return template.replace("{key}", key)


def _error_event(fmt: str, message: str) -> bytes:
    if fmt == "anthropic":
        return _sse({"type": "error", "error": {"type": "overloaded_error", "message": message}}, "error")
    return _sse({"error": {"message": message, "type": "server_error", "code": 500}})


async def _wait_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send(send: Any, status: int, body: bytes, extra: list | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


async def _start_stream(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})


def _sse(obj: Any, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n".encode() if event else b""
    return prefix + b"data: " + orjson.dumps(obj) + b"\n\n"


@dataclass
class _Answer:
    """What the fake model says: a tool call when tools are offered and the last turn is the
    user's, otherwise text. Token counts are deterministic functions of the request."""

    text: str
    tool: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    n: int
    finish: str | None = None  # an OpenAI-format finish_reason instead of stop / tool_calls (Fault("length"))

    @classmethod
    def for_request(cls, fmt: str, body: dict, reply: str, n: int, scripted: dict[str, Any] | None = None) -> _Answer:
        tools = body.get("tools") or []
        tool = None
        if fmt == "gemini":
            contents = body.get("contents") or []
            last_is_user = bool(contents) and contents[-1].get("role") == "user" and any("text" in p for p in contents[-1].get("parts", []))
            decls = [d for t in tools for d in t.get("function_declarations", t.get("functionDeclarations", []))]
            names = [d["name"] for d in decls]
        else:
            messages = [m for m in body.get("messages") or [] if m.get("role") != "system"]  # a trailing system turn is context
            last_is_user = bool(messages) and messages[-1].get("role") == "user"
            if fmt == "anthropic":
                last_is_user = last_is_user and not any(
                    isinstance(b, dict) and b.get("type") == "tool_result"
                    for b in (messages[-1].get("content") or [])
                    if isinstance(messages[-1].get("content"), list)
                )
            names = [t.get("function", {}).get("name") if fmt == "openai" else t.get("name") for t in tools]
        if scripted is not None:
            tool = {"name": scripted["name"], "arguments": scripted.get("arguments") or {}}
        elif names and last_is_user:
            tool = {"name": names[0], "arguments": {"city": "Paris"}}
        prompt_tokens = max(1, len(orjson.dumps(body)) // 4)
        words = reply.split()
        return cls(reply, tool, prompt_tokens, 5 if tool else len(words), n)

    def full(self, fmt: str, model: str) -> dict[str, Any]:
        if fmt == "openai":
            message: dict[str, Any] = {"role": "assistant", "content": None if self.tool else self.text}
            if self.tool:
                message["tool_calls"] = [
                    {
                        "id": f"call_{self.n}",
                        "type": "function",
                        "function": {"name": self.tool["name"], "arguments": _arguments(self.tool)},
                    }
                ]
            return {
                "id": f"chatcmpl-{self.n}",
                "object": "chat.completion",
                "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason, "logprobs": None}],
                "usage": {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": self.prompt_tokens + self.completion_tokens,
                },
            }
        if fmt == "anthropic":
            content = (
                [{"type": "tool_use", "id": f"toolu_{self.n}", "name": self.tool["name"], "input": self.tool["arguments"]}]
                if self.tool
                else [{"type": "text", "text": self.text}]
            )
            return {
                "id": f"msg_{self.n}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": "tool_use" if self.tool else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens},
            }
        part = {"functionCall": {"name": self.tool["name"], "args": self.tool["arguments"]}} if self.tool else {"text": self.text}
        return {
            "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {
                "promptTokenCount": self.prompt_tokens,
                "candidatesTokenCount": self.completion_tokens,
                "totalTokenCount": self.prompt_tokens + self.completion_tokens,
            },
            "modelVersion": model,
        }

    @property
    def finish_reason(self) -> str:
        return self.finish or ("tool_calls" if self.tool else "stop")

    def pieces(self, chunks: int) -> list[str]:
        words = self.text.split(" ")
        size = max(1, -(-len(words) // chunks))
        groups = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        return [g if i == 0 else " " + g for i, g in enumerate(groups)]

    def events(self, fmt: str, model: str, chunks: int) -> list[bytes]:
        pieces = self.pieces(chunks)
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if fmt == "openai":
            base = {"id": f"chatcmpl-{self.n}", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
            out = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
            if self.tool:
                call = {"index": 0, "id": f"call_{self.n}", "type": "function", "function": {"name": self.tool["name"], "arguments": ""}}
                out.append(_sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}))
                args = {"index": 0, "function": {"arguments": _arguments(self.tool)}}
                out.append(_sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [args]}, "finish_reason": None}]}))
            else:
                out += [_sse({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}) for p in pieces]
            out.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": self.finish_reason}]}))
            out.append(_sse({**base, "choices": [], "usage": usage}))
            out.append(b"data: [DONE]\n\n")
            return out
        if fmt == "anthropic":
            start = {
                "type": "message_start",
                "message": {
                    "id": f"msg_{self.n}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1},
                },
            }
            out = [_sse(start, "message_start")]
            if self.tool:
                out.append(
                    _sse(
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "tool_use", "id": f"toolu_{self.n}", "name": self.tool["name"], "input": {}},
                        },
                        "content_block_start",
                    )
                )
                out.append(
                    _sse(
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "input_json_delta", "partial_json": orjson.dumps(self.tool["arguments"]).decode()},
                        },
                        "content_block_delta",
                    )
                )
            else:
                out.append(
                    _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start")
                )
                out += [
                    _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}, "content_block_delta")
                    for p in pieces
                ]
            out.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
            out.append(
                _sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "tool_use" if self.tool else "end_turn"},
                        "usage": {"output_tokens": self.completion_tokens},
                    },
                    "message_delta",
                )
            )
            out.append(_sse({"type": "message_stop"}, "message_stop"))
            return out
        out = []
        meta = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.completion_tokens,
            "totalTokenCount": self.prompt_tokens + self.completion_tokens,
        }
        if self.tool:
            part = {"functionCall": {"name": self.tool["name"], "args": self.tool["arguments"]}}
            out.append(
                _sse(
                    {
                        "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
                        "usageMetadata": meta,
                        "modelVersion": model,
                    }
                )
            )
            return out
        for i, p in enumerate(pieces):
            cand: dict[str, Any] = {"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}
            event: dict[str, Any] = {"candidates": [cand], "modelVersion": model}
            if i == len(pieces) - 1:
                cand["finishReason"] = "STOP"
                event["usageMetadata"] = meta
            out.append(_sse(event))
        return out


EMBED_DIMS = 8


def fake_vector(text: str, dims: int) -> list[float]:
    """Deterministic: the same text always gets the same vector (so tests can compare)."""
    seed = sum(map(ord, text)) or 1
    return [((seed * (i + 7)) % 97) / 97.0 for i in range(dims)]


def embeddings_answer(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI /embeddings (`dimensions` honoured, else EMBED_DIMS floats) or Gemini batchEmbedContents."""
    if ":batchEmbedContents" in path:
        out = []
        for r in body.get("requests") or ():
            text = "".join(p.get("text", "") for p in r["content"]["parts"])
            out.append({"values": fake_vector(text, r.get("outputDimensionality") or EMBED_DIMS)})
        return {"embeddings": out}
    items = body.get("input")
    items = [items] if isinstance(items, str) or (items and isinstance(items[0], int)) else items
    dims = body.get("dimensions") or EMBED_DIMS
    data = [{"object": "embedding", "index": i, "embedding": fake_vector(str(t), dims)} for i, t in enumerate(items)]
    tokens = sum(len(t) if isinstance(t, list) else len(str(t).split()) for t in items)
    return {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="fake LLM upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--no-record", action="store_true", help="do not keep requests (long benchmark runs)")
    args = parser.parse_args()
    app = FakeUpstream(chunks=args.chunks, record=not args.no_record)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()


def _echo_error(fault: Fault, rec: Received) -> dict[str, Any]:
    """A careless provider's error: filler, then the key the request carried."""
    filler = ("The request could not be authorised. " * (1 + int(fault.seconds) // 36))[: int(fault.seconds)]
    message = filler + _fill("Incorrect API key provided: {key}. You can find your API key in your account settings.", rec)
    return {"type": "error", "error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
