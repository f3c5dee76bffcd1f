"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API, inbound.

For the Anthropic SDK and Claude Code (`ANTHROPIC_BASE_URL` at the proxy). The key comes as
`x-api-key` (ANTHROPIC_API_KEY) or `Authorization: Bearer` (ANTHROPIC_AUTH_TOKEN);
`anthropic-version` and `anthropic-beta` are accepted and not needed. The body becomes a chat
body (proxy/api/messages_wire.py), runs through the one pipeline, and the result or stream is
rendered back as Anthropic's message or event sequence; errors take Anthropic's shape.

`thinking` goes on to a named Anthropic model; for any other model (and for `auto`, which
may pick one) it is dropped and `x-autoroute-note` says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.api import messages_wire as wire
from proxy.api.messages_stream import MessagesEvents
from proxy.errors import ProxyError
from proxy.keys.store import bearer_token
from proxy.observe.metrics import outcome_of
from proxy.providers.base import Usage
from proxy.request import pipeline
from proxy.routing.tokens import estimate_input_tokens
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.request.appstate import AppState
    from proxy.request.exchange import Exchange

from proxy.api.chat import load_json_object

log = logging.getLogger("autoroute")


def parse_body(raw: bytes) -> dict[str, Any]:
    body = load_json_object(raw, "Messages")
    return body


def keeps_thinking(state: AppState, model: Any) -> bool:
    spec = state.policy.resolve_model(model) if isinstance(model, str) else None
    return spec is not None and spec.provider == "anthropic"


class MessagesInbound:
    endpoint: str = Endpoint.MESSAGES

    def __init__(self) -> None:
        self.body: dict[str, Any] = {}

    async def parse(self, state: AppState, ex: Exchange, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        self.body = body = parse_body(raw)
        keep = keeps_thinking(state, body.get("model"))
        if body.get("thinking") and not keep:
            ex.notes.append("thinking dropped: only a named Anthropic model takes it")
        return wire.to_chat(body, keep_thinking=keep)

    def _model(self, ex: Exchange, body: dict[str, Any]) -> str:
        return ex.outcome.model.id if ex.outcome.model else body["model"]

    async def render(self, state: AppState, ex: Exchange, body: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        usage = (ex.usage.prompt_tokens, ex.usage.completion_tokens) if ex.usage else (0, 0)
        return wire.from_chat(result, self._model(ex, body), usage)

    def stream(self, state: AppState, ex: Exchange, body: dict[str, Any]) -> _Stream:
        estimate = ex.plan.input_tokens if ex.plan is not None else 0
        return _Stream(MessagesEvents(self._model(ex, body), estimate))

    def error_body(self, exc: ProxyError) -> bytes:
        return wire.error_body(exc)


class _Stream:
    def __init__(self, events: MessagesEvents) -> None:
        self.events = events

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        return self.events.chunk(chunk)

    async def end(self, usage: Usage | None) -> bytes:
        return self.events.complete(usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)

    def error(self, kind: str, message: str) -> bytes:
        return self.events.failed(message)


def _state(request: Request) -> AppState:
    return request.app.state.autoroute


def anthropic_error(request: Request, exc: ProxyError) -> Response:
    getattr(log, exc.log_level)("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.code, exc.message)
    return Response(wire.error_body(exc), status_code=exc.status, media_type="application/json", headers=exc.headers)


async def create_message(request: Request) -> Response:
    try:
        return await pipeline.handle_chat(_state(request), request, MessagesInbound())
    except ProxyError as exc:
        return anthropic_error(request, exc)


async def count_tokens(request: Request) -> Response:
    """The prompt's input tokens as autoroute estimates them for limits and routing (no model
    called, no rate limit taken; counted in metrics under endpoint="count_tokens")."""
    state = _state(request)
    started = time.perf_counter()
    state.metrics.request_started()
    error: ProxyError | None = None
    try:
        await state.keys.authenticate(bearer_token(request.headers))
        body = parse_body(await pipeline.read_body(request, state.settings.max_body_bytes))
        body = {**body, "max_tokens": body.get("max_tokens") or 1}  # count_tokens does not take max_tokens
        chat = wire.to_chat(body, keep_thinking=False)
        return Response(orjson.dumps({"input_tokens": estimate_input_tokens(chat)}), media_type="application/json")
    except ProxyError as exc:
        error = exc
        return anthropic_error(request, exc)
    finally:
        state.metrics.observe_request(
            endpoint=Endpoint.COUNT_TOKENS,
            outcome=outcome_of(error),
            status=error.status if error else 200,
            total_s=time.perf_counter() - started,
        )


routes = [
    Route("/v1/messages", create_message, methods=["POST"]),
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
]
