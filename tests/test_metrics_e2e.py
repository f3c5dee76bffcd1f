"""/metrics after real requests through the proxy: auto-routed, failed over, rate-limited.
Every counter moves by exactly what happened, and promtool accepts the scrape."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving
from tests.test_deploy import promtool  # noqa: F401  (fixture: required in CI, skipped elsewhere)

MASTER = "mk-metrics-0123456789abcdef"
ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    policies = policy_copy(tmp_path, files={"dispatch.yaml": {"retries": 0, "retry_base_delay": 0.01}})
    with serving(create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)) as srv:
        yield srv


def scrape(server: ThreadedServer) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def test_counters_move_by_the_right_amounts(server: ThreadedServer, upstream: FakeUpstream, policy) -> None:  # type: ignore[no-untyped-def]
    key = httpx.post(server.url + "/admin/keys", headers={"authorization": f"Bearer {MASTER}"}, json={"name": "metrics", "rpm": 2}).json()[
        "key"
    ]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    plan = httpx.post(server.url + "/v1/route", json={"model": "auto", "messages": ASK}, headers={"authorization": f"Bearer {key}"}).json()
    primary, fallback = plan["model"], plan["fallbacks"][0]
    before = scrape(server)

    ok = client.chat.completions.create(model="auto", messages=ASK)  # 1: auto-routed
    upstream.script(policy.models[primary].api_model_id, Fault.status(500))
    failed_over = client.chat.completions.with_raw_response.create(model="auto", messages=ASK)  # 2: fails over
    assert failed_over.headers["x-autoroute-model"] == fallback
    with pytest.raises(openai.RateLimitError):  # 3: rate-limited
        client.chat.completions.create(model="auto", messages=ASK)

    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("autoroute_requests_total", outcome="ok", status="2xx", category="qa_retrieval") == 2
    assert delta("autoroute_requests_total", outcome="rate_limited", status="4xx") == 1
    assert delta("autoroute_limit_rejections_total", limit="requests_per_minute", kind="rate_limit") == 1
    assert delta("autoroute_routing_decisions_total", category="qa_retrieval", model=primary) == 3
    assert delta("autoroute_fallbacks_total", from_model=primary, to_model=fallback) == 1
    assert delta("autoroute_upstream_errors_total", kind="server_error") == 1
    assert delta("autoroute_upstream_attempts_total", result="ok") == 2
    assert delta("autoroute_upstream_attempts_total", result="error", model=primary) == 1
    used = failed_over.parse()
    assert delta("autoroute_tokens_total", model=primary, direction="input") == ok.usage.prompt_tokens
    assert delta("autoroute_tokens_total", model=fallback, direction="output") == used.usage.completion_tokens
    expected_cost = policy.models[fallback].cost_usd(used.usage.prompt_tokens, used.usage.completion_tokens)
    assert delta("autoroute_cost_usd_total", model=fallback) == pytest.approx(expected_cost, rel=1e-9)
    assert delta("autoroute_proxy_overhead_seconds_count") == 3
    assert delta("autoroute_request_duration_seconds_count", stream="false") == 3
    assert total(after, "autoroute_requests_in_flight") == 0
    assert delta("autoroute_limiter_store_duration_seconds_count", operation="reserve") >= 2


def test_promtool_accepts_a_real_scrape(server: ThreadedServer, promtool: str, tmp_path: Path) -> None:
    openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER, max_retries=0).chat.completions.create(model="auto", messages=ASK)
    text = httpx.get(server.url + "/metrics").text
    assert "autoroute_requests_total" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_on_a_separate_port(environ: dict, upstream: FakeUpstream) -> None:
    from tests.support.servers import free_port

    port = free_port()
    app = create_app(make_settings(metrics_port=port), environ=environ)
    with serving(app) as srv:
        httpx.post(srv.url + "/v1/chat/completions", json={"model": "openai/gpt-4.1", "messages": ASK})
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert (
        'autoroute_requests_total{category="none",endpoint="chat_completions",model="openai/gpt-4.1",outcome="ok",preference="none",status="2xx"} 1.0'
        in text
    )
