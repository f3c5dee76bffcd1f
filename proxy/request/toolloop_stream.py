"""The MCP tool loop for a streamed request: every model call is streamed upstream, its text
goes to the client as it arrives, and the tool calls between the turns are shown in the
client's format while the loop runs (Responses: the mcp_list_tools / mcp_call events; chat
completions has no such event, so its client sees the text only).

The loop runs in a task of its own, feeding a queue the response body reads. Nothing is sent
before the first model call has answered: until then a refusal (a rate limit, a budget, no
model up, a bad tool) is an ordinary HTTP error. After that, an error ends the stream with the
API's error event. A client that goes away cancels the loop: the model call in flight is closed
and its reservation released (or settled to what it streamed), the request recorded once (499).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

import anyio

from proxy.dispatch.dispatcher import Outcome
from proxy.errors import ProxyError, ServiceUnavailable
from proxy.mcp.loop import LoopTrace
from proxy.mcp.options import ToolRequest
from proxy.mcp.servers import ToolResult, ToolSpec
from proxy.policy.registry import ModelSpec
from proxy.providers import sse
from proxy.providers.base import UpstreamError, Usage
from proxy.request.admission import Admission
from proxy.request.canonical import CanonicalRequest
from proxy.request.drain import StreamCut
from proxy.request.exchange import Exchange
from proxy.request.inbound import LoopStream
from proxy.request.toolloop import ModelCalls, prepare

if TYPE_CHECKING:
    from proxy.request.appstate import AppState

log = logging.getLogger("autoroute")
SinkFactory = Callable[[Callable[[bytes], None]], LoopStream]


class _Feed:
    """The loop task -> the response body: bytes, then None (the end), or the exception that
    stopped the loop before anything was sent."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.committed = False  # the first model call answered: the response has started

    def put(self, data: bytes) -> None:
        if data:
            self.queue.put_nowait(data)


async def loop_events(
    state: AppState, ex: Exchange, req: CanonicalRequest, ask: ToolRequest, subset: tuple[str, ...] | None, make_sink: SinkFactory
) -> AsyncGenerator[bytes, None]:
    """The streamed loop's body. The first `anext` waits for the first model call (and raises
    what stopped the loop before it); once a byte was sent, this records the request."""
    feed = _Feed()
    sink = make_sink(feed.put)
    task = asyncio.ensure_future(_drive(state, ex, req, ask, subset, sink, feed))
    sent = False
    try:
        while True:
            item = await feed.queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            sent = True
            yield item
    finally:
        if not task.done():
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait([task])
            if sent:
                if ex.finished is None:  # the client went away mid-loop
                    ex.cancelled(asyncio.CancelledError())
                await state.record(ex)


async def _drive(
    state: AppState, ex: Exchange, req: CanonicalRequest, ask: ToolRequest, subset: tuple[str, ...] | None, sink: LoopStream, feed: _Feed
) -> None:
    setup = None
    try:
        setup = await prepare(state, ex, req, ask, subset)
        calls = StreamedCalls(state, ex, setup.trace, sink=sink, feed=feed, listed=setup.listed)
        final = await setup.run(calls.call, sink)
        await sink.end(final, ex.usage, setup.trace.note)
        ex.completed(200)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not feed.committed:
            feed.queue.put_nowait(exc)  # nothing sent yet: the handler answers with the error
            return
        _fail(state, ex, sink, exc)
    finally:
        if setup is not None:
            await setup.close()
        feed.queue.put_nowait(None)


def _fail(state: AppState, ex: Exchange, sink: LoopStream, exc: Exception) -> None:
    """The loop failed after the response started: the API's error event, the request's outcome."""
    if isinstance(exc, UpstreamError):
        ex.upstream_failed(exc)
        sink.error(exc.kind, f"The upstream failed mid-stream: {exc.message}")
    elif isinstance(exc, StreamCut):
        cut = ServiceUnavailable(
            f"The proxy is shutting down and cut this stream after its {state.drain.grace_s:g}s grace. Retry the request.",
            code="server_shutting_down",
        )
        ex.failed(cut)
        sink.error("server_shutting_down", cut.message)
    elif isinstance(exc, ProxyError):
        ex.failed(exc)
        sink.error(exc.code or exc.type, exc.message)
    else:
        log.error("tool loop failed", exc_info=exc)
        ex.failed(exc)
        sink.error("internal_error", "The tool loop failed inside the proxy.")


class StreamedCalls(ModelCalls):
    """The loop's model calls, streamed: text to the client as it comes, the turn assembled."""

    def __init__(
        self,
        state: AppState,
        ex: Exchange,
        trace: LoopTrace,
        *,
        sink: LoopStream,
        feed: _Feed,
        listed: list[tuple[str, list[ToolSpec], str | None]],
    ) -> None:
        super().__init__(state, ex, trace)
        self.sink, self.feed, self.listed = sink, feed, listed

    async def fetch(
        self, models: list[ModelSpec], body: dict[str, Any], outcome: Outcome, admission: Admission, est: int
    ) -> tuple[dict[str, Any], Usage | None]:
        state, ex = self.state, self.ex
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        opened = await state.dispatcher.open_stream(models, body, outcome, gate=admission, est_tokens=est)
        self.streamed_chars = 0
        if not self.feed.committed:
            self.feed.committed = True
            ex.outcome.model = opened.model  # the response headers name it
            self.sink.start(opened.model.id)
            for server, tools, error in self.listed:
                self.sink.listed(server, tools, error)
        turn = Turn()
        tracked = state.drain.track()
        try:
            chunk: dict[str, Any] | None = opened.first
            while chunk is not None:
                text = turn.add(chunk)
                self.streamed_chars = turn.chars
                if text:
                    if ex.ttft_s is None:
                        ex.ttft_s = ex.total_seconds
                    self.sink.text(text)
                chunk = await tracked.next(opened.rest)
        except UpstreamError as exc:
            outcome.attempts[-1].error = exc
            raise
        finally:
            state.drain.untrack(tracked)
            with anyio.CancelScope(shield=True):
                await opened.stream.aclose()
        return turn.completion(), opened.stream.usage


class Turn:
    """One streamed model turn (its first choice) assembled into a chat completion."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.created: int | None = None
        self.model: str | None = None
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.chars = 0

    def add(self, chunk: dict[str, Any]) -> str:
        """Take a chunk; its text (for the client)."""
        self.id = self.id or chunk.get("id")
        self.created = self.created or chunk.get("created")
        self.model = self.model or chunk.get("model")
        text = ""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text += delta["content"]
            for call in delta.get("tool_calls") or ():
                slot = self.calls.setdefault(
                    call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                fn = call.get("function") or {}
                slot["id"] = slot["id"] or call.get("id")
                slot["function"]["name"] = slot["function"]["name"] or fn.get("name") or ""
                if isinstance(fn.get("arguments"), str):
                    slot["function"]["arguments"] += fn["arguments"]
                    self.chars += len(fn["arguments"])
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        self.text.append(text)
        self.chars += len(text)
        return text

    def completion(self) -> dict[str, Any]:
        calls = [{**c, "id": c["id"] or f"call_{os.urandom(8).hex()}"} for _, c in sorted(self.calls.items())]
        message = {"role": "assistant", "content": "".join(self.text) or None, "tool_calls": calls or None}
        finish = self.finish_reason or ("tool_calls" if calls else "stop")
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created or int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }


def rest_of(final: str, streamed: str, note: str | None) -> str:
    """What the client has yet to see of the final answer's text, given what streamed of its
    message so far. A limit's note goes after that text; when the answer is an earlier turn's
    (the deadline came between turns), that turn's text already went out: only the note is left."""
    if note and not (streamed and final.startswith(streamed)):
        return f"\n\n{note}" if streamed else note
    return final[len(streamed) :] if final.startswith(streamed) else ""


class ChatLoopStream:
    """The streamed loop as chat.completion.chunk events (tool progress is not shown: chat has
    no event for it; text of turns before the answer streams too, a blank line apart)."""

    def __init__(self, emit: Callable[[bytes], None], include_usage: bool) -> None:
        self.emit, self.include_usage = emit, include_usage
        self.base: dict[str, Any] = {}
        self.turn_text = ""  # text of the current turn so far
        self.gap = False

    def start(self, model: str) -> None:
        self.base = {
            "id": f"chatcmpl-{os.urandom(12).hex()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._delta({"role": "assistant", "content": ""})

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> None:
        self.emit(sse.encode({**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))

    def listed(self, server: str, tools: list[ToolSpec], error: str | None) -> None:
        return None

    def turn_done(self, content: str | None) -> None:
        self.gap = self.gap or bool(self.turn_text)
        self.turn_text = ""

    def tool_started(self, call_id: str, spec: ToolSpec, arguments: str) -> None:
        return None

    def tool_finished(self, call_id: str, spec: ToolSpec, result: ToolResult) -> None:
        return None

    def text(self, delta: str) -> None:
        self.turn_text += delta
        if self.gap:
            delta, self.gap = "\n\n" + delta, False
        self._delta({"content": delta})

    async def end(self, final: dict[str, Any], usage: Usage | None, note: str | None) -> None:
        choice = (final.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        rest = rest_of(message.get("content") or "", self.turn_text, note)
        if rest:
            self.text(rest)
        calls = [{**c, "index": n} for n, c in enumerate(message.get("tool_calls") or ())]
        if calls:
            self._delta({"tool_calls": calls})
        self._delta({}, choice.get("finish_reason") or "stop")
        if self.include_usage and usage is not None:
            self.emit(sse.encode({**self.base, "choices": [], "usage": usage.as_openai()}))
        self.emit(sse.DONE)

    def error(self, kind: str, message: str) -> None:
        self.emit(sse.encode({"error": {"message": message, "type": "upstream_error", "param": None, "code": kind}}))


def chat_sink(include_usage: bool) -> SinkFactory:
    return lambda emit: ChatLoopStream(emit, include_usage)
