"""Implicit feedback read off answers: a completion cut at the token limit and a tool call whose
arguments are not JSON are recorded as "bad" with the decision's features (issue 13, item 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.app import create_app
from proxy.request.accounting import output_chars
from proxy.request.signals import StreamSignals, completion_signals
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def _choice(finish: str = "stop", arguments: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "hi"}
    if arguments is not None:
        message["tool_calls"] = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]
    return {"index": 0, "message": message, "finish_reason": finish}


def test_a_whole_completion_is_read_for_truncation_and_unparsable_tool_arguments() -> None:
    assert completion_signals({"choices": [_choice()]}) == []
    assert completion_signals({"choices": [_choice("length")]}) == ["truncated"]
    assert completion_signals({"choices": [_choice("tool_calls", '{"city": "Paris"}')]}) == []
    assert completion_signals({"choices": [_choice("tool_calls", "")]}) == []  # no arguments: an empty object
    assert completion_signals({"choices": [_choice("tool_calls", '{"city": "Par')]}) == ["tool_call_unparsable"]
    assert completion_signals({"choices": [_choice("tool_calls", '["a list"]')]}) == ["tool_call_unparsable"]
    both = completion_signals({"choices": [_choice("length", "{not json"), _choice("length")]})
    assert both == ["truncated", "tool_call_unparsable"]  # each signal once
    assert completion_signals({"choices": "garbage"}) == [] and completion_signals({}) == []


def test_a_stream_joins_tool_argument_pieces_before_judging_them() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
        return {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    def call(i: int, piece: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}

    good = StreamSignals()
    for c in (chunk(call(0, '{"ci')), chunk(call(1, "{}")), chunk(call(0, 'ty": "Paris"}')), chunk({}, "tool_calls")):
        good.feed(c)
    assert good.signals() == []
    bad = StreamSignals()
    for c in (chunk(call(0, '{"ci')), chunk(call(0, 'ty": "Par')), chunk({"content": "x"}, "length")):
        bad.feed(c)
    assert bad.signals() == ["truncated", "tool_call_unparsable"]


@pytest.fixture
def served(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    app = create_app(make_settings(policy_dir=policy_copy(tmp_path / "policies"), master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


def _admin(server: ThreadedServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"authorization": f"Bearer {MASTER}"}, timeout=20, **kw)


def _feedback(server: ThreadedServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _admin(server, "GET", "/admin/feedback").text.splitlines()]


def test_truncated_and_unparsable_answers_become_implicit_bad_feedback(served: ThreadedServer, upstream: FakeUpstream) -> None:
    made = _admin(served, "POST", "/admin/keys", json={"name": "sig", "allowed_models": ["openai/*"]})  # OpenAI-format upstreams
    assert made.status_code == 201, made.text
    headers = {"authorization": f"Bearer {made.json()['key']}"}
    ask = {"model": "auto", "messages": [{"role": "user", "content": "Write a haiku about autumn rain."}]}

    fine = httpx.post(served.url + "/v1/chat/completions", json=ask, headers=headers, timeout=20)
    assert fine.status_code == 200 and _feedback(served) == []  # a clean answer is no signal

    upstream.tool_calls.append({"name": "get_weather", "arguments": '{"city": "Par'})
    weather = {**ask, "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER]}
    broken = httpx.post(served.url + "/v1/chat/completions", json=weather, headers=headers, timeout=20)
    assert broken.status_code == 200, broken.text  # relayed as the model said it; the signal is for routing
    [record] = _feedback(served)
    assert record["decision_id"] == broken.headers["x-autoroute-decision-id"]
    assert record["reason"] == "tool_call_unparsable" and record["source"] == "implicit" and record["score"] == 0.0
    assert record["features"]["category"] == record["category"] and record["features"]["adequacy"] is not None

    upstream.script("*", Fault("length"))
    with httpx.stream("POST", served.url + "/v1/chat/completions", json={**ask, "stream": True}, headers=headers, timeout=20) as resp:
        assert resp.status_code == 200
        decision = resp.headers["x-autoroute-decision-id"]
        assert '"finish_reason":"length"' in resp.read().decode().replace(" ", "")
    records = _feedback(served)
    assert [(r["decision_id"], r["reason"]) for r in records[1:]] == [(decision, "truncated")]
    assert "haiku" not in json.dumps(records)  # features, never the prompt


STREAM_CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"choices": [{"index": 0, "delta": {"content": "Bonjour, ça va ? "}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": '{"ci'}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}}]},
    {"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": "bcd"}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
]


def test_a_stream_chunk_is_counted_as_output_chars_counts_it() -> None:
    """The relay counts a stream's produced characters with the signals' one pass over each chunk
    (for a provider that sends no usage); it must count what accounting.output_chars counts."""
    watch = StreamSignals()
    counted = [watch.feed(chunk) for chunk in STREAM_CHUNKS]
    assert counted == [output_chars(chunk, "delta") for chunk in STREAM_CHUNKS]
    assert sum(counted) == len("Bonjour, ça va ? ") + len('{"city": "Oslo"}') + 4
