"""Metrics that dashboards and alerts read are fed by the request path itself.

Nothing here calls a metric setter: the proxy serves real requests and the test reads
/metrics. Each test fails if production code stops feeding the series (the budget gauge was
never set before, the LLM-classifier latency histogram never got a value).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from proxy.app import create_app
from tests.conftest import POLICIES, make_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving
from tests.test_metrics_e2e import scrape, total

MASTER = "mk-fed-0123456789abcdef0123"
ASK = [{"role": "user", "content": "What is the capital of France?"}]
VAGUE = [{"role": "user", "content": "Take a look at the thing we talked about and sort it out."}]


def yaml_price(model_id: str) -> tuple[float, float]:
    """USD per million input and output tokens, read from the shipped YAML (not the code)."""
    for m in yaml.safe_load((POLICIES / "models.yaml").read_text())["models"]:
        if m["id"] == model_id:
            return float(m["input_usd_per_mtok"]), float(m["output_usd_per_mtok"])
    raise AssertionError(f"{model_id} not in policies/models.yaml")


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    routing = yaml.safe_load((POLICIES / "routing.yaml").read_text())
    routing["llm_classifier"] = {"enabled": True, "model": "openai/gpt-4.1-nano", "min_confidence": 1.0}
    observability = yaml.safe_load((POLICIES / "observability.yaml").read_text())
    observability["key_name_labels"] = True
    policies = policy_copy(tmp_path, files={"routing.yaml": routing, "observability.yaml": observability})
    with serving(create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)) as srv:
        yield srv


def test_budget_remaining_gauge_follows_real_spend(server: ThreadedServer) -> None:
    admin = {"authorization": f"Bearer {MASTER}"}
    created = httpx.post(server.url + "/admin/keys", headers=admin, json={"name": "fed", "budget_usd_day": 1.0, "budget_usd_total": 3.0})
    key = created.json()["key"]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    spent = 0.0
    for _ in range(2):
        reply = client.chat.completions.create(model="openai/gpt-4.1", messages=ASK, max_tokens=50)
        price_in, price_out = yaml_price("openai/gpt-4.1")
        spent += (reply.usage.prompt_tokens * price_in + reply.usage.completion_tokens * price_out) / 1e6
    assert spent > 0
    samples = scrape(server)
    day = total(samples, "autoroute_key_budget_remaining_usd", key="fed", period="day")
    whole = total(samples, "autoroute_key_budget_remaining_usd", key="fed", period="total")
    assert day == pytest.approx(1.0 - spent, abs=1e-8)
    assert whole == pytest.approx(3.0 - spent, abs=1e-8)
    assert total(samples, "autoroute_key_budget_limit_usd", key="fed", period="day") == 1.0


def test_llm_classifier_latency_is_observed(server: ThreadedServer, upstream: FakeUpstream) -> None:
    upstream.replies["gpt-4.1-nano"] = '{"category": "complex_coding", "complexity": 4}'
    before = total(scrape(server), "autoroute_llm_classifier_duration_seconds_count")
    resp = httpx.post(
        server.url + "/v1/chat/completions", json={"model": "auto", "messages": VAGUE}, headers={"authorization": f"Bearer {MASTER}"}
    )
    assert resp.status_code == 200, resp.text
    after = scrape(server)
    assert total(after, "autoroute_llm_classifier_duration_seconds_count") - before == 1
    assert total(after, "autoroute_llm_classifier_duration_seconds_sum") > 0
