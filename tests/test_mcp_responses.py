"""The MCP tool loop behind /v1/responses (tools of type `mcp`), through the real `openai` client,
against the example calculator over stdio and Streamable HTTP and the fake upstream (a tool call,
then text): OpenAI's mcp_list_tools / mcp_call items and stream events, validated with the SDK's
own types; the decision record, the key's spend and a client that leaves mid-loop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.support import mcp_servers
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.mcp_proxy import MODEL, Proxy, offered, proxy_with

CALCULATOR = {"type": "mcp", "server_label": "calculator", "allowed_tools": ["evaluate", "add"], "require_approval": "never"}
QUESTION = "What is (2 + 3) * 4? Use the calculator."
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module", params=["stdio", "http"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, environ: dict[str, str]) -> Iterator[Proxy]:
    with (
        mcp_servers.entries(["calculator"], request.param) as servers,
        proxy_with(tmp_path_factory.mktemp("r"), environ, servers) as proxy,
    ):
        yield proxy


def sdk(proxy: Proxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_a_two_step_loop_returns_openais_items_and_charges_every_call(shared: Proxy, upstream: FakeUpstream) -> None:
    key, key_id = shared.new_key(budget_usd_day=5.0)
    upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "(2 + 3) * 4"}})
    raw = sdk(shared, key).responses.with_raw_response.create(model=MODEL, input=QUESTION, tools=[CALCULATOR])  # type: ignore[list-item]
    response = Response.model_validate(raw.http_response.json())  # strict: every item in the SDK's own shape
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    listed, call, message = response.output
    assert listed.type == "mcp_list_tools" and listed.server_label == "calculator" and listed.error is None
    assert sorted(t.name for t in listed.tools) == ["add", "evaluate"]  # allowed_tools narrowed the server's three
    assert all(isinstance(t.input_schema, dict) and t.input_schema.get("type") == "object" for t in listed.tools)
    assert call.type == "mcp_call" and (call.server_label, call.name) == ("calculator", "evaluate")
    assert orjson.loads(call.arguments) == {"expression": "(2 + 3) * 4"}
    assert call.output == "20" and call.error is None and call.status == "completed"
    assert response.output_text == upstream.reply and response.status == "completed"
    # The model saw the tool's result in its second call, and only the allowed tools in its first.
    asked, answered = upstream.received[1].body["messages"][-2:]
    assert answered == {"role": "tool", "tool_call_id": asked["tool_calls"][0]["id"], "content": "20"}
    assert sorted(offered(upstream)[0]) == ["calculator__add", "calculator__evaluate"]
    record = shared.decision(raw.headers["x-autoroute-decision-id"])
    loop = record["tools"]
    assert record["endpoint"] == "responses" and record["status"] == 200
    assert [c["model"] for c in loop["model_calls"]] == [MODEL, MODEL]
    assert [(c["server"], c["tool"], c["outcome"]) for c in loop["tool_calls"]] == [("calculator", "evaluate", "ok")]
    # usage sums both model calls; the key paid for both, at the model's prices.
    assert response.usage is not None
    assert response.usage.input_tokens == sum(c["input_tokens"] for c in loop["model_calls"]) > loop["model_calls"][0]["input_tokens"]
    assert response.usage.output_tokens == sum(c["output_tokens"] for c in loop["model_calls"])
    price = shared.state.policy.resolve_model(MODEL)
    day = shared.admin("GET", f"/admin/keys/{key_id}/usage").json()
    assert day["day"]["requests"] == 2 and day["reserved_cost_usd"] == 0
    assert day["day"]["cost_usd"] == pytest.approx(price.cost_usd(response.usage.input_tokens, response.usage.output_tokens), rel=1e-6)
    metrics = httpx.get(shared.url + "/metrics").text  # (the first tool call on this proxy)
    assert 'autoroute_mcp_tool_calls_total{outcome="ok",server="calculator",tool="evaluate",via="loop"} 1.0' in metrics
    # Stored like any response: retrievable.
    assert sdk(shared, key).responses.retrieve(response.id).output[1].type == "mcp_call"


def test_a_tool_the_key_may_not_use_is_neither_offered_nor_run(shared: Proxy, upstream: FakeUpstream) -> None:
    key, _ = shared.new_key(allowed_tools=["calculator__add"])
    upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "1+1"}, "force": True})
    raw = sdk(shared, key).responses.with_raw_response.create(model=MODEL, input=QUESTION, tools=[CALCULATOR])  # type: ignore[list-item]
    response = Response.model_validate(raw.http_response.json())
    assert offered(upstream) == [["calculator__add"]]
    listed = response.output[0]
    assert listed.type == "mcp_list_tools" and [t.name for t in listed.tools] == ["add"]
    assert not [i for i in response.output if i.type == "mcp_call"]  # the model's call to it did not run here
    loop = shared.decision(raw.headers["x-autoroute-decision-id"])["tools"]
    assert loop["tool_calls"] == [] and loop["stopped"] == "client_tools"
    # Streamed alike: the call comes back as the client's function_call, no mcp_call item.
    upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "1+1"}, "force": True})
    with sdk(shared, key).responses.stream(model=MODEL, input=QUESTION, tools=[CALCULATOR]) as stream:  # type: ignore[list-item]
        final = stream.get_final_response()
    assert [(i.type, getattr(i, "name", None)) for i in final.output] == [
        ("mcp_list_tools", None),
        ("function_call", "calculator__evaluate"),
    ]
    assert orjson.loads(final.output[1].arguments) == {"expression": "1+1"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tool", "param", "code"),
    [
        ({"server_label": "evil", "server_url": "http://evil.example/mcp"}, "tools.0.server_url", "mcp_url_not_allowed"),
        (
            {"server_label": "wiki", "server_url": "http://127.0.0.1:9/mcp", "headers": {"x": "1"}},
            "tools.0.server_url",
            "mcp_url_not_allowed",
        ),
        ({"server_label": "calculator", "require_approval": "always"}, "tools.0.require_approval", "mcp_approval_not_supported"),
        ({"server_label": "nope"}, "tools.0.server_label", "unknown_mcp_server"),
        ({"server_label": "calculator", "headers": {"authorization": "Bearer x"}}, "tools.0.headers", None),
        ({"server_label": "calculator", "allowed_tools": {"read_only": True}}, "tools.0.allowed_tools", None),
    ],
)
def test_refused_mcp_tools_are_400s_in_the_responses_shape(
    shared: Proxy, upstream: FakeUpstream, tool: dict[str, Any], param: str, code: str | None
) -> None:
    key, _ = shared.new_key()
    with pytest.raises(openai.BadRequestError) as info:
        sdk(shared, key).responses.create(model=MODEL, input=QUESTION, tools=[{"type": "mcp", **tool}])  # type: ignore[list-item]
    error = info.value.body
    assert info.value.status_code == 400 and isinstance(error, dict)
    assert error["param"] == param and error["code"] == code and error["type"] == "invalid_request_error", error
    assert upstream.received == []


@pytest.mark.parametrize(
    ("tools", "choice"),
    [
        ([CALCULATOR], {"type": "mcp", "server_label": "other", "name": "evaluate"}),  # no mcp tool has that label
        ([CALCULATOR], {"type": "mcp", "server_label": 5, "name": "evaluate"}),
        ([CALCULATOR], {"type": "mcp", "server_label": "calculator", "name": ["evaluate"]}),
        ([], {"type": "mcp", "server_label": "calculator"}),  # no mcp tools at all: it was dropped silently
    ],
)
def test_a_tool_choice_naming_no_mcp_tool_is_a_400(
    shared: Proxy, upstream: FakeUpstream, tools: list[dict[str, Any]], choice: dict[str, Any]
) -> None:
    # It was forwarded as a forced function the model was never offered ("other__evaluate",
    # "5__evaluate", "calculator__['evaluate']"): the upstream's error, after an admission.
    key, _ = shared.new_key()
    with pytest.raises(openai.BadRequestError) as info:
        sdk(shared, key).responses.create(model=MODEL, input=QUESTION, tools=tools, tool_choice=choice)  # type: ignore[arg-type]
    assert info.value.status_code == 400 and isinstance(info.value.body, dict) and info.value.body["param"] == "tool_choice"
    assert upstream.received == []


def test_streamed_loop_sends_tool_progress_then_the_answer_live(shared: Proxy, upstream: FakeUpstream) -> None:
    key, key_id = shared.new_key()
    upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "(2 + 3) * 4"}})
    upstream.script("gpt-4.1-nano", Fault.slow(0), Fault.slow(0.15))  # the answer's chunks come 0.15 s apart
    stream = sdk(shared, key).responses.create(model=MODEL, input=QUESTION, tools=[CALCULATOR], stream=True)  # type: ignore[list-item]
    events, arrived = [], []
    for event in stream:
        events.append(EVENTS.validate_python(event.to_dict()))  # strict: the SDK's own event types
        arrived.append(time.monotonic())
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [i for i, k in enumerate(kinds) if k == "response.output_text.delta"]
    assert [k for i, k in enumerate(kinds) if i not in deltas[1:]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # mcp_list_tools
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
        "response.output_item.added",  # mcp_call
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.output_item.done",
        "response.output_item.added",  # the answer
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert arrived[-1] - arrived[deltas[0]] > 0.6  # the answer streamed as the model wrote it
    final = Response.model_validate(events[-1].response.to_dict())
    assert [i.type for i in final.output] == ["mcp_list_tools", "mcp_call", "message"]
    done = [e for e in events if e.type == "response.output_item.done"]
    assert [e.output_index for e in done] == [0, 1, 2] and [e.item.to_dict() for e in done] == [i.to_dict() for i in final.output]
    for e in events:  # every item event points at its item's place in the output
        if hasattr(e, "item_id") and hasattr(e, "output_index"):
            assert final.output[e.output_index].id == e.item_id, e
    assert final.output[1].output == "20" and final.output_text == upstream.reply
    assert final.usage is not None and final.usage.input_tokens > upstream.received[0].usage[0]  # type: ignore[index]
    usage = shared.admin("GET", f"/admin/keys/{key_id}/usage").json()["day"]
    assert usage["requests"] == 2 and usage["input_tokens"] == final.usage.input_tokens


def test_the_sdks_stream_helper_assembles_the_loops_response(shared: Proxy, upstream: FakeUpstream) -> None:
    key, _ = shared.new_key()
    upstream.tool_calls.append({"name": "calculator__add", "arguments": {"a": 2, "b": 40}})
    with sdk(shared, key).responses.stream(model=MODEL, input=QUESTION, tools=[CALCULATOR]) as stream:  # type: ignore[list-item]
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == upstream.reply == final.output_text
    assert [i.type for i in final.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert final.output[1].output == "42.0"  # type: ignore[union-attr]


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_a_client_that_leaves_mid_loop_cancels_it_and_releases_the_reservation(shared: Proxy, upstream: FakeUpstream, api: str) -> None:
    key, key_id = shared.new_key(budget_usd_day=5.0, rpm=100)
    upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "6 * 7"}})
    upstream.script("gpt-4.1-nano", Fault.slow(0), Fault.hang(20))  # the second model call never answers
    if api == "responses":
        path, body = "/v1/responses", {"model": MODEL, "input": QUESTION, "tools": [CALCULATOR], "stream": True}
        marker = "response.mcp_call.completed"
    else:
        path, body = "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "stream": True}
        body["route"] = {"mcp": ["calculator"]}
        marker = '"role":"assistant"'
    with httpx.stream("POST", shared.url + path, json=body, headers={"authorization": f"Bearer {key}"}, timeout=30) as resp:
        assert resp.status_code == 200
        decision_id = resp.headers["x-autoroute-decision-id"]
        lines = resp.iter_lines()  # (held: a loop over it that breaks would close the response)
        for line in lines:
            if marker in line:
                break
        deadline = time.monotonic() + 10
        while len(upstream.received) < 2 and time.monotonic() < deadline:  # the loop is in its second model call
            time.sleep(0.02)
        assert len(upstream.received) == 2
    # The client is gone: the call in flight is closed, its reservation released, the request recorded once.
    record = shared.decision(decision_id)
    deadline = time.monotonic() + 5
    while upstream.received[1].disconnected_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.received[1].disconnected_at is not None and not upstream.received[1].completed
    assert record["status"] == 499 and record["tools"]["stopped"] is None
    assert len(record["tools"]["model_calls"]) == 1 and [c["outcome"] for c in record["tools"]["tool_calls"]] == ["ok"]
    usage = shared.admin("GET", f"/admin/keys/{key_id}/usage").json()
    assert usage["reserved_cost_usd"] == 0 and usage["requests_in_window"] == 2 and usage["day"]["requests"] == 1  # released, not settled
    assert usage["day"]["cost_usd"] == pytest.approx(record["tools"]["model_calls"][0]["cost_usd"]) == pytest.approx(record["cost_usd"])
    time.sleep(0.2)
    assert len(shared.decisions(decision_id)) == 1
    assert shared.state.health.in_flight("openai") == 0


def test_a_later_model_call_refused_by_the_keys_limit_ends_the_stream_with_response_failed(shared: Proxy, upstream: FakeUpstream) -> None:
    key, key_id = shared.new_key(rpm=1)  # room for the loop's first model call only
    upstream.tool_calls.append({"name": "calculator__add", "arguments": {"a": 1, "b": 1}})
    client = sdk(shared, key)
    raw = client.responses.with_raw_response.create(model=MODEL, input=QUESTION, tools=[CALCULATOR], stream=True)  # type: ignore[list-item]
    events = [EVENTS.validate_python(e.to_dict()) for e in raw.parse()]
    kinds = [e.type for e in events]
    assert "response.mcp_call.completed" in kinds and kinds[-1] == "response.failed"
    assert events[-1].response.error.code == "rate_limit_exceeded"
    assert [i.type for i in events[-1].response.output] == ["mcp_list_tools", "mcp_call"]
    record = shared.decision(raw.headers["x-autoroute-decision-id"])
    assert record["status"] == 429 and len(record["tools"]["model_calls"]) == 1 and len(upstream.received) == 1
    usage = shared.admin("GET", f"/admin/keys/{key_id}/usage").json()
    assert usage["day"]["cost_usd"] == pytest.approx(record["tools"]["model_calls"][0]["cost_usd"]) and usage["reserved_cost_usd"] == 0
    # Refused before anything was sent: an ordinary 429 in the Responses error shape, not a stream.
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model=MODEL, input=QUESTION, tools=[CALCULATOR], stream=True)  # type: ignore[list-item]
    assert info.value.status_code == 429 and isinstance(info.value.body, dict) and info.value.body["code"] == "rate_limit_exceeded"


def test_the_messages_api_cannot_ask_for_the_loop(shared: Proxy, upstream: FakeUpstream) -> None:
    key, _ = shared.new_key()
    body = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": QUESTION}], "route": {"mcp": ["calculator"]}}
    resp = httpx.post(shared.url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=10)
    assert resp.status_code == 400 and resp.json()["type"] == "error", resp.text
    assert "/v1/chat/completions and /v1/responses" in resp.json()["error"]["message"] and upstream.received == []


def test_a_server_url_on_an_allowed_host_runs_and_its_headers_are_not_echoed(
    tmp_path_factory: pytest.TempPathFactory, environ: dict[str, str], upstream: FakeUpstream
) -> None:
    with (
        mcp_servers.http_server("memory") as (url, _),
        proxy_with(tmp_path_factory.mktemp("u"), environ, {}, request_url_hosts=[urlsplit(url).netloc]) as proxy,
    ):
        key, _ = proxy.new_key()
        upstream.tool_calls.append({"name": "mem__remember", "arguments": {"key": "city", "value": "Paris"}})
        tool = {"type": "mcp", "server_label": "mem", "server_url": url, "headers": {"authorization": "Bearer s3cret"}}
        raw = sdk(proxy, key).responses.with_raw_response.create(model=MODEL, input="Remember Paris.", tools=[tool])  # type: ignore[list-item]
        assert "s3cret" not in raw.http_response.text
        response = Response.model_validate(raw.http_response.json())
        call = response.output[1]
        assert call.type == "mcp_call" and (call.server_label, call.name, call.output) == ("mem", "remember", "remembered city")
        assert response.output[0].type == "mcp_list_tools" and "recall" in [t.name for t in response.output[0].tools]
        assert "s3cret" not in httpx.get(proxy.url + f"/v1/responses/{response.id}", headers={"authorization": f"Bearer {key}"}).text
