"""The canonical request (proxy/request/canonical.py, proxy/api/chat.py): read once, estimated as sent.

Each test below is a regression test for issue 10 / 11 and fails on the code before it:
the budget tricks with max_completion_tokens vs max_tokens and `n`, the adversarial prompt,
deep JSON, and parameters silently dropped by translated providers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from proxy.api.chat import MAX_JSON_DEPTH, parse_chat_request, to_canonical
from proxy.app import create_app
from proxy.errors import InvalidRequest
from tests.conftest import POLICIES, make_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving
from tests.test_tokens import _crafted

MASTER = "mk-test-master-0123456789abcdef"
HI = [{"role": "user", "content": "What is the capital of France?"}]


def _server(environ: dict, tmp_path: Path, **routing: Any) -> Iterator[ThreadedServer]:
    files = {"routing.yaml": {**yaml.safe_load((POLICIES / "routing.yaml").read_text()), **routing}} if routing else {}
    app = create_app(make_settings(policy_dir=policy_copy(tmp_path, files=files), master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    yield from _server(environ, tmp_path)


def new_key(server: ThreadedServer, **fields: Any) -> str:
    resp = httpx.post(server.url + "/admin/keys", json={"name": "t", **fields}, headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


def chat(server: ThreadedServer, key: str, **body: Any) -> httpx.Response:
    body.setdefault("messages", HI)
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


# ── one reading of the output cap ────────────────────────────────────────────
def test_conflicting_output_caps_are_refused_naming_both(server: ThreadedServer, upstream: FakeUpstream) -> None:
    # Old code: estimated 1 output token, the Anthropic upstream received 4000.
    key = new_key(server, budget_usd_day=0.05)
    resp = chat(server, key, model="anthropic/claude-opus-4", max_completion_tokens=1, max_tokens=4000)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "max_completion_tokens"
    assert "max_tokens" in err["message"] and "max_completion_tokens" in err["message"]
    assert not upstream.requests_for("claude-opus-4-20250514")


def test_the_cap_that_was_estimated_is_the_cap_that_is_sent(server: ThreadedServer, upstream: FakeUpstream) -> None:
    key = new_key(server)
    assert chat(server, key, model="anthropic/claude-sonnet-4", max_completion_tokens=77, max_tokens=77).status_code == 200
    sent = upstream.requests_for("claude-sonnet-4-20250514")[-1].body
    assert sent["max_tokens"] == 77
    route = httpx.post(
        server.url + "/v1/route",
        json={"model": "openai/gpt-4.1", "messages": HI, "max_completion_tokens": 77},
        headers={"authorization": f"Bearer {MASTER}"},
    ).json()
    assert route["estimated_output_tokens"] == 77


# ── n multiplies the estimate ────────────────────────────────────────────────
def test_n_is_in_the_estimate_so_the_budget_holds(server: ThreadedServer, upstream: FakeUpstream) -> None:
    # n=128 x 100 output tokens on gpt-4.1 ($8/M) is $0.10 of output: over a $0.05 budget.
    # Old code estimated $0.0008 and admitted it (20 concurrent recorded $2.05 against $0.05).
    key = new_key(server, budget_usd_day=0.05)
    resp = chat(server, key, model="openai/gpt-4.1", n=128, max_tokens=100)
    assert resp.status_code == 429 and resp.json()["error"]["type"] == "budget_exceeded"
    assert not upstream.requests_for("gpt-4.1")
    assert chat(server, key, model="openai/gpt-4.1", n=2, max_tokens=100).status_code == 200


def test_an_uncapped_named_request_reserves_the_policy_default(server: ThreadedServer, upstream: FakeUpstream) -> None:
    # claude-opus-4: $75/M output; 1024 default output tokens = $0.077 > $0.05.
    key = new_key(server, budget_usd_day=0.05)
    resp = chat(server, key, model="anthropic/claude-opus-4")
    assert resp.status_code == 429 and resp.json()["error"]["type"] == "budget_exceeded"


def test_reasoning_models_reserve_their_hidden_tokens(server: ThreadedServer, upstream: FakeUpstream) -> None:
    # o4-mini: $4.40/M output; 1024 x hidden_reasoning_factor 4 = $0.018 > $0.01 (1024 alone: $0.0045).
    key = new_key(server, budget_usd_day=0.01)
    resp = chat(server, key, model="openai/o4-mini")
    assert resp.status_code == 429 and resp.json()["error"]["type"] == "budget_exceeded"
    assert chat(server, key, model="openai/o4-mini", max_completion_tokens=500).status_code == 200  # the cap bounds it


# ── the input estimate cannot be fooled ──────────────────────────────────────
def test_a_prompt_crafted_against_a_sampler_is_charged_its_real_size(server: ThreadedServer, upstream: FakeUpstream) -> None:
    # 400k characters, easy prose where the old sampler looked and CJK elsewhere: ~374k tokens
    # ($0.75 on gpt-4.1) estimated as ~89k ($0.18) before; a $0.50 budget admitted it.
    text = _crafted(400_000, "這是一個專門設計來欺騙取樣器的測試文本，每個字都很昂貴。")
    key = new_key(server, budget_usd_day=0.5)
    resp = chat(server, key, model="openai/gpt-4.1", max_tokens=10, messages=[{"role": "user", "content": text}])
    assert resp.status_code == 429 and resp.json()["error"]["type"] == "budget_exceeded"


# ── parse-time refusals ──────────────────────────────────────────────────────
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 256, 1000])
def test_deeply_nested_json_is_a_400_at_parse(server: ThreadedServer, upstream: FakeUpstream, depth: int) -> None:
    # Issue 11 item 7: 256-1024 levels parsed, then failed when forwarded (500).
    nested = "[" * depth + "]" * depth
    raw = '{"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "metadata": ' + nested + "}"
    resp = httpx.post(
        server.url + "/v1/chat/completions",
        content=raw,
        headers={"authorization": f"Bearer {new_key(server)}", "content-type": "application/json"},
    )
    assert resp.status_code == 400 and "nested deeper" in resp.json()["error"]["message"]


def test_reasonable_nesting_and_brackets_in_text_pass() -> None:
    schema: dict = {"type": "object"}
    for _ in range(20):
        schema = {"type": "object", "properties": {"x": schema}}
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "[[[[{{{{" * 100}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }
    import orjson

    parse_chat_request(orjson.dumps(body))  # no error


def test_canonical_request_is_immutable_and_renders_what_it_read() -> None:
    body = parse_chat_request(
        b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9, "n": 2, '
        b'"temperature": 0.5, "route": {"preference": "cheapest"}, "user": "agent-7", "stream": true, "stream_options": {"include_usage": true}}'
    )
    req = to_canonical(body, {"x-task-id": "t1"})
    with pytest.raises(AttributeError):
        req.n = 1  # type: ignore[misc]
    assert (req.output_cap, req.n, req.agent, req.task_id, req.include_usage) == (9, 2, "agent-7", "t1", True)
    sent = req.render()
    assert sent["max_completion_tokens"] == 9 and "max_tokens" not in sent and sent["n"] == 2 and sent["temperature"] == 0.5
    assert "route" not in sent and sent["stream"] is True
    with pytest.raises(InvalidRequest):
        parse_chat_request(
            b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "max_completion_tokens": 6}'
        )


# ── parameters a translated provider would drop ──────────────────────────────
def test_a_named_model_that_cannot_honour_n_or_logprobs_is_a_400(server: ThreadedServer, upstream: FakeUpstream) -> None:
    # Issue 11 item 12: Anthropic answered 200 with one choice and logprobs null.
    key = new_key(server)
    for extra, param in (({"n": 3}, "n"), ({"logprobs": True}, "logprobs")):
        resp = chat(server, key, model="anthropic/claude-sonnet-4", **extra)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param and resp.json()["error"]["code"] == "unsupported_parameter"
    assert not upstream.requests_for("claude-sonnet-4-20250514")


def test_auto_only_routes_to_models_that_support_the_request(server: ThreadedServer, upstream: FakeUpstream) -> None:
    key = new_key(server)
    text = [{"role": "user", "content": "Write a long, moving poem about the sea and the people who love it."}]
    for prefer in ("auto:best_quality", "auto:balanced", "auto:cheapest"):
        resp = chat(server, key, model=prefer, n=2, logprobs=True, messages=text)
        assert resp.status_code == 200, resp.text
        used = resp.headers["x-autoroute-model"]
        assert not used.startswith(("anthropic/", "google/")), used


def test_policy_drop_sends_without_the_parameter_and_says_so(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    for srv in _server(environ, tmp_path, unsupported_params="drop"):
        resp = chat(srv, MASTER, model="anthropic/claude-sonnet-4", n=3, logprobs=True)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-autoroute-dropped-params"] == "logprobs,n"
        sent = upstream.requests_for("claude-sonnet-4-20250514")[-1].body
        assert "n" not in sent and "logprobs" not in sent


def test_the_first_anthropic_stream_chunk_carries_the_assistant_role(server: ThreadedServer, upstream: FakeUpstream) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=new_key(server), max_retries=0)
    chunks = list(client.chat.completions.create(model="anthropic/claude-sonnet-4", messages=HI, stream=True))
    first = next(c for c in chunks if c.choices)
    assert first.choices[0].delta.role == "assistant"
