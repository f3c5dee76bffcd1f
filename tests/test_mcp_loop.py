"""The server-side MCP tool loop for chat completions (`route.mcp`), against the example servers
over stdio and Streamable HTTP, through the fake upstream (a tool call, then text)."""

from __future__ import annotations

import concurrent.futures
import fnmatch
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import yaml

from tests.support import mcp_servers
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.mcp_proxy import ASK, MODEL, Proxy, offered, proxy_with


@pytest.fixture(scope="module", params=["stdio", "http"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, environ: dict[str, str]) -> Iterator[Proxy]:
    """One proxy per transport with the calculator and the crashing server (starting one takes seconds)."""
    with (
        mcp_servers.entries(["calculator", "crashy"], request.param, {"crashy": {"call_timeout_s": 1.0}}) as servers,
        proxy_with(tmp_path_factory.mktemp("p"), environ, servers) as proxy,
    ):
        yield proxy


def test_two_step_loop_records_both_model_calls_and_charges_the_key(shared: Proxy, upstream: FakeUpstream) -> None:
    proxy = shared
    if True:
        key, key_id = proxy.new_key(budget_usd_day=5.0, rpm=100)
        upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "(2 + 3) * 4"}})
        resp = proxy.chat(key, route={"mcp": ["calculator"]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["choices"][0]["message"]["content"] == upstream.reply
        assert body["choices"][0]["message"].get("tool_calls") is None
        # The model got the tool's real result in its second call.
        assert len(upstream.received) == 2
        tool_turn = upstream.received[1].body["messages"][-1]
        assert tool_turn["role"] == "tool" and tool_turn["content"] == "20"
        assert "calculator__evaluate" in offered(upstream)[0]
        record = proxy.decision(resp.headers["x-autoroute-decision-id"])
        loop = record["tools"]
        assert [c["model"] for c in loop["model_calls"]] == [MODEL, MODEL]
        assert [(c["server"], c["tool"], c["outcome"]) for c in loop["tool_calls"]] == [("calculator", "evaluate", "ok")]
        assert loop["stopped"] == "answer"
        # Both model calls were admitted and settled against the key.
        day = proxy.admin("GET", f"/admin/keys/{key_id}/usage").json()["day"]
        spent = sum(c["cost_usd"] for c in loop["model_calls"])
        assert day["requests"] == 2
        assert day["cost_usd"] == pytest.approx(spent) and spent > loop["model_calls"][0]["cost_usd"] > 0
        assert day["input_tokens"] == sum(c["input_tokens"] for c in loop["model_calls"]) == record["input_tokens"]
        assert body["usage"]["prompt_tokens"] == record["input_tokens"]
        assert resp.headers["x-ratelimit-remaining-requests"] == "98"  # each model call took a request slot
        metrics = httpx.get(proxy.url + "/metrics").text
        assert 'autoroute_mcp_tool_calls_total{outcome="ok",server="calculator",tool="evaluate",via="loop"} 1.0' in metrics
        assert 'autoroute_mcp_server_up{server="calculator"} 1.0' in metrics


def test_a_tool_the_key_excludes_is_neither_offered_nor_run(shared: Proxy, upstream: FakeUpstream) -> None:
    proxy = shared
    if True:
        key, _ = proxy.new_key(allowed_tools=["calculator__add"])
        # The model calls the excluded tool anyway: it is not the proxy's to run, so it goes to the client.
        upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "1+1"}, "force": True})
        resp = proxy.chat(key, route={"mcp": True})
        assert resp.status_code == 200, resp.text
        assert offered(upstream) == [["calculator__add"]]  # not crashy's tools either: the list is deny-by-default
        calls = resp.json()["choices"][0]["message"]["tool_calls"]
        assert [c["function"]["name"] for c in calls] == ["calculator__evaluate"]
        loop = proxy.decision(resp.headers["x-autoroute-decision-id"])["tools"]
        assert loop["tool_calls"] == [] and loop["stopped"] == "client_tools"
        # A key with an empty list sees no tools at all.
        none_key, _ = proxy.new_key(allowed_tools=[])
        upstream.reset()
        assert proxy.chat(none_key, route={"mcp": True}).status_code == 200
        assert offered(upstream) == [[]]


def test_a_hung_tool_times_out_without_stalling_other_requests(shared: Proxy, upstream: FakeUpstream) -> None:
    key, _ = shared.new_key()
    upstream.tool_calls.append({"name": "crashy__hang", "arguments": {"seconds": 4}})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        looping = pool.submit(shared.chat, key, route={"mcp": ["crashy"]})
        time.sleep(0.3)
        plain = shared.chat(key)  # meanwhile, another request goes straight through
        plain_took = time.monotonic() - started
        resp = looping.result()
        took = time.monotonic() - started
    assert plain.status_code == 200 and plain_took < 1.5
    assert resp.status_code == 200, resp.text
    assert took < 3.5  # the server's call_timeout_s is 1 s, not the tool's 4 s
    tool_turn = next(r for r in upstream.received if r.body["messages"][-1]["role"] == "tool").body["messages"][-1]
    assert "did not answer within 1.0s" in tool_turn["content"]
    loop = shared.decision(resp.headers["x-autoroute-decision-id"])["tools"]
    assert [c["outcome"] for c in loop["tool_calls"]] == ["timeout"]


def test_a_server_killed_mid_loop_gives_the_model_an_error_result(shared: Proxy, upstream: FakeUpstream) -> None:
    proxy = shared
    if True:
        key, _ = proxy.new_key()
        upstream.tool_calls.append({"name": "crashy__crash", "arguments": {}})
        resp = proxy.chat(key, route={"mcp": ["crashy"]})  # the last test on this proxy to use crashy
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == upstream.reply
        tool_turn = upstream.received[1].body["messages"][-1]
        assert tool_turn["role"] == "tool" and tool_turn["content"].startswith("Error: the tool server 'crashy'")
        loop = proxy.decision(resp.headers["x-autoroute-decision-id"])["tools"]
        assert [c["outcome"] for c in loop["tool_calls"]] == ["server_down"]


def test_depth_limit_stops_a_model_that_calls_tools_forever(shared: Proxy, upstream: FakeUpstream) -> None:
    proxy = shared  # the policy's max_depth is 6
    if True:
        key, key_id = proxy.new_key()
        upstream.call_tools_forever = {"name": "calculator__add", "arguments": {"a": 1, "b": 2}}
        resp = proxy.chat(key, route={"mcp": {"servers": ["calculator"], "max_depth": 3}})
        assert resp.status_code == 200, resp.text
        choice = resp.json()["choices"][0]
        assert choice["finish_reason"] == "length" and "tool loop stopped" in choice["message"]["content"]
        assert choice["message"].get("tool_calls") is None
        assert len(upstream.received) == 3
        loop = proxy.decision(resp.headers["x-autoroute-decision-id"])["tools"]
        assert loop["stopped"] == "depth_limit" and len(loop["model_calls"]) == 3 and len(loop["tool_calls"]) == 2
        assert proxy.admin("GET", f"/admin/keys/{key_id}/usage").json()["day"]["requests"] == 3
        # A request cannot raise the policy's cap.
        upstream.reset()
        upstream.call_tools_forever = {"name": "calculator__add", "arguments": {"a": 1, "b": 2}}
        assert proxy.chat(key, route={"mcp": {"servers": ["calculator"], "max_depth": 40}}).status_code == 200
        assert len(upstream.received) == 6


def test_deadline_stops_the_loop(tmp_path: Path, environ: dict, upstream: FakeUpstream) -> None:
    with (
        mcp_servers.entries(["crashy"], "stdio") as servers,
        proxy_with(tmp_path, environ, servers, loop={"max_depth": 50, "deadline_s": 2.5, "max_tool_calls": 1000}) as proxy,
    ):
        key, _ = proxy.new_key()
        # Each tool call takes 0.5 s: the deadline, not the depth or tool-call cap, is what ends it.
        upstream.call_tools_forever = {"name": "crashy__hang", "arguments": {"seconds": 0.5}}
        started = time.monotonic()
        resp = proxy.chat(key, route={"mcp": True})
        took = time.monotonic() - started
        assert resp.status_code == 200, resp.text
        loop = proxy.decision(resp.headers["x-autoroute-decision-id"])["tools"]
        assert loop["stopped"] == "deadline" and 2 <= len(loop["model_calls"]) < 50, loop
        assert took < 2.5 + 5  # the deadline, plus the last model call it cut short on a loaded machine
        # Streamed: the same stop, the note as the stream's last text, the request charged and recorded.
        upstream.reset()
        upstream.call_tools_forever = {"name": "crashy__hang", "arguments": {"seconds": 0.5}}
        resp = proxy.chat(key, route={"mcp": True}, stream=True)
        assert resp.status_code == 200, resp.text
        chunks = [orjson.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text.endswith("model calls; the last tool calls were not run]") and "deadline" in text
        assert chunks[-1]["choices"][0]["finish_reason"] == "length" and resp.text.rstrip().endswith("data: [DONE]")
        record = proxy.decision(resp.headers["x-autoroute-decision-id"])
        assert record["status"] == 200 and record["tools"]["stopped"] == "deadline" and record["cost_usd"] > 0


def test_streamed_loop_streams_the_final_turn_live(shared: Proxy, upstream: FakeUpstream) -> None:
    key, key_id = shared.new_key()
    upstream.tool_calls.append({"name": "calculator__multiply", "arguments": {"a": 6, "b": 7}})
    upstream.script("gpt-4.1-nano", Fault.slow(0), Fault.slow(0.15))  # the answer's chunks come 0.15 s apart
    body = {"model": MODEL, "messages": ASK, "route": {"mcp": ["calculator"]}, "stream": True, "stream_options": {"include_usage": True}}
    arrived: list[tuple[float, str]] = []
    with httpx.stream(
        "POST", shared.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        arrived = [(time.monotonic(), line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert arrived[-1][1] == "[DONE]"
    chunks = [orjson.loads(e) for _, e in arrived[:-1]]
    texts = [(at, c["choices"][0]["delta"].get("content")) for (at, _), c in zip(arrived, chunks, strict=False) if c["choices"]]
    assert "".join(t or "" for _, t in texts) == upstream.reply
    first_text = next(at for at, t in texts if t)
    assert arrived[-1][0] - first_text > 0.6  # the answer arrived chunk by chunk, not replayed at the end
    assert chunks[-1]["usage"]["prompt_tokens"] > 0 and chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert upstream.received[1].body["messages"][-1]["content"] == "42.0"
    assert all(r.body.get("stream") for r in upstream.received)  # each model call streamed upstream
    record = shared.decision(resp.headers["x-autoroute-decision-id"])
    assert record["status"] == 200 and len(record["tools"]["model_calls"]) == 2 and record["stream"] is True
    day = shared.admin("GET", f"/admin/keys/{key_id}/usage").json()["day"]
    assert day["requests"] == 2 and day["input_tokens"] == chunks[-1]["usage"]["prompt_tokens"] == record["input_tokens"]


def test_streamed_loop_at_its_depth_limit_ends_with_the_note(shared: Proxy, upstream: FakeUpstream) -> None:
    key, _ = shared.new_key()
    upstream.call_tools_forever = {"name": "calculator__add", "arguments": {"a": 1, "b": 2}}
    resp = shared.chat(key, route={"mcp": {"servers": ["calculator"], "max_depth": 2}}, stream=True)
    assert resp.status_code == 200, resp.text
    chunks = [orjson.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "tool loop stopped at its model-call limit after 2 model calls" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks)  # its MCP calls are not the client's
    assert len(upstream.received) == 2


def test_request_urls_are_refused_unless_the_policy_allows_the_host(shared: Proxy, upstream: FakeUpstream) -> None:
    proxy = shared
    if True:
        key, _ = proxy.new_key()
        resp = proxy.chat(key, route={"mcp": {"servers": [{"label": "evil", "url": "http://evil.example/mcp"}]}})
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "mcp_url_not_allowed"
        resp = proxy.chat(key, route={"mcp": {"servers": [{"command": "rm", "args": ["-rf", "/"]}]}})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "route.mcp.servers.0"
        resp = proxy.chat(key, route={"mcp": ["nope"]})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "unknown_mcp_server"
        # A client function may not pose as an MCP tool (its calls would run server-side).
        fake = {"type": "function", "function": {"name": "calculator__evaluate", "parameters": {"type": "object"}}}
        resp = proxy.chat(key, tools=[fake], route={"mcp": ["calculator"]})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "tools"
        assert upstream.received == []
        # The /v1/route dry run takes the same body (and checks route.mcp the same way).
        dry = {"model": "auto", "messages": ASK, "route": {"mcp": ["calculator"], "preference": "cheapest"}}
        resp = httpx.post(proxy.url + "/v1/route", json=dry, headers={"authorization": f"Bearer {key}"})
        assert resp.status_code == 200 and resp.json()["model"], resp.text
        assert upstream.received == []


@pytest.mark.parametrize("stream", [False, True])
def test_n_above_one_is_refused_for_the_loop(shared: Proxy, upstream: FakeUpstream, stream: bool) -> None:
    # The loop follows one conversation (the first choice): with n=2 every model call asked for, and
    # the key paid for, two completions while the client got one choice back.
    key, _ = shared.new_key()
    resp = shared.chat(key, n=2, stream=stream, route={"mcp": ["calculator"]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "n", resp.text
    assert upstream.received == []


def test_request_url_on_an_allowed_host_is_used(tmp_path: Path, environ: dict, upstream: FakeUpstream) -> None:
    with (
        mcp_servers.http_server("memory") as (url, _),
        proxy_with(tmp_path, environ, {}, request_url_hosts=[urlsplit(url).netloc]) as proxy,
    ):
        key, _ = proxy.new_key()
        upstream.tool_calls.append({"name": "mem__remember", "arguments": {"key": "city", "value": "Paris"}})
        resp = proxy.chat(key, route={"mcp": {"servers": [{"label": "mem", "url": url}]}})
        assert resp.status_code == 200, resp.text
        assert upstream.received[1].body["messages"][-1]["content"] == "remembered city"


def test_request_allowed_tools_narrow_but_never_widen_the_keys(shared: Proxy, upstream: FakeUpstream) -> None:
    key, _ = shared.new_key(allowed_tools=["calculator__add", "calculator__multiply"])
    resp = shared.chat(key, route={"mcp": {"allowed_tools": ["calculator__*", "crashy__*"]}})
    assert resp.status_code == 200, resp.text
    assert sorted(offered(upstream)[0]) == ["calculator__add", "calculator__multiply"]
    upstream.reset()
    assert shared.chat(key, route={"mcp": {"allowed_tools": ["calculator__add"]}}).status_code == 200
    assert offered(upstream)[0] == ["calculator__add"]


def test_context_assembler_adds_the_category_prompt_keeps_the_clients_and_narrows_tools(shared: Proxy, upstream: FakeUpstream) -> None:
    prompts = yaml.safe_load((mcp_servers.REPO / "policies" / "prompts.yaml").read_text())
    key, _ = shared.new_key(context_assembler=True)
    mine = {"role": "system", "content": "Answer in French."}
    resp = shared.chat(key, messages=[mine, *ASK], route={"mcp": True})
    assert resp.status_code == 200, resp.text
    category = shared.decision(resp.headers["x-autoroute-decision-id"])["context"]
    ctx = prompts["categories"].get(category) or prompts["default"]
    sent = upstream.received[0].body["messages"]
    assert sent[0] == {"role": "system", "content": ctx["system"]} and sent[1] == mine and sent[2] == ASK[0]
    calculator = ["calculator__add", "calculator__multiply", "calculator__evaluate"]  # (crashy may be down by now)
    got = sorted(n for n in offered(upstream)[0] if n.startswith("calculator__"))
    assert got == sorted(n for n in calculator if any(fnmatch.fnmatchcase(n, p) for p in ctx["tools"]))
    # The request can turn it off for this call.
    upstream.reset()
    assert shared.chat(key, route={"context": False}).status_code == 200
    assert upstream.received[0].body["messages"] == ASK


def test_the_loop_through_a_translated_provider(shared: Proxy, upstream: FakeUpstream) -> None:
    """Anthropic's format: the tools go as Anthropic tools, the result back as a tool_result block."""
    deadline = time.monotonic() + 60
    while httpx.get(shared.url + "/readyz", timeout=5).json()["status"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)  # the store answers (litellm loads with the first request that needs it)
    key, _ = shared.new_key()
    upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "6 * 7"}})
    resp = shared.chat(key, model="anthropic/claude-sonnet-4", route={"mcp": ["calculator"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == upstream.reply
    first, second = upstream.received
    assert first.path.endswith("/messages") and "calculator__evaluate" in [t["name"] for t in first.body["tools"]]
    blocks = [b for m in second.body["messages"] for b in (m["content"] if isinstance(m["content"], list) else ())]
    results = [b for b in blocks if b.get("type") == "tool_result"]
    assert len(results) == 1 and "42" in orjson.dumps(results[0]["content"]).decode()
