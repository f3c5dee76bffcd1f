"""handle_chat(): the only place that strings the steps of a chat request together.

    read + check body -> plan (named model, or classify + select) -> dispatch -> account

Every step is a call into the module that owns it; this file only decides the order and
makes sure that whatever happens (an error, a client that goes away mid-stream) the
request is accounted exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from proxy import accounting
from proxy.dispatch import OpenStream
from proxy.errors import InvalidRequest, ModelNotFound, PayloadTooLarge, ProxyError
from proxy.exchange import Exchange
from proxy.policy.registry import ModelSpec
from proxy.providers import sse
from proxy.providers.base import UpstreamError

if TYPE_CHECKING:
    from proxy.state import AppState


async def handle_chat(state: AppState, request: Request) -> Response:
    ex = Exchange()
    handed_off = False
    try:
        body = await read_json_body(request, state.settings.max_body_bytes)
        ex.requested_model = body["model"]
        ex.stream = bool(body.get("stream"))
        ex.models = plan_models(state, ex, body, request.headers)
        if ex.stream:
            opened = await state.dispatcher.open_stream(ex.models, body, ex.outcome)
            handed_off = True
            events = stream_events(state, ex, body, opened)
            first = await anext(events)  # started: its cleanup now runs however the response ends
            return RelayResponse(
                events, first,
                media_type="text/event-stream",
                headers={**ex.response_headers(), "cache-control": "no-cache"},
            )
        completion = await state.dispatcher.complete(ex.models, body, ex.outcome)
        result = completion.body
        result["model"] = ex.outcome.model.id if ex.outcome.model else result.get("model")
        accounting.settle_usage(ex, completion.usage, ex.decision.get("estimated_input_tokens", 0), _text_chars(result))
        accounting.finish(ex, 200)
        return Response(orjson.dumps(result), media_type="application/json", headers=ex.response_headers())
    except ProxyError as exc:
        ex.fail(exc)
        accounting.finish(ex)
        exc.headers.update(ex.response_headers())
        raise
    except asyncio.CancelledError:  # the client left (proxy/disconnect.py) or the server stops
        accounting.finish(ex, 499)
        ex.error_type, ex.error_code = "client_closed", "client_disconnected"
        raise
    finally:
        if not handed_off:
            with anyio.CancelScope(shield=True):
                await state.record(ex)


class RelayResponse(StreamingResponse):
    """The SSE relay. If the response never gets to iterate the relay (the client left
    first), the relay is closed here, so its cleanup (close upstream, account) still runs."""

    def __init__(self, events: AsyncGenerator[bytes, None], first: bytes, **kwargs: Any) -> None:
        super().__init__(_prepend(first, events), **kwargs)
        self._events = events

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for item in rest:
        yield item


async def read_json_body(request: Request, limit: int) -> dict[str, Any]:
    from proxy.schemas import parse_chat_request

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is {declared} bytes; the limit is {limit} (AUTOROUTE_MAX_BODY_BYTES).")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes (AUTOROUTE_MAX_BODY_BYTES).")
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequest("The client disconnected before sending the whole body.") from None
    return parse_chat_request(b"".join(chunks))


def plan_models(state: AppState, ex: Exchange, body: dict[str, Any], headers: Mapping[str, str]) -> list[ModelSpec]:
    """A named model is used as named; `auto...` is classified and routed."""
    name = body["model"]
    model = state.policy.resolve_model(name)
    if model is None:
        raise ModelNotFound(
            f"The model '{name}' does not exist. GET /v1/models lists the valid ones; "
            "use model=\"auto\" to let autoroute choose.",
            param="model",
        )
    ex.decision = {"model": model.id, "estimated_input_tokens": _rough_tokens(body)}
    return [model]


async def stream_events(state: AppState, ex: Exchange, body: dict[str, Any], opened: OpenStream) -> AsyncGenerator[bytes, None]:
    """Relay the upstream stream as OpenAI SSE; account once, however it ends."""
    model_id = ex.outcome.model.id if ex.outcome.model else body["model"]
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    text_chars = 0
    last: dict[str, Any] = opened.first
    try:
        chunk: dict[str, Any] | None = opened.first
        while chunk is not None:
            if chunk.get("choices") or not chunk.get("usage"):  # the upstream's usage chunk: ours comes last
                chunk["model"] = model_id
                text_chars += _delta_chars(chunk)
                if ex.ttft_s is None:
                    ex.ttft_s = ex.total_seconds
                last = chunk
                yield sse.encode(chunk)
            chunk = await anext(opened.rest, None)
        accounting.settle_usage(ex, opened.stream.usage, ex.decision.get("estimated_input_tokens", 0), text_chars)
        if include_usage and ex.usage is not None:
            yield sse.encode({
                "id": last.get("id"), "object": "chat.completion.chunk", "created": last.get("created"),
                "model": model_id, "choices": [], "usage": ex.usage.as_openai(),
            })
        yield sse.DONE
        accounting.finish(ex, 200)
    except UpstreamError as exc:  # after the first byte: no fallback possible, tell the client
        ex.outcome.attempts[-1].error = exc
        accounting.settle_usage(ex, opened.stream.usage, ex.decision.get("estimated_input_tokens", 0), text_chars)
        accounting.finish(ex, 502)
        ex.error_type, ex.error_code = "upstream_error", exc.kind
        yield sse.encode({"error": {"message": f"The upstream failed mid-stream: {exc.message}", "type": "upstream_error", "param": None, "code": exc.kind}})
    finally:
        with anyio.CancelScope(shield=True):  # the client may have gone: still close and account
            await opened.stream.aclose()
            if ex.finished is None:  # cancelled: the client disconnected
                accounting.settle_usage(ex, opened.stream.usage, ex.decision.get("estimated_input_tokens", 0), text_chars)
                accounting.finish(ex, 499)
                ex.error_type, ex.error_code = "client_closed", "client_disconnected"
            await state.record(ex)


def _delta_chars(chunk: dict[str, Any]) -> int:
    n = 0
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if isinstance(content, str):
            n += len(content)
        for call in delta.get("tool_calls") or ():
            n += len(((call.get("function") or {}).get("arguments")) or "")
    return n


def _text_chars(result: dict[str, Any]) -> int:
    n = 0
    for choice in result.get("choices") or ():
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            n += len(message["content"])
        for call in message.get("tool_calls") or ():
            n += len(((call.get("function") or {}).get("arguments")) or "")
    return n


def _rough_tokens(body: dict[str, Any]) -> int:
    return len(orjson.dumps(body.get("messages", []))) // 4
