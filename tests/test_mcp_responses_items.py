"""The tool loop's Responses items and events, rendered directly (no proxy, no servers): a server
that is down, text before the tool calls, a failed call, and the answer; every event checked
with the openai SDK's own types, streamed and plain giving the same items."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from proxy.api.responses import ResponsesInbound
from proxy.api.responses_mcp import ResponsesLoopItems, ResponsesLoopStream
from proxy.mcp.loop import Limits, LoopTrace, run_tool_loop
from proxy.mcp.servers import ToolResult, ToolSpec
from proxy.providers.base import Usage
from proxy.request.exchange import Exchange
from proxy.request.toolloop_stream import rest_of

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ADD = ToolSpec("calculator", "add", "Add two numbers.", {"type": "object", "properties": {"a": {"type": "number"}}})
FINAL = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "It is 3."}, "finish_reason": "stop"}]}


def play(view: Any) -> None:
    """One loop: two servers listed (one down), a turn with text and a call that fails, the answer."""
    view.listed("calculator", [ADD], None)
    view.listed("docs", [], "the MCP server 'docs' is unavailable (ConnectError)")
    if isinstance(view, ResponsesLoopStream):
        view.text("Let me add. ")
    view.turn_done("Let me add. ")
    view.tool_started("call_1", ADD, '{"a": 1}')
    view.tool_finished("call_1", ADD, ToolResult("Error: the tool server 'calculator' failed", "server_down", 0.01))


def inbound() -> ResponsesInbound:
    resp = ResponsesInbound()
    resp.body = {"model": "auto", "input": "1 + 2?", "store": False, "tools": [{"type": "mcp", "server_label": "calculator"}]}
    return resp


def events_of(raw: bytes) -> list[Any]:
    return [EVENTS.validate_python(orjson.loads(line[6:])) for line in raw.decode().splitlines() if line.startswith("data: ")]


def test_streamed_items_and_events_have_openais_shapes_and_order() -> None:
    sent: list[bytes] = []
    stream = ResponsesLoopStream(inbound(), None, Exchange(), sent.append)  # type: ignore[arg-type]
    stream.start("openai/gpt-4.1-nano")
    play(stream)
    for piece in ("It ", "is 3."):
        stream.text(piece)
    asyncio.run(stream.end(FINAL, Usage(30, 7), None))
    events = events_of(b"".join(sent))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds[2:6] == [
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
    ]
    assert kinds[6:10] == [
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.failed",  # the server that is down
        "response.output_item.done",
    ]
    assert kinds.count("response.mcp_call.failed") == 1 and "response.mcp_call.completed" not in kinds
    final = Response.model_validate(events[-1].response.to_dict())
    assert [i.type for i in final.output] == ["mcp_list_tools", "mcp_list_tools", "message", "mcp_call", "message"]
    up, down, before, call, answer = final.output
    assert [t.name for t in up.tools] == ["add"] and up.error is None  # type: ignore[union-attr]
    assert down.tools == [] and "unavailable" in (down.error or "")  # type: ignore[union-attr]
    assert before.content[0].text == "Let me add. " and answer.content[0].text == "It is 3."  # type: ignore[union-attr]
    assert call.status == "failed" and call.output is None and "failed" in (call.error or "")  # type: ignore[union-attr]
    assert (call.server_label, call.name, call.arguments) == ("calculator", "add", '{"a": 1}')  # type: ignore[union-attr]
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (30, 7)
    for e in events:  # each item event names its item and its place in the output
        if hasattr(e, "item_id") and hasattr(e, "output_index"):
            assert final.output[e.output_index].id == e.item_id
    done = [e.item.to_dict() for e in events if e.type == "response.output_item.done"]
    assert done == [i.to_dict() for i in final.output]


def test_plain_items_match_the_streamed_ones() -> None:
    items = ResponsesLoopItems()
    play(items)
    kinds = [(i["type"], i.get("server_label"), i.get("status")) for i in items.items]
    assert kinds == [
        ("mcp_list_tools", "calculator", None),
        ("mcp_list_tools", "docs", None),
        ("message", None, "completed"),
        ("mcp_call", "calculator", "failed"),
    ]
    body = {**inbound().body, "output": items.items, "id": "resp_x", "object": "response", "created_at": 0, "model": "m"}
    body |= {"parallel_tool_calls": True, "tool_choice": "auto", "status": "completed"}
    Response.model_validate(body)


def test_what_is_left_to_stream_of_the_answer() -> None:
    assert rest_of("It is 3.", "It is", None) == " 3."
    assert rest_of("It is 3.\n\n[note]", "It is 3.", "[note]") == "\n\n[note]"
    assert rest_of("earlier turn\n\n[note]", "cut sh", "[note]") == "\n\n[note]"  # a turn the deadline cut
    assert rest_of("earlier turn\n\n[note]", "", "[note]") == "[note]"  # that turn's text went out before its tool calls
    assert rest_of("[note]", "", "[note]") == "[note]"


def test_two_calls_with_the_same_or_no_id_are_two_items_and_two_results() -> None:
    # A provider may leave tool-call ids out (or repeat one): the items were keyed by id, so the
    # first mcp_call stayed "in_progress" and the second was finished twice, and both tool results
    # went back to the model under one tool_call_id.
    for same in (None, "call_x"):
        seen: list[list[dict[str, Any]]] = []

        async def model(body: dict[str, Any], same: str | None = same, seen: list[Any] = seen) -> dict[str, Any]:
            seen.append(body["messages"])
            if len(seen) > 1:
                return FINAL
            calls = [
                {"id": same, "type": "function", "function": {"name": "calculator__add", "arguments": f'{{"a": {i}}}'}} for i in (1, 2)
            ]
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            return {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}

        view = ResponsesLoopItems()
        body = {"model": "m", "messages": [{"role": "user", "content": "1 + 2?"}]}
        limits = Limits(max_depth=3, deadline=time.monotonic() + 10, max_result_chars=1000, max_tool_calls=8)
        asyncio.run(run_tool_loop(model, body, [ADD], {}, limits, LoopTrace(), events=view))  # (no connection: each call fails)
        assert [(i["type"], i["status"], i["arguments"]) for i in view.items] == [
            ("mcp_call", "failed", '{"a": 1}'),
            ("mcp_call", "failed", '{"a": 2}'),
        ]
        asked, *answers = seen[1][-3:]
        ids = [c["id"] for c in asked["tool_calls"]]
        assert len(set(ids)) == 2 and all(ids) and [a["tool_call_id"] for a in answers] == ids
