"""Admin HTTP API for virtual keys and usage (starlette routes; the app mounts `routes`).

Every handler needs the master key (`Authorization: Bearer <AUTOROUTE_MASTER_KEY>`) and reads
`request.app.state.autoroute` (settings, policy, redis, keys, limiter). Errors are ProxyErrors,
turned into OpenAI-shaped JSON by the app's exception handler.

    POST   /admin/keys                 create; the response carries the secret `key` (only time)
    GET    /admin/keys                 list
    GET    /admin/keys/{id}            show
    PATCH  /admin/keys/{id}            change the fields given (null clears an optional one)
    DELETE /admin/keys/{id}            revoke (stops working within the key cache TTL everywhere)
    GET    /admin/keys/{id}/usage      requests, tokens, USD for the current UTC day and month, by model
    POST   /admin/keys/{id}/reset      forget rate windows and day/month/total spend
    GET    /admin/usage?agent=NAME     an agent's usage (request `user` field or X-Agent-Id)
    POST   /admin/usage/reset?agent=NAME
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.admin.auth import require_admin
from proxy.errors import InvalidRequest, StoreUnavailable
from proxy.keys.store import ANONYMOUS, MASTER, KeyFields, KeyRecord

Handler = Callable[[Request], Awaitable[Response]]


def _admin(handler: Callable[[Request, Any], Awaitable[Any]]) -> Handler:
    """Master-key check, store errors -> 503, dict results -> JSON."""

    async def endpoint(request: Request) -> Response:
        state = request.app.state.autoroute
        require_admin(request)
        try:
            result = await handler(request, state)
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
            raise StoreUnavailable("Limits store unavailable: the admin API cannot work right now.") from exc
        return result if isinstance(result, Response) else JSONResponse(result)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _fields(body: dict[str, Any]) -> KeyFields:
    try:
        return KeyFields.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise InvalidRequest(f"Invalid key field {where}: {err['msg']}.", param=where) from None


async def _usage(state: Any, record: KeyRecord) -> dict[str, Any]:
    usage = await state.limiter.usage.key_usage(record.id)
    usage["limits"] = {name: getattr(record, name) for name in ("rpm", "tpm", "budget_usd_day", "budget_usd_month", "budget_usd_total")}
    usage["budget_remaining_usd"] = await state.limiter.budget_remaining_usd(record)
    return usage


async def _record(state: Any, key_id: str) -> KeyRecord:
    if key_id == MASTER.id:
        return MASTER
    if key_id == ANONYMOUS.id:
        return ANONYMOUS
    return await state.keys.get(key_id)


def _agent(request: Request, body: dict[str, Any] | None = None) -> str:
    agent = request.query_params.get("agent") or (body or {}).get("agent")
    if not isinstance(agent, str) or not agent:
        raise InvalidRequest("Name the agent: ?agent=NAME (its request `user` field or X-Agent-Id).", param="agent")
    return agent


@_admin
async def create_key(request: Request, state: Any) -> Response:
    record, secret = await state.keys.create(_fields(await _body(request)))
    return JSONResponse({**record.public(), "key": secret}, status_code=201)


@_admin
async def list_keys(request: Request, state: Any) -> dict[str, Any]:
    return {"object": "list", "data": [r.public() for r in await state.keys.list()]}


@_admin
async def show_key(request: Request, state: Any) -> dict[str, Any]:
    return (await state.keys.get(request.path_params["key_id"])).public()


@_admin
async def update_key(request: Request, state: Any) -> dict[str, Any]:
    fields = _fields(await _body(request))
    changes = {name: getattr(fields, name) for name in fields.model_fields_set}
    return (await state.keys.update(request.path_params["key_id"], changes)).public()


@_admin
async def revoke_key(request: Request, state: Any) -> dict[str, Any]:
    record = await state.keys.revoke(request.path_params["key_id"])
    return {"id": record.id, "object": "key", "deleted": True}


@_admin
async def key_usage(request: Request, state: Any) -> dict[str, Any]:
    return await _usage(state, await _record(state, request.path_params["key_id"]))


@_admin
async def reset_key(request: Request, state: Any) -> dict[str, Any]:
    record = await _record(state, request.path_params["key_id"])
    await state.limiter.usage.reset_key(record.id)
    return await _usage(state, record)


@_admin
async def agent_usage(request: Request, state: Any) -> dict[str, Any]:
    return await state.limiter.usage.agent_usage(_agent(request))


@_admin
async def reset_agent(request: Request, state: Any) -> dict[str, Any]:
    agent = _agent(request, await _body(request))
    await state.limiter.usage.reset_agent(agent)
    return await state.limiter.usage.agent_usage(agent)


routes = [
    Route("/admin/keys", create_key, methods=["POST"]),
    Route("/admin/keys", list_keys, methods=["GET"]),
    Route("/admin/keys/{key_id}", show_key, methods=["GET"]),
    Route("/admin/keys/{key_id}", update_key, methods=["PATCH"]),
    Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
    Route("/admin/keys/{key_id}/usage", key_usage, methods=["GET"]),
    Route("/admin/keys/{key_id}/reset", reset_key, methods=["POST"]),
    Route("/admin/usage", agent_usage, methods=["GET"]),
    Route("/admin/usage/reset", reset_agent, methods=["POST"]),
]
