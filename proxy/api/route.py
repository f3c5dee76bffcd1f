"""POST /v1/route: the routing decision for a chat, Responses or Messages body, no model called.

The body's shape says which API it is (`?api=chat|responses|messages` overrides): `input`
without `messages` is a Responses body; `system`, `max_tokens` with `anthropic-version`, or
Anthropic content blocks make a Messages body; anything else is chat. The adapter turns it
into the same request the real endpoint would route, so the decision is the one it would get.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.api.chat import parse_chat_request
from proxy.api.messages import MessagesInbound, anthropic_error
from proxy.api.responses import ResponsesInbound
from proxy.errors import InvalidRequest, ProxyError
from proxy.request import pipeline
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.request.appstate import AppState
    from proxy.request.exchange import Exchange

_ANTHROPIC_BLOCKS = frozenset({"tool_use", "tool_result", "thinking", "redacted_thinking", "document"})


def body_api(body: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    if "input" in body and "messages" not in body:
        return "responses"
    if "anthropic-version" in headers or "system" in body or "stop_sequences" in body:
        return "messages"
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") in _ANTHROPIC_BLOCKS for b in content):
            return "messages"
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "image" for b in content):
            return "messages"
    return "chat"


class _Detect:
    """Parses the body as whichever API it is, through that API's own adapter."""

    endpoint: str = Endpoint.ROUTE

    def __init__(self, forced: str | None) -> None:
        self.forced = forced
        self.api = "chat"

    async def parse(self, state: AppState, ex: Exchange, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        self.api = self.forced or (body_api(body, headers) if isinstance(body, dict) else "chat")
        if self.api == "responses":
            return await ResponsesInbound().parse(state, ex, raw, headers)
        if self.api == "messages":
            return await MessagesInbound().parse(state, ex, raw, headers)
        return parse_chat_request(raw)


async def route_decision(request: Request) -> Response:
    forced = request.query_params.get("api")
    if forced not in (None, "chat", "responses", "messages"):
        raise InvalidRequest(f"Unknown api={forced!r}; use chat, responses or messages.", param="api")
    detect = _Detect(forced)
    try:
        return await pipeline.handle_route(request.app.state.autoroute, request, detect)  # type: ignore[arg-type]
    except ProxyError as exc:
        if detect.api == "messages":
            return anthropic_error(request, exc)
        raise
