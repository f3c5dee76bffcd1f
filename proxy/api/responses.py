"""POST /v1/responses, GET and DELETE /v1/responses/{id}: the OpenAI Responses API, inbound.

The Responses body becomes a chat-completions body (proxy/api/responses_wire.py), goes
through the one pipeline (keys, routing, limits, dispatch, accounting), and the chat result
or stream is rendered back as a Response object or the Responses event sequence.

Stored responses (`store`, default true) live in the limits store under the key that created
them (`ar:{<key id>}:resp:<id>`, expiring after the policy's `limits.stored_responses_ttl_s`):
another key cannot read, continue or delete them. `previous_response_id` prepends the stored
conversation (its input and output; not its `instructions`, as OpenAI does).

Tools of type `mcp` run the server-side MCP tool loop (they become the chat request's
`route.mcp`, proxy/mcp/options.py); the loop's mcp_list_tools and mcp_call items come before
the answer (proxy/api/responses_mcp.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.api import responses_wire as wire
from proxy.api.chat import field_error, load_json_object
from proxy.api.responses_mcp import ResponsesLoopItems, ResponsesLoopStream
from proxy.api.responses_stream import ResponsesEvents
from proxy.errors import InvalidRequest, NotFound, ProxyError, StoreUnavailable
from proxy.keys.store import KeyRecord, bearer_token
from proxy.mcp.options import from_responses_tools
from proxy.policy.mcp import SEPARATOR
from proxy.providers.base import Usage
from proxy.request import pipeline
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.request.appstate import AppState
    from proxy.request.exchange import Exchange

log = logging.getLogger("autoroute")


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[Any]
    instructions: str | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    user: str | None = None


def parse_body(raw: bytes) -> dict[str, Any]:
    body = load_json_object(raw, "Responses")
    try:
        ResponsesRequest.model_validate(body)
    except ValidationError as exc:
        raise field_error(exc) from None
    return body


def _store_key(key: KeyRecord, resp_id: str) -> str:
    return f"ar:{{{key.id}}}:resp:{resp_id}"


async def load(state: AppState, key: KeyRecord, resp_id: str) -> dict[str, Any] | None:
    try:
        raw = await state.redis.get(_store_key(key, resp_id))
    except Exception as exc:  # redis errors: the client gets a 503 it can retry, not a 500
        raise StoreUnavailable(f"The response store is unavailable ({type(exc).__name__}); retry shortly.") from None
    return orjson.loads(raw) if raw else None


async def save(state: AppState, key: KeyRecord, response: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """Keep the response for retrieval and previous_response_id. A store failure does not fail
    the answer the model already gave: it is logged, and the id later answers 404."""
    record = {"response": response, "messages": [*messages, wire.assistant_turn(response)]}
    try:
        await state.redis.set(_store_key(key, response["id"]), orjson.dumps(record), ex=state.policy.limits.stored_responses_ttl_s)
    except Exception:
        log.warning("could not store response %s", response["id"], exc_info=True)


class ResponsesInbound:
    """One request's adapter (it carries the request's Responses body and response id)."""

    endpoint: str = Endpoint.RESPONSES

    def __init__(self) -> None:
        self.body: dict[str, Any] = {}
        self.resp_id = wire.new_id("resp")
        self.conversation: list[dict[str, Any]] = []  # what a follow-up continues from
        self.loop_items: ResponsesLoopItems | None = None  # a non-streamed tool loop's mcp_* items

    async def parse(self, state: AppState, ex: Exchange, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        self.body = body = parse_body(raw)
        history: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous:
            assert ex.key is not None
            stored = await load(state, ex.key, previous)
            if stored is None:
                raise NotFound(
                    f"Previous response with id '{previous}' not found (it expired, was deleted, was created with store=false, "
                    "or belongs to another key).",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = stored["messages"]
        others, mcp = from_responses_tools(body.get("tools") or [], state.policy.mcp)
        choice = body.get("tool_choice")
        if mcp is None and isinstance(choice, Mapping) and choice.get("type") == "mcp":
            raise InvalidRequest("tool_choice of type mcp needs a tool of type mcp with that server_label.", param="tool_choice")
        chat = wire.to_chat({**body, "tools": others} if mcp is not None else body, history)
        if mcp is not None:
            route = body.get("route")
            if isinstance(route, Mapping) and route.get("mcp") is not None:
                raise InvalidRequest("Give the MCP servers either as tools of type mcp or as route.mcp, not both.", param="route.mcp")
            chat["route"] = {**(route if isinstance(route, Mapping) else {}), "mcp": mcp}
            if isinstance(choice, Mapping) and choice.get("type") == "mcp":  # OpenAI's ToolChoiceMcp
                name = choice.get("name")
                labels = [s if isinstance(s, str) else s["label"] for s in mcp["servers"]]
                if choice.get("server_label") not in labels or not (name is None or (isinstance(name, str) and name)):
                    raise InvalidRequest(
                        "tool_choice of type mcp needs the server_label of one of the mcp tools (and a tool name, if any, as a string).",
                        param="tool_choice",
                    )
                chat["tool_choice"] = (
                    {"type": "function", "function": {"name": f"{choice.get('server_label')}{SEPARATOR}{name}"}} if name else "required"
                )
        skip = 1 if body.get("instructions") else 0
        self.conversation = chat["messages"][skip:]
        return chat

    def _stores(self) -> bool:
        return self.body.get("store", True) is not False

    def _model(self, ex: Exchange, body: dict[str, Any]) -> str:
        return ex.outcome.model.id if ex.outcome.model else body["model"]

    async def render(self, state: AppState, ex: Exchange, body: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        response = wire.from_chat(result, self.body, self.resp_id, self._model(ex, body))
        if self.loop_items is not None:
            response["output"] = [*self.loop_items.items, *response["output"]]
        if ex.usage is not None:
            response["usage"] = wire.usage_of(ex.usage.as_openai())
        await self.saved(state, ex, response)
        return response

    async def saved(self, state: AppState, ex: Exchange, response: dict[str, Any]) -> None:
        if self._stores() and ex.key is not None:
            await save(state, ex.key, response, self.conversation)

    def stream(self, state: AppState, ex: Exchange, body: dict[str, Any]) -> _Stream:
        return _Stream(self, state, ex, ResponsesEvents(self.body, self.resp_id, self._model(ex, body)))

    def loop_view(self) -> ResponsesLoopItems:
        self.loop_items = ResponsesLoopItems()
        return self.loop_items

    def loop_stream(self, state: AppState, ex: Exchange, emit: Callable[[bytes], None]) -> ResponsesLoopStream:
        return ResponsesLoopStream(self, state, ex, emit)

    def error_body(self, exc: ProxyError) -> bytes:
        return exc.json()


class _Stream:
    def __init__(self, inbound: ResponsesInbound, state: AppState, ex: Exchange, events: ResponsesEvents) -> None:
        self.inbound, self.state, self.ex, self.events = inbound, state, ex, events

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        return self.events.chunk(chunk)

    async def end(self, usage: Usage | None) -> bytes:
        out = self.events.complete(wire.usage_of(usage.as_openai()) if usage else None)
        await self.inbound.saved(self.state, self.ex, self.events.response)
        return out

    def error(self, kind: str, message: str) -> bytes:
        return self.events.failed(kind, message)


def _state(request: Request) -> AppState:
    return request.app.state.autoroute


async def create_response(request: Request) -> Response:
    return await pipeline.handle_chat(_state(request), request, ResponsesInbound())


async def _stored(request: Request) -> tuple[AppState, KeyRecord, str, dict[str, Any]]:
    state = _state(request)
    key = await state.keys.authenticate(bearer_token(request.headers))
    resp_id = request.path_params["response_id"]
    stored = await load(state, key, resp_id)
    if stored is None:
        raise NotFound(f"Response with id '{resp_id}' not found.", param="response_id", code="response_not_found")
    return state, key, resp_id, stored


async def get_response(request: Request) -> Response:
    _, _, _, stored = await _stored(request)
    return Response(orjson.dumps(stored["response"]), media_type="application/json")


async def delete_response(request: Request) -> Response:
    state, key, resp_id, _ = await _stored(request)
    try:
        await state.redis.delete(_store_key(key, resp_id))
    except Exception as exc:
        raise StoreUnavailable(f"The response store is unavailable ({type(exc).__name__}); retry shortly.") from None
    return Response(orjson.dumps({"id": resp_id, "object": "response", "deleted": True}), media_type="application/json")


routes = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
]
