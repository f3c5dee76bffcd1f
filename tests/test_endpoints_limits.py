"""Keys, rpm limits, budgets, metrics and decision records hold on every inbound API."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
CALLS = {
    "chat": ("/v1/chat/completions", {"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}]}),
    "responses": ("/v1/responses", {"model": "auto", "input": "What is 2+2?"}),
    "messages": ("/v1/messages", {"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
    "embeddings": ("/v1/embeddings", {"model": "auto", "input": ["a", "b"]}),
}


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    app = create_app(make_settings(policy_dir=policy_copy(tmp_path), master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


def new_key(server: ThreadedServer, **fields: object) -> str:
    r = httpx.post(server.url + "/admin/keys", headers={"authorization": f"Bearer {MASTER}"}, json={"name": "lim", **fields}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["key"]


def post(server: ThreadedServer, key: str, endpoint: str, **fields: object) -> httpx.Response:
    path, body = CALLS[endpoint]
    body = {**body, **fields}
    return httpx.post(server.url + path, headers={"authorization": f"Bearer {key}"}, json=body, timeout=60)


@pytest.mark.parametrize("order", [["chat", "responses", "messages", "embeddings"], ["embeddings", "messages", "responses", "chat"]])
def test_rpm_5_admits_exactly_5_across_endpoints(server: ThreadedServer, order: list[str]) -> None:
    key = new_key(server, rpm=5)
    statuses = [(ep, post(server, key, ep).status_code) for ep in itertools.islice(itertools.cycle(order), 9)]
    assert [s for _, s in statuses].count(200) == 5, statuses
    assert [s for _, s in statuses[5:]] == [429] * 4
    assert post(server, key, "messages").json()["error"]["type"] == "rate_limit_error"  # Anthropic-shaped 429


@pytest.mark.parametrize("endpoint", list(CALLS))
def test_budget_refuses_every_endpoint(server: ThreadedServer, endpoint: str, upstream: FakeUpstream) -> None:
    """A paid model (auto would fall back to the free local one, which is budget homeostasis)."""
    model = "openai/text-embedding-3-small" if endpoint == "embeddings" else "openai/gpt-4.1-nano"
    key = new_key(server, budget_usd_total=1e-12)
    r = post(server, key, endpoint, model=model)
    assert r.status_code == 429, r.text
    assert not upstream.received  # refused before any upstream call


@pytest.mark.parametrize("endpoint", list(CALLS))
def test_unknown_key_is_401_on_every_endpoint(server: ThreadedServer, endpoint: str) -> None:
    assert post(server, "sk-ar-not-a-key", endpoint).status_code == 401


def test_every_endpoint_in_metrics_and_decisions(server: ThreadedServer) -> None:
    key = new_key(server)
    ids = {}
    for endpoint in CALLS:
        r = post(server, key, endpoint)
        assert r.status_code == 200, r.text
        ids[endpoint] = r.headers["x-autoroute-decision-id"]
    count = httpx.post(
        server.url + "/v1/messages/count_tokens",
        headers={"x-api-key": key},
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert count.status_code == 200
    metrics = httpx.get(server.url + "/metrics").text
    assert any(line.startswith("autoroute_requests_total{") and 'endpoint="count_tokens"' in line for line in metrics.splitlines())
    label = {"chat": "chat_completions"}  # the vocabulary's names (proxy/vocab.py Endpoint)
    for endpoint in CALLS:
        assert any(
            line.startswith("autoroute_requests_total{")
            and f'endpoint="{label.get(endpoint, endpoint)}"' in line
            and 'outcome="ok"' in line
            for line in metrics.splitlines()
        ), endpoint
    data = httpx.get(server.url + "/admin/decisions?limit=50", headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
    by_id = {d["decision_id"]: d for d in data}
    for endpoint, decision_id in ids.items():
        assert by_id[decision_id]["endpoint"] == label.get(endpoint, endpoint) and by_id[decision_id]["status"] == 200


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"model": "auto", "messages": [{"role": "user", "content": "Write a Python function to reverse a list"}]}, {}),
        ({"model": "auto", "input": "Write a Python function to reverse a list"}, {}),
        (
            {"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": "Write a Python function to reverse a list"}]},
            {"anthropic-version": "2023-06-01"},
        ),
    ],
)
def test_route_dry_run_takes_each_body_shape(server: ThreadedServer, body: dict, headers: dict) -> None:
    key = new_key(server)
    r = httpx.post(server.url + "/v1/route", headers={"authorization": f"Bearer {key}", **headers}, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["category"] == "complex_coding" and r.headers["x-autoroute-decision-id"] == r.json()["decision_id"]


def test_auto_embeddings_is_the_keys_fixed_model(server: ThreadedServer, upstream: FakeUpstream) -> None:
    """auto = the policy's embedding_model, or its local one for self_hosted_only keys; the same
    model on every call (vectors from different models cannot be mixed)."""
    local = new_key(server, self_hosted_only=True)
    models = {post(server, local, "embeddings").json()["model"] for _ in range(3)}
    assert models == {"ollama/nomic-embed-text"}
    assert upstream.received[-1].body["model"] == "nomic-embed-text" and upstream.received[-1].path.endswith("/v1/embeddings")
    r = post(server, local, "embeddings", model="openai/text-embedding-3-small")
    assert r.status_code == 403  # a self-hosted-only key may not name a hosted embedder
    assert post(server, new_key(server), "embeddings").json()["model"] == "openai/text-embedding-3-small"
