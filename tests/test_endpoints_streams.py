"""Streams and edge cases of the Responses and Messages adapters through a running proxy: a
mid-stream upstream failure, `thinking` passed or dropped, Claude Code's request shape."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import ThreadedServer

HI = [{"role": "user", "content": "hi"}]


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        out.append((lines.get("event", ""), orjson.loads(lines["data"])))
    return out


def post(server: ThreadedServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, headers={"x-api-key": "sk-any"}, json=body, timeout=30)


def test_responses_mid_stream_failure_is_response_failed(proxy_server: ThreadedServer, upstream: FakeUpstream) -> None:
    upstream.script("gpt-4.1-nano", Fault.cut(after_chunks=3))
    r = post(proxy_server, "/v1/responses", {"model": "openai/gpt-4.1-nano", "input": "hi", "stream": True})
    kinds = [e["type"] for _, e in events(r.text)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    failed = events(r.text)[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"]


def test_messages_mid_stream_failure_is_an_error_event(proxy_server: ThreadedServer, upstream: FakeUpstream) -> None:
    upstream.script("gpt-4.1-nano", Fault.cut(after_chunks=3))
    r = post(proxy_server, "/v1/messages", {"model": "openai/gpt-4.1-nano", "max_tokens": 50, "messages": HI, "stream": True})
    seq = events(r.text)
    assert [k for k, _ in seq[:2]] == ["message_start", "ping"]
    assert seq[-1][0] == "error" and seq[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [k for k, _ in seq]


def test_messages_error_before_stream_is_anthropic_json(proxy_server: ThreadedServer, upstream: FakeUpstream) -> None:
    upstream.script("*", *[Fault.status(500)] * 20)
    r = post(proxy_server, "/v1/messages", {"model": "openai/gpt-4.1-nano", "max_tokens": 50, "messages": HI, "stream": True})
    assert r.status_code >= 500 and r.json()["type"] == "error" and r.json()["error"]["message"]
    assert r.headers["x-autoroute-decision-id"].startswith("dec_")


def test_thinking_goes_to_anthropic_and_is_dropped_elsewhere(proxy_server: ThreadedServer, upstream: FakeUpstream) -> None:
    body = {"max_tokens": 2048, "messages": HI, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    r = post(proxy_server, "/v1/messages", {**body, "model": "claude-sonnet-4-20250514"})
    assert r.status_code == 200 and "x-autoroute-note" not in r.headers
    assert upstream.received[-1].path.endswith("/messages") and upstream.received[-1].body["thinking"]["budget_tokens"] == 1024
    r = post(proxy_server, "/v1/messages", {**body, "model": "openai/gpt-4.1-nano"})
    assert r.status_code == 200 and "thinking dropped" in r.headers["x-autoroute-note"]
    assert "thinking" not in upstream.received[-1].body


def test_claude_code_request_shape(proxy_server: ThreadedServer, upstream: FakeUpstream) -> None:
    """What Claude Code 2.1 sends: system blocks with cache_control, a mid-conversation system
    turn, a JSON metadata.user_id, adaptive thinking, context_management and output_config."""
    body = {
        "model": "auto",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Fix the failing test in utils.py"}]},
            {"role": "system", "content": "Available agent types: general"},
        ],
        "tools": [
            {"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
        ],
        "metadata": {"user_id": '{"device_id":"abc","session_id":"s1"}'},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }
    r = httpx.post(
        proxy_server.url + "/v1/messages?beta=true",
        headers={"authorization": "Bearer sk-any", "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219"},
        json=body,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    seq = events(r.text)
    assert seq[0][0] == "message_start" and seq[-1][0] == "message_stop"
    assert any(e.get("content_block", {}).get("type") == "tool_use" for _, e in seq)
    sent = str(upstream.received[-1].body)
    assert "Available agent types" in sent and "context_management" not in sent and "output_config" not in sent


def test_response_store_failure_keeps_the_answer(proxy_server: ThreadedServer, upstream: FakeUpstream) -> None:
    state = proxy_server.server.config.app.state.autoroute

    class Broken:
        async def set(self, *a: Any, **kw: Any) -> None:
            raise ConnectionError("store down")

        async def get(self, *a: Any, **kw: Any) -> None:
            raise ConnectionError("store down")

    real, state.redis = state.redis, Broken()
    try:
        r = post(proxy_server, "/v1/responses", {"model": "openai/gpt-4.1-nano", "input": "hi"})
        assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == upstream.reply
        r = post(proxy_server, "/v1/responses", {"model": "openai/gpt-4.1-nano", "input": "more", "previous_response_id": "resp_x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "limits_store_unavailable"
    finally:
        state.redis = real


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
def test_deeply_nested_json_is_a_400_on_every_api(proxy_server: ThreadedServer, path: str) -> None:
    """The depth limit is the inbound parse's, not only chat's (it was missing on these two)."""
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    body = {"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "input": "hi", "metadata": {"d": deep}}
    resp = httpx.post(proxy_server.url + path, json=body, headers={"authorization": "Bearer sk-any"}, timeout=30)
    assert resp.status_code == 400, resp.text
    assert "nested deeper" in resp.text
