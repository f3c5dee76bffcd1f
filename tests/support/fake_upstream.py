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

from tests.support.fake_answers import Answer, echo_error, embeddings_answer, error_event, fill_key, sse


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
            text = fill_key(fault.message, rec) if fault.message else f"fake upstream says {fault.status}"
            msg = {"error": {"message": text, "type": "fake_error"}}
            return await _send(send, fault.status, orjson.dumps(msg), extra)
        if fault and fault.kind == "garbage":
            return await _send(send, 200, b"\x00\xff<html>\x1b[31m not an API", [(b"x-garbage", b"1")])
        if fault and fault.kind == "echo_key" and (fault.after_chunks < 0 or not stream):
            return await _send(send, fault.status, orjson.dumps(echo_error(fault, rec)))
        if fault and fault.kind == "malformed":
            if stream:
                await _start_stream(send)
                await send({"type": "http.response.body", "body": b"data: {not json\n\n", "more_body": False})
                return
            return await _send(send, 200, b'{"id": "x", "choices": [tru')
        answer = Answer.for_request(fmt, body, self.replies.get(model, self.reply), next(self._ids), self._scripted_call(body))
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
                    await send({"type": "http.response.body", "body": sse(echo_error(fault, rec)), "more_body": False})
                    return
                if fault and fault.kind == "cut" and i >= fault.after_chunks:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                if fault and fault.kind == "stream_error" and i >= fault.after_chunks:
                    await send(
                        {"type": "http.response.body", "body": error_event(fmt, fill_key(fault.message or "", rec)), "more_body": False}
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
