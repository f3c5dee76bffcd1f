"""handle_chat() and handle_route(): the only place the steps of a request are strung together.

    read + check body -> auth (virtual key) -> plan (named model, or classify + select)
      -> admit + dispatch (the admission is taken as dispatch picks a deployment)
      -> relay -> account (settle, metrics, decision record)

Every step is a call into the module that owns it; this file decides the order and makes
sure that, whatever happens (an error, a client that goes away mid-stream, a server that
stops), the request is accounted exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from proxy.api.chat import parse_chat_request, to_canonical
from proxy.errors import InvalidRequest, PayloadTooLarge, ProxyError, RequestTimeout
from proxy.keys.store import bearer_token
from proxy.limits.format import KeyBudgetExceeded
from proxy.mcp.options import take_loop_options
from proxy.request import accounting, toolloop
from proxy.request.admission import Admission
from proxy.request.canonical import CanonicalRequest
from proxy.request.exchange import Exchange
from proxy.request.inbound import Inbound, LoopInbound
from proxy.request.relay import RelayResponse, stream_events
from proxy.request.signals import completion_signals
from proxy.request.toolloop_stream import chat_sink, loop_events
from proxy.routing.planning import Plan, plan_request
from proxy.routing.textscan import read_conversation
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.request.appstate import AppState


async def handle_chat(state: AppState, request: Request, inbound: Inbound | None = None) -> Response:
    """Chat completions, or another API through its inbound adapter (proxy/request/inbound.py)."""
    ex = Exchange(endpoint=inbound.endpoint if inbound is not None else Endpoint.CHAT)
    state.metrics.request_started()
    state.drain.started()  # accounted before the store closes at shutdown (AppState.record)
    ex.drained = True
    handed_off = False
    try:
        req = await _begin(state, ex, request, inbound)
        ask = take_loop_options(req.route, state.policy.mcp)  # route.mcp / route.context (proxy/mcp/options.py)
        if ask.route is not req.route:
            ex.request = req = replace(req, route=ask.route)
        if ask.tools is not None and inbound is not None and not isinstance(inbound, LoopInbound):
            raise InvalidRequest(
                f"route.mcp (the MCP tool loop) is available on /v1/chat/completions and /v1/responses, not on {ex.endpoint}.",
                param="route.mcp",
            )
        if ask.tools is not None and req.n > 1:  # the loop follows one conversation: n more would be paid for, not returned
            raise InvalidRequest("route.mcp (the MCP tool loop) runs one conversation: n must be 1.", param="n")
        ex.plan = plan = await _plan(state, ex, request.headers)
        req, subset = toolloop.assemble_context(state, ex, plan.request or req, ask)
        plan = ex.plan
        if ask.tools is not None:
            if req.stream:
                sink = partial(inbound.loop_stream, state, ex) if isinstance(inbound, LoopInbound) else chat_sink(req.include_usage)
                events = loop_events(state, ex, req, ask.tools, subset, sink)
                first = await anext(events)  # the first model call answered: from here the stream records itself
                handed_off = True
                return RelayResponse(
                    events, first, media_type="text/event-stream", headers={**ex.response_headers(), "cache-control": "no-cache"}
                )
            view = inbound.loop_view() if isinstance(inbound, LoopInbound) else None
            final, headers = await toolloop.run_chat_tool_loop(state, ex, req, ask.tools, subset, view)
            if inbound is not None:
                final = await inbound.render(state, ex, {"model": req.model}, final)
            ex.completed(200)
            handed_off = True
            return AccountedResponse(state, ex, orjson.dumps(final), media_type="application/json", headers=headers)
        body = req.render()  # what every upstream gets (per-model fixes in dispatch)
        for second_chance in (False, True):
            ex.admission = Admission(state.limiter, ex.key, plan, ex.task_id, ex.agent)  # type: ignore[arg-type]
            est = plan.input_tokens + plan.output_tokens_for(plan.models[0])
            try:
                if req.stream:
                    opened = await state.dispatcher.open_stream(
                        plan.models, body, ex.outcome, gate=ex.admission, est_tokens=est, routed=plan.routed
                    )
                else:
                    completion = await state.dispatcher.complete(
                        plan.models, body, ex.outcome, gate=ex.admission, est_tokens=est, routed=plan.routed
                    )
                break
            except KeyBudgetExceeded as exc:
                # Budget homeostasis, second chance: spend moved between selection and admission.
                if second_chance or not plan.routed or ex.outcome.attempts or exc.remaining_usd is None:
                    raise
                ex.plan = plan = await plan_request(
                    state,
                    ex.decision_id,
                    req,
                    request.headers,
                    ex.key,
                    budget_remaining_usd=exc.remaining_usd,
                    input_tokens=plan.input_tokens,
                )
        ex.admitted()
        headers = ex.response_headers()
        if req.stream:
            handed_off = True
            renderer = inbound.stream(state, ex, body) if inbound is not None else None
            events = stream_events(state, ex, opened, renderer)
            first = await anext(events)  # started: its cleanup now runs however the response ends
            return RelayResponse(events, first, media_type="text/event-stream", headers={**headers, "cache-control": "no-cache"})
        result = completion.body
        result["model"] = ex.outcome.model.id if ex.outcome.model else result.get("model")
        accounting.settle_usage(ex, completion.usage, accounting.output_chars(result, "message"))
        ex.signals = completion_signals(result)
        if inbound is not None:
            result = await inbound.render(state, ex, body, result)
        ex.completed(200)
        handed_off = True
        return AccountedResponse(state, ex, orjson.dumps(result), media_type="application/json", headers=headers)
    except ProxyError as exc:
        ex.failed(exc)
        exc.headers.update(ex.response_headers())
        raise
    except asyncio.CancelledError as exc:  # the client left (proxy/request/disconnect.py) or the server stops
        ex.cancelled(exc)
        raise
    except Exception as exc:  # a bug: the app answers 500 (app.unexpected_error); record it as one
        ex.failed(exc)
        raise
    finally:
        if not handed_off:
            with anyio.CancelScope(shield=True):
                await state.record(ex)


class AccountedResponse(Response):
    """A response that accounts its request after the body has gone out (off the client's
    latency), and still does if sending fails because the client left."""

    def __init__(self, state: AppState, ex: Exchange, content: bytes, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._state, self._ex = state, ex

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._state.record(self._ex)


async def handle_route(state: AppState, request: Request, inbound: Inbound | None = None) -> Response:
    """POST /v1/route: a chat, Responses or Messages body (`inbound` parses the latter two);
    the decision, no model called."""
    ex = Exchange(endpoint=Endpoint.ROUTE)
    try:
        req = await _begin(state, ex, request, inbound)
        ask = take_loop_options(req.route, state.policy.mcp)  # checked like chat's; no tool is called
        if ask.route is not req.route:
            ex.request = replace(req, route=ask.route)
        ex.plan = await _plan(state, ex, request.headers)
        ex.completed(200)
        decision = dict(ex.plan.decision)
        if ex.plan.routed:
            decision["fallback_reasons"] = [{"model": s.model, "reason": s.reason} for s in ex.plan.route.steps[1:]]  # type: ignore[union-attr]
        return Response(orjson.dumps(decision), media_type="application/json", headers=ex.response_headers())
    except ProxyError as exc:
        ex.failed(exc)
        exc.headers["x-autoroute-decision-id"] = ex.decision_id
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await state.record(ex)


async def _begin(state: AppState, ex: Exchange, request: Request, inbound: Inbound | None = None) -> CanonicalRequest:
    """Caller (before the body is read: an unknown caller costs nothing), then the body, read
    once into the canonical request (another API's body through its adapter's chat body)."""
    ex.key = await state.keys.authenticate(bearer_token(request.headers))
    if inbound is None:
        body = await read_json_body(request, state.settings.max_body_bytes)
    else:
        body = await inbound.parse(state, ex, await read_body(request, state.settings.max_body_bytes), request.headers)
    ex.request = req = to_canonical(body, request.headers)
    ex.requested_model = req.model
    ex.stream = req.stream
    ex.task_id, ex.agent = req.task_id, req.agent
    if state.policy.observability.log_prompts:
        ex.prompt = read_conversation(list(req.messages)).ask
    return req


async def _plan(state: AppState, ex: Exchange, headers: Mapping[str, str]) -> Plan:
    """Plan without reading the budget first: admission refuses atomically when the estimate
    does not fit, with what remains, and handle_chat then re-plans once within it (budget
    homeostasis at the cost of one extra store call only for requests that need it)."""
    assert ex.key is not None and ex.request is not None
    return await plan_request(state, ex.decision_id, ex.request, headers, ex.key)


async def read_json_body(request: Request, limit: int) -> dict[str, Any]:
    return parse_chat_request(await read_body(request, limit))


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is {declared} bytes; the limit is {limit} (AUTOROUTE_MAX_BODY_BYTES).")
    chunks, size = [], 0
    timeout = request.app.state.autoroute.settings.body_timeout_s
    try:
        async with asyncio.timeout(timeout):  # a slow body holds a connection: bounded (AUTOROUTE_BODY_TIMEOUT_S)
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes (AUTOROUTE_MAX_BODY_BYTES).")
                chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequest("The client disconnected before sending the whole body.") from None
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {timeout:g}s (AUTOROUTE_BODY_TIMEOUT_S).") from None
    return b"".join(chunks)
