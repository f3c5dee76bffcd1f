"""The pure translations: Responses and Messages bodies -> chat, chat results/chunks -> their wire."""

from __future__ import annotations

import orjson
import pytest

from proxy.api import messages_wire, responses_wire
from proxy.api.messages_stream import MessagesEvents
from proxy.api.responses_stream import ResponsesEvents
from proxy.errors import InvalidRequest, RateLimited


def test_responses_items_become_chat_turns() -> None:
    body = {
        "model": "auto",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}, {"type": "input_image", "image_url": "data:x"}]},
            {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        "max_output_tokens": 50,
        "reasoning": {"effort": "low"},
        "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "get"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
    }
    chat = responses_wire.to_chat(body, [{"role": "user", "content": "earlier"}])
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "user", "assistant", "tool"]
    assert [c["id"] for c in chat["messages"][3]["tool_calls"]] == ["c1", "c2"]  # parallel calls: one turn
    assert chat["messages"][2]["content"][1]["type"] == "image_url"
    assert chat["max_tokens"] == 50 and chat["reasoning_effort"] == "low"
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get"}}
    assert chat["response_format"]["json_schema"]["name"] == "w"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": [{"type": "web_search_call"}]},
        {"model": "m", "input": "x", "tools": [{"type": "web_search_preview"}]},
        {"model": "m", "input": [{"role": "robot", "content": "x"}]},
        {"model": "m", "input": []},
    ],
)
def test_responses_bad_input_is_a_400(body: dict) -> None:
    with pytest.raises(InvalidRequest):
        responses_wire.to_chat(body)


def test_responses_stream_sequence_and_usage() -> None:
    ev = ResponsesEvents({"model": "auto"}, "resp_1", "openai/gpt-4.1")
    out = ev.chunk({"choices": [{"index": 0, "delta": {"content": "Hel"}}]})
    out += ev.chunk({"choices": [{"index": 0, "delta": {"content": "lo"}}]})
    out += ev.chunk(
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}}]}
    )
    out += ev.chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    out += ev.complete({"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})
    events = [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.output_text.delta") == 2 and "response.function_call_arguments.delta" in kinds
    assert kinds[-1] == "response.completed" and events[-1]["response"]["usage"]["total_tokens"] == 5
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]["output"]
    assert final[0]["content"][0]["text"] == "Hello" and final[1]["arguments"] == "{}"


def test_responses_stream_failure_is_response_failed() -> None:
    ev = ResponsesEvents({"model": "auto"}, "resp_1", "m")
    ev.chunk({"choices": [{"index": 0, "delta": {"content": "x"}}]})
    last = orjson.loads(ev.failed("stream_cut", "cut").split(b"data: ")[-1])
    assert last["type"] == "response.failed" and last["response"]["error"]["code"] == "stream_cut"


def test_messages_blocks_become_chat_turns() -> None:
    body = {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "sys"}],
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "get", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "hm"}, {"type": "tool_use", "id": "t1", "name": "get", "input": {"a": 1}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}]},
                    {"type": "text", "text": "and?"},
                ],
            },
        ],
    }
    chat = messages_wire.to_chat(body, keep_thinking=False)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert chat["messages"][1]["content"][0]["image_url"]["url"] == "data:image/png;base64,AAA"
    assert chat["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "ok"}
    assert chat["stop"] == ["END"] and chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    assert "thinking" not in chat and "cache_control" not in chat["tools"][0]
    assert messages_wire.to_chat(body, keep_thinking=True)["thinking"]["budget_tokens"] == 1024


@pytest.mark.parametrize(
    "body",
    [
        {"model": "auto", "messages": [{"role": "user", "content": "x"}]},  # no max_tokens
        {"model": "auto", "max_tokens": 5, "messages": []},
        {"model": "auto", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]},
        {"model": "auto", "max_tokens": 5, "temperature": 1.5, "messages": [{"role": "user", "content": "x"}]},
        {
            "model": "auto",
            "max_tokens": 5,
            "tools": [{"type": "web_search_20250305", "name": "w"}],
            "messages": [{"role": "user", "content": "x"}],
        },
    ],
)
def test_messages_bad_input_is_a_400(body: dict) -> None:
    with pytest.raises(InvalidRequest):
        messages_wire.to_chat(body)


def test_messages_result_and_errors() -> None:
    result = {
        "choices": [
            {
                "message": {"content": None, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"x":2}'}}]},
                "finish_reason": "tool_calls",
            }
        ]
    }
    msg = messages_wire.from_chat(result, "m", (3, 4))
    assert msg["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {"x": 2}}]
    assert msg["stop_reason"] == "tool_use" and msg["usage"]["output_tokens"] == 4
    err = orjson.loads(messages_wire.error_body(RateLimited("slow down")))
    assert err == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


def test_messages_stream_sequence() -> None:
    ev = MessagesEvents("m", 7)
    out = ev.chunk({"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]})
    out += ev.chunk({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
    out += ev.chunk(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        }
    )
    out += ev.complete(7, 3)
    kinds = [line[7:].decode() for line in out.split(b"\n") if line.startswith(b"event: ")]
    assert kinds == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert b'"stop_reason":"tool_use"' in out
