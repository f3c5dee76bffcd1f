"""`/mcp`: the MCP gateway (proxy/mcp/gateway.py) wired to the app: virtual-key auth, a per-key
rate limit on tool calls (policy mcp.yaml `gateway.calls_per_minute`, one Redis counter per key
and minute, so replicas share it), an audit record per call (the decision log, endpoint `mcp`)
and a metric, and the proxy's own tools `route` (the `/v1/route` dry run) and `list_models`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from proxy.api.chat import parse_chat_request, to_canonical
from proxy.keys import access
from proxy.keys.store import KeyRecord, bearer_token
from proxy.observe.decisions import DecisionRecord
from proxy.request.exchange import new_decision_id
from proxy.routing.planning import plan_request
from proxy.store import is_store_failure
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.mcp.gateway import Gateway, GatewayCall
    from proxy.request.appstate import AppState

_OUTCOME_STATUS = {"ok": 200, "tool_error": 200, "not_found": 404, "rate_limited": 429, "timeout": 504, "server_down": 502}

ROUTE_SCHEMA = {
    "type": "object",
    "properties": {
        "messages": {"type": "array", "items": {"type": "object"}, "description": "chat messages, as in /v1/chat/completions"},
        "model": {
            "type": "string",
            "default": "auto",
            "description": "auto, auto:cheapest, auto:balanced, auto:best_quality or a model id",
        },
        "route": {"type": "object", "description": "routing options: preference, self_hosted_only, max_cost_usd"},
        "max_tokens": {"type": "integer"},
    },
    "required": ["messages"],
}


def build_gateway(state: AppState) -> Gateway:
    from proxy.mcp.gateway import Gateway, OwnToolSpec  # the SDK's server side: loaded only when the gateway is on

    async def authenticate(headers: Mapping[str, str]) -> KeyRecord:
        return await state.keys.authenticate(bearer_token(headers))

    async def allow_call(key: KeyRecord) -> bool:
        minute = int(time.time() // 60)
        counter = f"ar:{{{key.id}}}:mcp:{minute}"
        try:
            pipe = state.redis.pipeline(transaction=False)
            pipe.incr(counter)
            pipe.expire(counter, 120)
            count, _ = await pipe.execute()
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            return state.policy.limits.on_store_error == "fail_open"
        return int(count) <= state.policy.mcp.gateway.calls_per_minute

    def on_call(call: GatewayCall) -> None:
        known = call.server in state.mcp.connections
        server, tool = (call.server, call.tool.partition("__")[2]) if call.server else ("autoroute", call.tool)
        if call.outcome in ("not_found", "rate_limited"):
            state.mcp_metrics.gateway_refused(call.outcome)
        if call.outcome != "not_found":
            state.mcp_metrics.tool_call(server, tool, call.outcome, call.seconds, via="gateway", known=known or call.server is None)
        status = _OUTCOME_STATUS.get(call.outcome, 500)
        state.decisions.record(
            DecisionRecord(
                decision_id=new_decision_id(),
                status=status,
                outcome="ok" if status == 200 else ("rate_limited" if status == 429 else "error"),
                endpoint=Endpoint.MCP,
                key_name=call.key.name,
                key_id=call.key.id,
                total_s=call.seconds,
                tools={
                    "tool_calls": [
                        {"server": server, "tool": tool, "outcome": call.outcome, "seconds": round(call.seconds, 6), "chars": call.chars}
                    ]
                },
            )
        )

    async def route(key: KeyRecord, arguments: dict[str, Any]) -> Any:
        req = to_canonical(parse_chat_request(orjson.dumps({"model": "auto", **arguments})), {})
        plan = await plan_request(state, new_decision_id(), req, {}, key)
        return plan.decision

    async def list_models(key: KeyRecord, arguments: dict[str, Any]) -> Any:
        available = state.health.available_models()
        return [
            {
                "id": m.id,
                "tier": m.tier,
                "available": m.id in available,
                "input_usd_per_mtok": m.input_usd_per_mtok,
                "output_usd_per_mtok": m.output_usd_per_mtok,
            }
            for m in state.policy.models.values()
            if access.allows(key, m)
        ]

    own = [
        OwnToolSpec("route", "Which model autoroute would pick for these messages, and why (no model is called).", ROUTE_SCHEMA, route),
        OwnToolSpec(
            "list_models",
            "The models this key may use, with tier, price and availability.",
            {"type": "object", "properties": {}},
            list_models,
        ),
    ]
    return Gateway(
        state.mcp,
        own,
        authenticate=authenticate,
        allow_call=allow_call,
        on_call=on_call,
        max_result_chars=state.policy.mcp.loop.max_result_chars,
    )


class LazyGateway:
    """`/mcp`, built on its first request: the SDK's server side (~25 MB of resident memory,
    ~200 modules) is loaded only by a proxy that is asked for it (that first request waits for
    the import, a few hundred ms, once). From then the session manager's `run()` lives in a task
    of its own until `close()` (the app's lifespan, before the state shuts down)."""

    def __init__(self, state: AppState) -> None:
        self._state = state
        self._gateway: Gateway | None = None
        self._building: asyncio.Future[Gateway] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _built(self) -> Gateway:
        if self._building is None:  # one build, however many requests wait for it; a request that leaves does not stop it
            self._building = asyncio.ensure_future(self._build())
        return await asyncio.shield(self._building)

    async def _build(self) -> Gateway:
        gateway = build_gateway(self._state)
        running = asyncio.Event()

        async def run() -> None:
            async with gateway.manager.run():
                running.set()
                await self._stop.wait()

        task = self._task = asyncio.get_running_loop().create_task(run(), name="mcp-gateway")
        started = asyncio.ensure_future(running.wait())
        await asyncio.wait((task, started), return_when=asyncio.FIRST_COMPLETED)
        if not running.is_set():  # run() ended at once: its error is the waiting requests' (a 500); the next one tries again
            started.cancel()
            self._task = self._building = None
            task.result()
            raise RuntimeError("the MCP session manager stopped as it started")
        self._gateway = gateway
        return gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        gateway = self._gateway or await self._built()
        await gateway(scope, receive, send)

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
