"""The server-side tool loop for one chat request.

The proxy adds the allowed MCP tools to the request (OpenAI format; the providers translate
it), and while the model answers with calls to those tools, runs them through the MCP client
and feeds the results back, up to `max_depth` model calls and a total deadline. Calls to the
client's own function tools in the same response go back to the client as usual (the MCP
calls of that response are then dropped: the client cannot hold their results).

The model call itself is the caller's (`ModelCall`): in the request layer each one is admitted
and settled against the key. This module only knows MCP, the limits and the trace.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from proxy.errors import InvalidRequest, UpstreamTimeout
from proxy.mcp.servers import ServerConnection, ToolResult, ToolSpec

ModelCall = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # request body -> chat.completion body
ToolObserver = Callable[[str, str, str, float], None]  # (server, tool, outcome, seconds)


class LoopEvents(Protocol):
    """The loop's progress, for a client API that can show it (Responses: mcp_call items)."""

    def turn_done(self, content: str | None) -> None:
        """A model turn ended with calls to MCP tools (its text, if any, came before them)."""
        ...

    def tool_started(self, call_id: str, spec: ToolSpec, arguments: str) -> None: ...

    def tool_finished(self, call_id: str, spec: ToolSpec, result: ToolResult) -> None: ...


@dataclass
class LoopTrace:
    """The loop's part of the decision record."""

    model_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    offered: int = 0
    stopped: str | None = None  # answer | client_tools | depth_limit | deadline | tool_call_limit
    note: str | None = None  # what a limit added to the answer (not part of the record)

    def record(self) -> dict[str, Any]:
        return {"offered_tools": self.offered, "model_calls": self.model_calls, "tool_calls": self.tool_calls, "stopped": self.stopped}


@dataclass(frozen=True)
class Limits:
    max_depth: int
    deadline: float  # time.monotonic() value
    max_result_chars: int
    max_tool_calls: int


async def run_tool_loop(
    call_model: ModelCall,
    body: dict[str, Any],
    tools: list[ToolSpec],
    connections: Mapping[str, ServerConnection],
    limits: Limits,
    trace: LoopTrace,
    *,
    log_results: bool = False,
    observe: ToolObserver | None = None,
    events: LoopEvents | None = None,
) -> dict[str, Any]:
    offered = {t.qualified: t for t in tools}
    own = {((t.get("function") or {}).get("name")) for t in body.get("tools") or () if isinstance(t, dict)}
    clash = sorted(n for n in own if n in offered)
    if clash:
        raise InvalidRequest(f"tools: {clash[0]!r} is also an MCP tool's name; rename your function", param="tools")
    body["tools"] = [*(body.get("tools") or ()), *(t.openai() for t in tools)]
    trace.offered = len(tools)
    messages: list[Any] = list(body["messages"])
    last: dict[str, Any] | None = None
    ids: set[str] = set()  # tool-call ids so far: each call's result (and Responses item) goes by its id
    for depth in range(1, limits.max_depth + 1):
        remaining = limits.deadline - time.monotonic()
        if remaining <= 0:
            return _stopped(last, trace, "deadline", offered)
        try:
            completion = await asyncio.wait_for(call_model({**body, "messages": messages}), remaining)
        except TimeoutError:
            if last is None:
                trace.stopped = "deadline"
                raise UpstreamTimeout("The tool loop's deadline passed during the first model call.", code="tool_loop_deadline") from None
            return _stopped(last, trace, "deadline", offered)
        last = completion
        message = _message(completion)
        calls = message.get("tool_calls") or []
        ours = [c for c in calls if _name(c) in offered]
        if not ours:
            trace.stopped = "client_tools" if calls else "answer"
            return completion
        if len(ours) < len(calls):
            trace.stopped = "client_tools"
            return _strip(completion, offered)
        if depth == limits.max_depth:
            break
        if len(trace.tool_calls) + len(ours) > limits.max_tool_calls:
            return _stopped(last, trace, "tool_call_limit", offered)
        for call in ours:  # a provider may leave ids out or repeat one
            if not isinstance(call.get("id"), str) or not call["id"] or call["id"] in ids:
                call["id"] = f"call_{os.urandom(12).hex()}"
            ids.add(call["id"])
        messages.append({k: v for k, v in message.items() if k in ("role", "content", "tool_calls")})
        if events is not None:
            events.turn_done(message.get("content"))
            for call in ours:
                events.tool_started(str(call.get("id") or ""), offered[_name(call)], _arguments(call))
        results = await asyncio.gather(*(_run(c, offered, connections, limits, events) for c in ours))
        for call, (spec, result) in zip(ours, results, strict=True):
            entry = {
                "server": spec.server,
                "tool": spec.name,
                "outcome": result.outcome,
                "seconds": round(result.seconds, 6),
                "chars": result.chars,
            }
            if result.truncated:
                entry["truncated"] = True
            if log_results:
                entry["result"] = result.text[:2000]
            trace.tool_calls.append(entry)
            if observe is not None:
                observe(spec.server, spec.name, result.outcome, result.seconds)
            messages.append({"role": "tool", "tool_call_id": call.get("id") or "", "content": result.text})
    return _stopped(last, trace, "depth_limit", offered)


async def _run(
    call: Mapping[str, Any],
    offered: Mapping[str, ToolSpec],
    connections: Mapping[str, ServerConnection],
    limits: Limits,
    events: LoopEvents | None,
) -> tuple[ToolSpec, ToolResult]:
    spec, result = await _call(call, offered, connections, limits)
    if events is not None:
        events.tool_finished(str(call.get("id") or ""), spec, result)
    return spec, result


def _arguments(call: Mapping[str, Any]) -> str:
    raw = (call.get("function") or {}).get("arguments")
    return raw if isinstance(raw, str) else orjson.dumps(raw or {}).decode()


async def _call(
    call: Mapping[str, Any], offered: Mapping[str, ToolSpec], connections: Mapping[str, ServerConnection], limits: Limits
) -> tuple[ToolSpec, ToolResult]:
    spec = offered[_name(call)]
    raw = (call.get("function") or {}).get("arguments") or "{}"
    try:
        arguments = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        return spec, ToolResult(f"Error: the arguments for {spec.qualified} are not valid JSON.", "bad_arguments", 0.0)
    if not isinstance(arguments, dict):
        return spec, ToolResult(f"Error: the arguments for {spec.qualified} must be a JSON object.", "bad_arguments", 0.0)
    conn = connections.get(spec.server)
    if conn is None:
        return spec, ToolResult(f"Error: the tool server {spec.server!r} is unavailable.", "server_down", 0.0)
    timeout = limits.deadline - time.monotonic()
    if timeout <= 0:
        return spec, ToolResult("Error: the tool loop's deadline passed before this call.", "timeout", 0.0)
    return spec, await conn.call(spec.name, arguments, timeout_s=timeout, max_chars=limits.max_result_chars)


def _message(completion: Mapping[str, Any]) -> dict[str, Any]:
    choices = completion.get("choices") or [{}]
    return choices[0].get("message") or {}


def _name(call: Mapping[str, Any]) -> str:
    return str((call.get("function") or {}).get("name") or "")


def _strip(completion: dict[str, Any], offered: Mapping[str, ToolSpec]) -> dict[str, Any]:
    """Drop the calls to MCP tools from every choice: the client sees only its own."""
    for choice in completion.get("choices") or ():
        message = choice.get("message") or {}
        kept = [c for c in message.get("tool_calls") or () if _name(c) not in offered]
        message["tool_calls"] = kept or None
        if not kept and choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "stop"
    return completion


def _stopped(last: dict[str, Any] | None, trace: LoopTrace, why: str, offered: Mapping[str, ToolSpec]) -> dict[str, Any]:
    """A limit stopped the loop: the last answer, its MCP calls dropped, and a note saying so."""
    trace.stopped = why
    assert last is not None
    done = _strip(last, offered)
    reason = {"depth_limit": "model-call limit", "deadline": "deadline", "tool_call_limit": "tool-call limit"}[why]
    for choice in done.get("choices") or ():
        message = choice.setdefault("message", {"role": "assistant"})
        note = f"[autoroute: the tool loop stopped at its {reason} after {len(trace.model_calls)} model calls; the last tool calls were not run]"
        trace.note = note
        message["content"] = f"{message['content']}\n\n{note}" if message.get("content") else note
        choice["finish_reason"] = "length"
    return done
