"""What a key is charged equals what the upstream reported using, times the registry's prices.

The expected cost is computed here from policies/models.yaml as written (USD per million
tokens) and from the usage the fake upstream put in its answer (recorded per request), never
with the code under test (`ModelSpec.cost_usd`, `Plan.estimated_cost_usd`). The requests cap
their output far above what the upstream uses, so the admission estimate is visibly different
from the real cost: a proxy that settles at its estimate fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from proxy.app import create_app
from tests.conftest import POLICIES, make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import fast_dispatch, policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
ASK = [{"role": "user", "content": "Name three rivers in Europe and say which is longest."}]
PRICES = {
    m["id"]: (m["input_usd_per_mtok"], m["output_usd_per_mtok"]) for m in yaml.safe_load((POLICIES / "models.yaml").read_text())["models"]
}
UPSTREAM_NAME = {m["id"]: m["api_model_id"] for m in yaml.safe_load((POLICIES / "models.yaml").read_text())["models"]}
MODELS = ["openai/gpt-4.1", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"]


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    policies = policy_copy(tmp_path, files={"dispatch.yaml": fast_dispatch()})
    app = create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


def admin(server: ThreadedServer, method: str, path: str, **kw: Any) -> httpx.Response:
    resp = httpx.request(method, server.url + path, headers={"authorization": f"Bearer {MASTER}"}, timeout=10, **kw)
    assert resp.status_code < 300, resp.text
    return resp


def settled_usage(server: ThreadedServer, key_id: str, model: str, requests: int) -> dict[str, Any]:
    """The key's usage once `requests` requests of `model` are accounted (accounting runs after
    the response has gone out, so it may trail the client by a moment)."""
    deadline = time.monotonic() + 5
    while True:
        usage = admin(server, "GET", f"/admin/keys/{key_id}/usage").json()
        done = usage["day"]["by_model"].get(model, {}).get("requests", 0) >= requests and usage["reserved_cost_usd"] == 0
        if done or time.monotonic() > deadline:
            return usage
        time.sleep(0.02)


def expected_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    usd_in, usd_out = PRICES[model]
    return (prompt_tokens * usd_in + completion_tokens * usd_out) / 1_000_000


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_recorded_spend_equals_upstream_usage_times_registry_prices(server: ThreadedServer, upstream: FakeUpstream, stream: bool) -> None:
    created = admin(server, "POST", "/admin/keys", json={"name": "spend"}).json()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=created["key"], max_retries=0, timeout=30)
    want_total, estimated_total = 0.0, 0.0
    for model in MODELS:
        upstream.reset()
        resp = client.chat.completions.with_raw_response.create(model=model, messages=ASK, max_tokens=4000, stream=stream)
        if stream:
            list(resp.parse())
        else:
            resp.parse()
        estimated_total += float(resp.headers.get("x-autoroute-estimated-cost-usd") or 0) or expected_cost(model, 0, 4000)
        [received] = upstream.requests_for(UPSTREAM_NAME[model])
        assert received.usage is not None and received.usage[1] > 0
        want_total += expected_cost(model, *received.usage)
        usage = settled_usage(server, created["id"], model, 1)
        assert usage["day"]["by_model"][model]["cost_usd"] == pytest.approx(expected_cost(model, *received.usage), abs=1e-8)
        assert usage["day"]["by_model"][model]["input_tokens"] == received.usage[0]
        assert usage["day"]["by_model"][model]["output_tokens"] == received.usage[1]
    usage = admin(server, "GET", f"/admin/keys/{created['id']}/usage").json()
    assert usage["day"]["cost_usd"] == pytest.approx(want_total, abs=1e-8)
    assert usage["total_cost_usd"] == pytest.approx(want_total, abs=1e-8)
    assert usage["reserved_cost_usd"] == 0  # nothing left reserved once the requests are over
    assert abs(estimated_total - want_total) > 1e-4, "estimate and real cost coincide: the test could not tell them apart"


def test_no_reservation_outlives_its_request_however_it_ends(server: ThreadedServer, upstream: FakeUpstream) -> None:
    """Refused upstream (4xx), exhausted (5xx), client gone before the first byte and mid-stream:
    afterwards nothing of the key stays reserved, and only real usage was charged."""
    created = admin(server, "POST", "/admin/keys", json={"name": "exits", "budget_usd_day": 50}).json()
    auth = {"authorization": f"Bearer {created['key']}"}
    body = {"model": "openai/gpt-4.1", "messages": ASK, "max_tokens": 4000}
    url = server.url + "/v1/chat/completions"
    upstream.script("gpt-4.1", Fault.status(400))
    assert httpx.post(url, json=body, headers=auth, timeout=10).status_code == 400
    upstream.script("gpt-4.1", *[Fault.status(503)] * 10)
    assert httpx.post(url, json=body, headers=auth, timeout=30).status_code == 502
    upstream.reset()
    upstream.script("gpt-4.1", Fault.slow_first(3))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json={**body, "stream": True}, headers=auth, timeout=0.5)
    upstream.script("gpt-4.1", Fault.slow(0.5))
    with httpx.stream("POST", url, json={**body, "stream": True}, headers=auth, timeout=10) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith("data: {")
    deadline = time.monotonic() + 5
    while (usage := admin(server, "GET", f"/admin/keys/{created['id']}/usage").json())["reserved_cost_usd"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert usage["reserved_cost_usd"] == 0, usage
    assert usage["day"]["cost_usd"] < 0.01, usage  # the disconnected stream's few tokens, not 4,000-token estimates


def test_the_output_cap_is_reserved_up_front_so_a_huge_max_tokens_cannot_overrun_the_budget(
    server: ThreadedServer, upstream: FakeUpstream
) -> None:
    created = admin(server, "POST", "/admin/keys", json={"name": "cap", "budget_usd_total": 0.05}).json()
    auth = {"authorization": f"Bearer {created['key']}"}
    url = server.url + "/v1/chat/completions"
    # 100,000 output tokens of gpt-4.1 at the YAML's price: far over the $0.05 left
    assert expected_cost("openai/gpt-4.1", 0, 100_000) > 0.05
    resp = httpx.post(url, json={"model": "openai/gpt-4.1", "messages": ASK, "max_tokens": 100_000}, headers=auth, timeout=10)
    assert resp.status_code == 429, resp.text
    assert not upstream.received  # refused before any upstream call
    assert httpx.post(url, json={"model": "openai/gpt-4.1", "messages": ASK, "max_tokens": 50}, headers=auth, timeout=10).status_code == 200
    decision = httpx.post(server.url + "/v1/route", json={"model": "auto", "messages": ASK, "max_tokens": 3333}, headers=auth).json()
    assert decision["estimated_output_tokens"] == 3333, decision
