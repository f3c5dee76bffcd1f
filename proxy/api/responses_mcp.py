"""The MCP tool loop in the Responses API: OpenAI's `mcp_list_tools` and `mcp_call` output items,
and their stream events.

    per server:  output_item.added (mcp_list_tools, no tools yet), mcp_list_tools.in_progress,
                 mcp_list_tools.completed | .failed, output_item.done (with its tools)
    per call:    output_item.added (mcp_call, in_progress), mcp_call_arguments.delta,
                 mcp_call_arguments.done, mcp_call.in_progress, mcp_call.completed | .failed,
                 output_item.done (with its output or error)

then the answer's message item (text deltas as the model streams them) and response.completed
with the whole output. Text the model writes before its tool calls is a message item of its own,
before those calls, as OpenAI does. Items are plain dicts in OpenAI's shapes
(openai.types.responses McpListTools, McpCall).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxy.api import responses_wire as wire
from proxy.api.responses_stream import ResponsesEvents
from proxy.mcp.servers import ToolResult, ToolSpec
from proxy.providers.base import Usage
from proxy.request.toolloop_stream import rest_of

if TYPE_CHECKING:
    from proxy.api.responses import ResponsesInbound
    from proxy.request.appstate import AppState
    from proxy.request.exchange import Exchange


def list_tools_item(server: str, tools: list[ToolSpec], error: str | None) -> dict[str, Any]:
    listed = [
        {"name": t.name, "input_schema": dict(t.input_schema), "description": t.description or None, "annotations": None} for t in tools
    ]
    return {"type": "mcp_list_tools", "id": wire.new_id("mcpl"), "server_label": server, "tools": listed, "error": error}


def call_item(spec: ToolSpec, arguments: str) -> dict[str, Any]:
    return {
        "type": "mcp_call",
        "id": wire.new_id("mcp"),
        "server_label": spec.server,
        "name": spec.name,
        "arguments": arguments,
        "output": None,
        "error": None,
        "status": "in_progress",
        "approval_request_id": None,
    }


def finish_call(item: dict[str, Any], result: ToolResult) -> None:
    """A call's result: `output` when it answered, `error` when it failed (the model saw the same text)."""
    item["status"] = "failed" if result.is_error else "completed"
    item["error" if result.is_error else "output"] = result.text


class ResponsesLoopItems:
    """A non-streamed loop's items, in the order they happened (they go before the answer)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._calls: dict[str, dict[str, Any]] = {}

    def listed(self, server: str, tools: list[ToolSpec], error: str | None) -> None:
        self.items.append(list_tools_item(server, tools, error))

    def turn_done(self, content: str | None) -> None:
        if content:
            self.items.append(wire.message_item(wire.new_id("msg"), content))

    def tool_started(self, call_id: str, spec: ToolSpec, arguments: str) -> None:
        self._calls[call_id] = item = call_item(spec, arguments)
        self.items.append(item)

    def tool_finished(self, call_id: str, spec: ToolSpec, result: ToolResult) -> None:
        finish_call(self._calls[call_id], result)


class ResponsesLoopStream:
    """A streamed loop as Responses events (`emit` sends them), ending with response.completed."""

    def __init__(self, inbound: ResponsesInbound, state: AppState, ex: Exchange, emit: Callable[[bytes], None]) -> None:
        self.inbound, self.state, self.ex, self.emit = inbound, state, ex, emit
        self.events: ResponsesEvents | None = None
        self._calls: dict[str, tuple[int, dict[str, Any]]] = {}

    @property
    def _ev(self) -> ResponsesEvents:
        if self.events is None:  # an error before the first model call answered
            self.events = ResponsesEvents(self.inbound.body, self.inbound.resp_id, self.inbound.body.get("model", ""))
        return self.events

    def start(self, model: str) -> None:
        self.events = ResponsesEvents(self.inbound.body, self.inbound.resp_id, model)
        self.emit(self.events.start())

    def listed(self, server: str, tools: list[ToolSpec], error: str | None) -> None:
        ev = self._ev
        item = list_tools_item(server, tools, error)
        index, out = ev.add_item({**item, "tools": []})
        out += ev.event("response.mcp_list_tools.in_progress", item_id=item["id"], output_index=index)
        done = "response.mcp_list_tools.failed" if error else "response.mcp_list_tools.completed"
        out += ev.event(done, item_id=item["id"], output_index=index)
        ev.response["output"][index] = item
        self.emit(out + ev.event("response.output_item.done", output_index=index, item=item))

    def turn_done(self, content: str | None) -> None:
        self.emit(self._ev.close_message())

    def tool_started(self, call_id: str, spec: ToolSpec, arguments: str) -> None:
        ev = self._ev
        item = call_item(spec, "")
        index, out = ev.add_item(item)
        item["arguments"] = arguments
        ids = {"item_id": item["id"], "output_index": index}
        out += ev.event("response.mcp_call_arguments.delta", **ids, delta=arguments)
        out += ev.event("response.mcp_call_arguments.done", **ids, arguments=arguments)
        self._calls[call_id] = (index, item)
        self.emit(out + ev.event("response.mcp_call.in_progress", **ids))

    def tool_finished(self, call_id: str, spec: ToolSpec, result: ToolResult) -> None:
        ev = self._ev
        index, item = self._calls[call_id]
        finish_call(item, result)
        kind = "response.mcp_call.failed" if result.is_error else "response.mcp_call.completed"
        out = ev.event(kind, item_id=item["id"], output_index=index)
        self.emit(out + ev.event("response.output_item.done", output_index=index, item=item))

    def text(self, delta: str) -> None:
        self.emit(self._ev.text_delta(delta))

    async def end(self, final: dict[str, Any], usage: Usage | None, note: str | None) -> None:
        ev = self._ev
        choice = (final.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        rest = rest_of(message.get("content") or "", ev.text or "", note)
        out = ev.text_delta(rest) if rest else b""
        calls = [{**c, "index": n} for n, c in enumerate(message.get("tool_calls") or ())]
        if calls:
            out += ev.chunk({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
        ev.finish_reason = choice.get("finish_reason")
        out += ev.complete(wire.usage_of(usage.as_openai()) if usage else None)
        self.emit(out)
        await self.inbound.saved(self.state, self.ex, ev.response)

    def error(self, kind: str, message: str) -> None:
        self.emit(self._ev.failed(kind, message))
