"""A request with `route.mcp` (chat) or `mcp` tools (Responses): the context assembler, then the
server-side tool loop.

Each model call of the loop is its own admission against the key (rate limits, budgets,
deployment capacity), settled to that call's real usage as soon as it answers, so the key's
spend covers every call. The loop stays on the model that answered first and moves on down the
plan only if that model fails. The whole loop (model calls, tool calls, why it stopped) is the
request's decision record; each tool call is also a metric. A streamed request runs the same
loop with streamed model calls (proxy/request/toolloop_stream.py).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from proxy.dispatch.dispatcher import Outcome
from proxy.mcp import context
from proxy.mcp.loop import Limits, LoopEvents, LoopTrace, run_tool_loop
from proxy.mcp.options import LoopAsk, ToolRequest
from proxy.mcp.servers import ServerConnection, ToolSpec
from proxy.policy.mcp import McpServer
from proxy.policy.registry import ModelSpec
from proxy.providers.base import Usage
from proxy.request.admission import Admission
from proxy.request.canonical import CanonicalRequest
from proxy.request.exchange import Exchange
from proxy.request.inbound import LoopView
from proxy.routing.classify import classify
from proxy.routing.tokens import count_text_tokens

if TYPE_CHECKING:
    from proxy.request.appstate import AppState
    from proxy.routing.planning import Plan


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


@dataclasses.dataclass
class LoopSetup:
    """One request's loop: its limits, the servers and tools it may use, its first body."""

    state: AppState
    limits: Limits
    connections: dict[str, ServerConnection]
    ephemeral: list[ServerConnection]
    tools: list[ToolSpec]
    listed: list[tuple[str, list[ToolSpec], str | None]]  # per server: its offered tools, or why it has none
    body: dict[str, Any]
    trace: LoopTrace

    async def run(self, call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]], events: LoopEvents | None) -> dict[str, Any]:
        state = self.state
        return await run_tool_loop(
            call,
            self.body,
            self.tools,
            self.connections,
            self.limits,
            self.trace,
            log_results=state.policy.observability.log_prompts,
            observe=lambda s, t, o, secs: state.mcp_metrics.tool_call(s, t, o, secs, known=s in state.mcp.connections),
            events=events,
        )

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            for conn in self.ephemeral:
                await conn.stop()


async def prepare(state: AppState, ex: Exchange, req: CanonicalRequest, ask: ToolRequest, subset: tuple[str, ...] | None) -> LoopSetup:
    """The tools this key, this request and the context's subset allow, on servers that are
    connected (a request's URL servers are connected here; `LoopSetup.close` ends them)."""
    assert ex.key is not None
    policy = state.policy.mcp
    limits = Limits(
        max_depth=min(ask.max_depth or policy.loop.max_depth, policy.loop.max_depth),
        deadline=time.monotonic() + policy.loop.deadline_s,
        max_result_chars=policy.loop.max_result_chars,
        max_tool_calls=policy.loop.max_tool_calls,
    )
    ephemeral = [_url_connection(label, url, ask.headers_for(label), state) for label, url in ask.urls]
    setup = LoopSetup(state, limits, {}, ephemeral, [], [], {}, LoopTrace())
    try:
        for conn in ephemeral:
            conn.start()
        for conn in ephemeral:
            await conn.wait_ready(min(conn.spec.connect_timeout_s, max(0.0, limits.deadline - time.monotonic())))
    except BaseException:
        await setup.close()
        raise
    names = ask.servers if ask.servers is not None else tuple(state.mcp.connections)
    setup.connections = {n: state.mcp.connections[n] for n in names if n in state.mcp.connections}
    setup.connections.update({c.name: c for c in ephemeral})
    key = ex.key
    setup.tools = [
        t
        for t in state.mcp.visible(key.name, key.allows_tool, setup.connections)
        if context.matches(t.qualified, ask.allowed_tools) and context.matches(t.qualified, subset)
    ]
    for name, conn in setup.connections.items():
        if any(fnmatch.fnmatchcase(key.name, p) for p in conn.spec.keys):
            down = None if conn.up else f"the MCP server {name!r} is unavailable ({conn.last_error or 'not connected'})"
            setup.listed.append((name, [t for t in setup.tools if t.server == name], down))
    ex.tools = setup.trace
    setup.body = req.render()  # each turn's body: this, plus the turns so far
    setup.body.pop("stream", None)
    setup.body.pop("stream_options", None)
    return setup


async def run_chat_tool_loop(
    state: AppState, ex: Exchange, req: CanonicalRequest, ask: ToolRequest, subset: tuple[str, ...] | None, view: LoopView | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the loop (not streamed); the final chat completion (usage: every call's) and the
    response headers. `view` sees the servers' tool lists and each tool call (Responses items)."""
    setup = await prepare(state, ex, req, ask, subset)
    try:
        calls = ModelCalls(state, ex, setup.trace)
        if view is not None:
            for server, tools, error in setup.listed:
                view.listed(server, tools, error)
        final = await setup.run(calls.call, view)
    finally:
        await setup.close()
    final["model"] = ex.outcome.model.id if ex.outcome.model else final.get("model")
    if ex.usage is not None:
        final["usage"] = ex.usage.as_openai()
    trace = setup.trace
    headers = {
        **ex.response_headers(),
        **calls.limit_headers,
        "x-autoroute-tool-loop": f"{len(trace.model_calls)} model calls, {len(trace.tool_calls)} tool calls, {trace.stopped}",
    }
    return final, headers


def _url_connection(label: str, url: str, headers: dict[str, str], state: AppState) -> ServerConnection:
    spec = McpServer(transport="http", url=url, headers=headers, connect_timeout_s=5, call_timeout_s=20)
    return ServerConnection(label, spec, state.environ, state.policy.mcp.tools_ttl_s)


@dataclasses.dataclass
class ModelCalls:
    """The loop's model calls: admitted, dispatched and settled one by one against the key."""

    state: AppState
    ex: Exchange
    trace: LoopTrace
    sticky: list[ModelSpec] | None = None
    limit_headers: dict[str, str] = dataclasses.field(default_factory=dict)  # the last admission's rate-limit headers
    streamed_chars: int | None = None  # a streamed call's output so far (None: no stream open)

    async def fetch(
        self, models: list[ModelSpec], body: dict[str, Any], outcome: Outcome, admission: Admission, est: int
    ) -> tuple[dict[str, Any], Usage | None]:
        """One model call through dispatch: its chat completion and the provider's usage."""
        completion = await self.state.dispatcher.complete(models, body, outcome, gate=admission, est_tokens=est)
        return completion.body, completion.usage

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
        self.streamed_chars = None
        try:
            answer, usage = await self.fetch(models, body, outcome, admission, est)
        except BaseException:
            with anyio.CancelScope(shield=True):
                if self.streamed_chars is not None and outcome.model is not None:  # a stream cut short: charge what it sent
                    cut = Usage(plan.input_tokens, (self.streamed_chars + 3) // 4, counted=True)
                    await self._settle(admission, plan, outcome, cut, started)
                else:
                    await admission.finish(None, 0.0, None)  # nothing charged for a call that did not answer
            raise
        finally:
            ex.outcome.attempts.extend(outcome.attempts)
            ex.outcome.upstream_seconds += outcome.upstream_seconds
            ex.outcome.backoff_seconds += outcome.backoff_seconds
        if usage is None or usage.counted:
            usage = Usage(plan.input_tokens, max(0, (len(orjson.dumps(answer.get("choices") or [])) + 3) // 4), counted=True)
        await self._settle(admission, plan, outcome, usage, started)
        return answer

    async def _settle(self, admission: Admission, plan: Plan, outcome: Outcome, usage: Usage, started: float) -> None:
        ex, model = self.ex, outcome.model
        assert model is not None
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
