"""A chat request with `route.mcp`: the context assembler, then the server-side tool loop.

Each model call of the loop is its own admission against the key (rate limits, budgets,
deployment capacity), settled to that call's real usage as soon as it answers, so the key's
spend covers every call. The loop stays on the model that answered first and moves on down the
plan only if that model fails. The whole loop (model calls, tool calls, why it stopped) is the
request's decision record; each tool call is also a metric. A streamed request gets the final
turn as server-sent events once the loop is done.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from proxy.dispatch.dispatcher import Outcome
from proxy.mcp import context
from proxy.mcp.loop import Limits, LoopTrace, run_tool_loop
from proxy.mcp.options import LoopAsk, ToolRequest
from proxy.mcp.servers import ServerConnection
from proxy.policy.mcp import McpServer
from proxy.policy.registry import ModelSpec
from proxy.providers import sse
from proxy.providers.base import Usage
from proxy.request.admission import Admission
from proxy.request.canonical import CanonicalRequest
from proxy.request.exchange import Exchange
from proxy.routing.classify import classify
from proxy.routing.tokens import count_text_tokens

if TYPE_CHECKING:
    from proxy.request.appstate import AppState


def assemble_context(state: AppState, ex: Exchange, req: CanonicalRequest, ask: LoopAsk) -> tuple[CanonicalRequest, tuple[str, ...] | None]:
    """When asked: the request with the category's system prompt first (the plan's input estimate
    grows by it), and the category's tool subset (None = no narrowing)."""
    assert ex.key is not None and ex.plan is not None
    prompts = state.policy.prompts
    if not context.wanted(ask.context, ex.key.context_assembler, prompts):
        return req, None
    category = ex.plan.category or classify(req.view).category
    found = context.system_prompt(category, prompts)
    if found is not None:
        text, ex.context_category = found
        req = replace(req, messages=context.with_system_prompt(req.messages, text))
        ex.plan = replace(ex.plan, input_tokens=ex.plan.input_tokens + count_text_tokens(text) + 4, request=req)
    return req, context.tool_subset(category, prompts)


async def run_chat_tool_loop(
    state: AppState, ex: Exchange, req: CanonicalRequest, ask: ToolRequest, subset: tuple[str, ...] | None
) -> tuple[bytes, str, dict[str, str]]:
    """Run the loop; the reply's body, media type and headers (the caller sends and accounts it)."""
    assert ex.key is not None and ex.plan is not None
    policy = state.policy.mcp
    limits = Limits(
        max_depth=min(ask.max_depth or policy.loop.max_depth, policy.loop.max_depth),
        deadline=time.monotonic() + policy.loop.deadline_s,
        max_result_chars=policy.loop.max_result_chars,
        max_tool_calls=policy.loop.max_tool_calls,
    )
    ephemeral = [_url_connection(label, url, state) for label, url in ask.urls]
    try:
        for conn in ephemeral:
            conn.start()
        for conn in ephemeral:
            await conn.wait_ready(min(conn.spec.connect_timeout_s, max(0.0, limits.deadline - time.monotonic())))
        connections = {n: c for n, c in state.mcp.connections.items() if ask.servers is None or n in ask.servers}
        connections.update({c.name: c for c in ephemeral})
        key = ex.key
        tools = [
            t
            for t in state.mcp.visible(key.name, key.allows_tool, connections)
            if context.matches(t.qualified, ask.allowed_tools) and context.matches(t.qualified, subset)
        ]
        trace = LoopTrace()
        ex.tools = trace
        body = req.render()  # each turn's body: this, plus the turns so far (the loop is not streamed upstream)
        body.pop("stream", None)
        body.pop("stream_options", None)
        calls = ModelCalls(state, ex, trace)
        final = await run_tool_loop(
            calls.call,
            body,
            tools,
            connections,
            limits,
            trace,
            log_results=state.policy.observability.log_prompts,
            observe=lambda s, t, o, secs: state.mcp_metrics.tool_call(s, t, o, secs, known=s in state.mcp.connections),
        )
    finally:
        with anyio.CancelScope(shield=True):
            for conn in ephemeral:
                await conn.stop()
    final["model"] = ex.outcome.model.id if ex.outcome.model else final.get("model")
    if ex.usage is not None:
        final["usage"] = ex.usage.as_openai()
    ex.completed(200)
    headers = {
        **ex.response_headers(),
        **calls.limit_headers,
        "x-autoroute-tool-loop": f"{len(trace.model_calls)} model calls, {len(trace.tool_calls)} tool calls, {trace.stopped}",
    }
    if ex.stream:
        headers["cache-control"] = "no-cache"
        return replay_as_events(final, req.include_usage), "text/event-stream", headers
    return orjson.dumps(final), "application/json", headers


def _url_connection(label: str, url: str, state: AppState) -> ServerConnection:
    spec = McpServer(transport="http", url=url, connect_timeout_s=5, call_timeout_s=20)
    return ServerConnection(label, spec, state.environ, state.policy.mcp.tools_ttl_s)


@dataclasses.dataclass
class ModelCalls:
    """The loop's model calls: admitted, dispatched and settled one by one against the key."""

    state: AppState
    ex: Exchange
    trace: LoopTrace
    sticky: list[ModelSpec] | None = None
    limit_headers: dict[str, str] = dataclasses.field(default_factory=dict)  # the last admission's rate-limit headers

    async def call(self, body: dict[str, Any]) -> dict[str, Any]:
        state, ex = self.state, self.ex
        assert ex.plan is not None and ex.key is not None
        plan = replace(ex.plan, input_tokens=await state.tokens.estimate(body))
        models = self.sticky or plan.models
        est = plan.input_tokens + plan.output_tokens_for(models[0])
        admission = Admission(state.limiter, ex.key, plan, ex.task_id, ex.agent)
        ex.admission = admission
        outcome = Outcome()
        started = time.monotonic()
        try:
            completion = await state.dispatcher.complete(models, body, outcome, gate=admission, est_tokens=est)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await admission.finish(None, 0.0, None)  # nothing charged for a call that did not answer
            raise
        finally:
            ex.outcome.attempts.extend(outcome.attempts)
            ex.outcome.upstream_seconds += outcome.upstream_seconds
            ex.outcome.backoff_seconds += outcome.backoff_seconds
        model = outcome.model
        assert model is not None
        usage = completion.usage
        if usage is None or usage.counted:
            usage = Usage(plan.input_tokens, max(0, (len(orjson.dumps(completion.body.get("choices") or [])) + 3) // 4), counted=True)
        cost = model.cost_usd(usage.prompt_tokens, usage.completion_tokens)
        self.limit_headers = admission.headers
        with anyio.CancelScope(shield=True):
            await admission.finish(usage, cost, model)
        ex.outcome.model, ex.outcome.deployment = model, outcome.deployment
        ex.admitted()
        total = ex.usage or Usage()
        ex.usage = Usage(total.prompt_tokens + usage.prompt_tokens, total.completion_tokens + usage.completion_tokens)
        ex.cost_usd += cost
        self.sticky = [model, *(m for m in plan.models if m.id != model.id)]
        self.trace.model_calls.append(
            {
                "model": model.id,
                "deployment": outcome.deployment.id if outcome.deployment else None,
                "input_tokens": usage.prompt_tokens,
                "output_tokens": usage.completion_tokens,
                "cost_usd": cost,
                "seconds": round(time.monotonic() - started, 6),
            }
        )
        return completion.body


def replay_as_events(final: dict[str, Any], include_usage: bool) -> bytes:
    """The final turn as chat.completion.chunk events (the loop's earlier turns are not streamed)."""
    base = {"id": final.get("id"), "object": "chat.completion.chunk", "created": final.get("created"), "model": final.get("model")}
    out: list[bytes] = []
    for choice in final.get("choices") or ():
        i, message = choice.get("index", 0), choice.get("message") or {}
        out.append(sse.encode({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}))
        text = message.get("content") or ""
        for start in range(0, len(text), 64):
            out.append(
                sse.encode({**base, "choices": [{"index": i, "delta": {"content": text[start : start + 64]}, "finish_reason": None}]})
            )
        calls = [{**c, "index": n} for n, c in enumerate(message.get("tool_calls") or ())]
        if calls:
            out.append(sse.encode({**base, "choices": [{"index": i, "delta": {"tool_calls": calls}, "finish_reason": None}]}))
        out.append(sse.encode({**base, "choices": [{"index": i, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}]}))
    if include_usage and final.get("usage"):
        out.append(sse.encode({**base, "choices": [], "usage": final["usage"]}))
    out.append(sse.DONE)
    return b"".join(out)
