"""model="auto" end to end: the openai SDK -> classify + select -> the chosen model answers,
and the caller is told what was chosen and why; POST /v1/route; `autoroute route`."""

from __future__ import annotations

import json
import logging
import time

import httpx
import openai
import pytest

from proxy.cli.main import main as cli
from tests.support.fake_upstream import FakeUpstream

ROUTE_FIELDS = {
    "decision_id",
    "category",
    "complexity",
    "level",
    "confidence",
    "model",
    "provider",
    "tier",
    "fallbacks",
    "estimated_input_tokens",
    "estimated_output_tokens",
    "estimated_cost_usd",
    "reason",
    "policy_hash",
    "signals",
}
CODE_TASK = (
    "Write a complete Python implementation of a distributed rate limiter using Redis, with a sliding "
    "window algorithm, support for multiple rate limit tiers, and comprehensive unit tests."
)


def test_auto_answer_comes_from_the_decided_model(client: openai.OpenAI, upstream: FakeUpstream, policy) -> None:  # type: ignore[no-untyped-def]
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    completion = raw.parse()
    chosen = raw.headers["x-autoroute-model"]
    assert completion.model == chosen
    spec = policy.models[chosen]
    sent = upstream.received[-1]
    assert sent.model == spec.api_model_id  # the upstream was asked for exactly that model
    assert raw.headers["x-autoroute-category"] == "qa_retrieval"
    assert 1 <= int(raw.headers["x-autoroute-complexity"]) <= 5
    assert chosen in raw.headers["x-autoroute-reason"]
    assert float(raw.headers["x-autoroute-estimated-cost-usd"]) > 0
    assert raw.headers["x-autoroute-decision-id"].startswith("dec_")
    assert spec.tier >= 2  # a trivial question does not go to a frontier model


def test_auto_streamed(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Summarize: the meeting moved to Tuesday."}],
    )
    chosen = raw.headers["x-autoroute-model"]
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake upstream."
    assert {c.model for c in chunks} == {chosen}
    assert chunks[-1].usage.total_tokens > 0


def test_route_endpoint_decides_without_calling_a_model(proxy_server, upstream: FakeUpstream, policy) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.post(
        proxy_server.url + "/v1/route", timeout=10, json={"model": "auto", "messages": [{"role": "user", "content": CODE_TASK}]}
    )
    assert resp.status_code == 200, resp.text
    d = resp.json()
    assert ROUTE_FIELDS <= set(d)
    assert d["category"] == "complex_coding" and d["complexity"] >= 4
    assert d["tier"] == policy.models[d["model"]].tier and d["provider"] == policy.models[d["model"]].provider
    assert d["model"] not in d["fallbacks"] and len(set(d["fallbacks"])) == len(d["fallbacks"])
    assert d["policy_hash"] == policy.hash
    assert d["estimated_cost_usd"] == pytest.approx(
        policy.models[d["model"]].cost_usd(d["estimated_input_tokens"], d["estimated_output_tokens"]), rel=1e-6
    )
    assert upstream.received == []  # no model was called
    again = httpx.post(proxy_server.url + "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": CODE_TASK}]}).json()
    assert {k: again[k] for k in ROUTE_FIELDS - {"decision_id"}} == {k: d[k] for k in ROUTE_FIELDS - {"decision_id"}}


@pytest.mark.parametrize("how", ["alias", "body", "header"])
def test_preference_options(proxy_server, how: str, policy) -> None:  # type: ignore[no-untyped-def]
    def decide(pref: str) -> dict:
        body: dict = {"model": "auto", "messages": [{"role": "user", "content": CODE_TASK}]}
        headers = {}
        if how == "alias":
            body["model"] = f"auto:{pref}"
        elif how == "body":
            body["route"] = {"preference": pref}
        else:
            headers["x-route-preference"] = pref
        resp = httpx.post(proxy_server.url + "/v1/route", json=body, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    cheap, best = decide("cheapest"), decide("best_quality")
    # named points on the quality dial: best_quality never cheaper or less capable than cheapest
    assert cheap["estimated_cost_usd"] <= best["estimated_cost_usd"]
    assert policy.models[best["model"]].tier <= policy.models[cheap["model"]].tier
    points = policy.routing.quality_points
    assert f"quality target {points.cheapest:.2f}" in cheap["reason"] and f"quality target {points.best_quality:.2f}" in best["reason"]


def test_self_hosted_and_local_options(proxy_server, policy) -> None:  # type: ignore[no-untyped-def]
    msg = [{"role": "user", "content": CODE_TASK}]
    d = httpx.post(proxy_server.url + "/v1/route", json={"model": "auto", "messages": msg, "route": {"self_hosted_only": True}}).json()
    assert policy.models[d["model"]].self_hosted and all(policy.models[m].self_hosted for m in d["fallbacks"])
    d = httpx.post(
        proxy_server.url + "/v1/route", json={"model": "auto", "messages": msg}, headers={"x-route-self-hosted-only": "true"}
    ).json()
    assert policy.models[d["model"]].self_hosted
    d = httpx.post(proxy_server.url + "/v1/route", json={"model": "auto:local", "messages": msg}).json()
    assert d["model"] == "ollama/qwen3:1.7b"


def test_route_body_field_is_not_sent_upstream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], extra_body={"route": {"preference": "cheapest", "max_cost_usd": 0.5}}
    )
    assert "route" not in upstream.received[-1].body


@pytest.mark.parametrize(
    "body,param",
    [
        ({"model": "auto", "route": {"preference": "fastest"}}, "route.preference"),
        ({"model": "auto", "route": {"max_cost_usd": -1}}, "route.max_cost_usd"),
        ({"model": "auto", "route": {"speed": 1}}, "route.speed"),
        ({"model": "auto:smartest"}, "model"),
    ],
)
def test_bad_route_options_are_400_naming_the_field(proxy_server, body: dict, param: str) -> None:  # type: ignore[no-untyped-def]
    body["messages"] = [{"role": "user", "content": "hi"}]
    resp = httpx.post(proxy_server.url + "/v1/chat/completions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param


def test_nothing_capable_is_422_naming_the_constraint(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(
            model="auto:local", messages=[{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"}, image]}]
        )
    assert info.value.code == "no_capable_model"
    assert "image" in info.value.message.lower() or "vision" in info.value.message.lower()
    assert upstream.received == []


def test_decision_log_line_has_no_prompt(client: openai.OpenAI, caplog: pytest.LogCaptureFixture) -> None:
    secret_prompt = "my-very-private-prompt-text-8817"
    with caplog.at_level(logging.INFO, logger="autoroute.decision"):
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": secret_prompt}])
        deadline = time.monotonic() + 5  # the request is accounted just after its response went out
        while not [r for r in caplog.records if r.name == "autoroute.decision"] and time.monotonic() < deadline:
            time.sleep(0.01)
    records = [r for r in caplog.records if r.name == "autoroute.decision"]
    assert records, "one decision line per request"
    decision = records[-1].decision  # type: ignore[attr-defined]
    assert decision["decision_id"] == raw.headers["x-autoroute-decision-id"]
    assert decision["used_model"] == raw.headers["x-autoroute-model"] and decision["status"] == 200
    assert decision["category"] and decision["input_tokens"] > 0 and decision["cost_usd"] > 0
    assert secret_prompt not in json.dumps(decision) and secret_prompt not in records[-1].getMessage()


def test_cli_route_prints_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["route", "--all-available", CODE_TASK]) == 0
    d = json.loads(capsys.readouterr().out)
    assert ROUTE_FIELDS <= set(d) and d["category"] == "complex_coding"


def test_cli_route_from_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    request = {"model": "auto:cheapest", "messages": [{"role": "user", "content": "Classify the sentiment: 'great product'"}]}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert cli(["route", "--all-available", "--file", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["category"] == "classification" and "cheapest" in d["reason"]
