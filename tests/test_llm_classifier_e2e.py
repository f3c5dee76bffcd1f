"""The optional LLM classifier wired into the running proxy: it asks the configured cheap
model through dispatch, takes its verdict, and falls back to the heuristic on garbage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from proxy.app import create_app
from proxy.policy import load_policy
from proxy.routing.classify import classify
from proxy.routing.learned import router_for
from tests.conftest import POLICIES, make_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

VAGUE = [{"role": "user", "content": "Take a look at the thing we talked about and sort it out."}]


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    routing = yaml.safe_load((POLICIES / "routing.yaml").read_text())
    routing["llm_classifier"] = {"enabled": True, "model": "openai/gpt-4.1-nano", "min_confidence": 1.0}
    policies = policy_copy(tmp_path, files={"routing.yaml": routing})
    with serving(create_app(make_settings(policy_dir=policies), environ=environ)) as srv:
        yield srv


def route(server: ThreadedServer) -> dict:
    resp = httpx.post(server.url + "/v1/route", json={"model": "auto", "messages": VAGUE}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_verdict_from_the_classifier_model_is_used_and_cached(server: ThreadedServer, upstream: FakeUpstream) -> None:
    upstream.replies["gpt-4.1-nano"] = '{"category": "complex_coding", "complexity": 4}'
    first = route(server)
    asked = upstream.requests_for("gpt-4.1-nano")
    assert len(asked) == 1 and asked[0].body["response_format"] == {"type": "json_object"}
    assert first["category"] == "complex_coding" and first["complexity"] == 4
    assert first["signals"]["llm"]["cached"] is False
    second = route(server)
    assert second["signals"]["llm"]["cached"] is True and len(upstream.requests_for("gpt-4.1-nano")) == 1
    metrics = httpx.get(server.url + "/metrics").text
    assert 'autoroute_llm_classifier_requests_total{outcome="ok"} 1.0' in metrics
    assert 'autoroute_llm_classifier_requests_total{outcome="cache_hit"} 1.0' in metrics


def test_garbage_verdict_keeps_the_heuristic(server: ThreadedServer, upstream: FakeUpstream) -> None:
    upstream.replies["gpt-4.1-nano"] = "I think it is probably about code?"
    decision = route(server)
    assert decision["signals"]["llm"]["error"] == "invalid"
    heuristic = classify({"model": "auto", "messages": VAGUE}, router_for(load_policy(POLICIES, {})))  # the verdict before the LLM
    assert (decision["category"], decision["complexity"]) == (heuristic.category, heuristic.complexity)
    assert 'autoroute_llm_classifier_requests_total{outcome="invalid"} 1.0' in httpx.get(server.url + "/metrics").text
