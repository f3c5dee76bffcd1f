"""proxy/observe/metrics.py and proxy/observe/export.py: label sets stay bounded under garbage,
nothing touches the default registry, names follow the convention, and /metrics is served in
both formats, on the app and on a separate port. (Each event's series: tests/test_metrics.py.)"""

from __future__ import annotations

import re
import socket
import urllib.request
from types import SimpleNamespace

import httpx
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from proxy.observe.export import metrics_route, render, start_metrics_server
from proxy.observe.metrics import CATEGORIES, ENDPOINTS, ERROR_KINDS, LIMITS, OUTCOMES, PREFERENCES, PROVIDERS, Metrics
from tests.support.metrics_fixtures import DEPLOYMENTS, MODELS, m, mk  # noqa: F401  (fixtures)


def families(body: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


# ── label sets stay bounded ──────────────────────────────────────────────────────────
def test_labels_stay_bounded_under_garbage(mk: Metrics) -> None:
    junk = [f"junk-{i}-" + "x" * 50 for i in range(40)]
    for i, j in enumerate(junk):
        mk.request_started()
        mk.observe_request(outcome=j, status=600 + i, total_s=0.1, category=j, model=j, preference=j, endpoint=j)
        mk.observe_route(category=j, model=j, preference=j, confidence=0.5, overrides=[j])
        mk.observe_llm_classifier(j)
        mk.observe_upstream_attempt(deployment=j, provider=j, model=j, seconds=0.1, error=j, ttft_s=0.1)
        mk.retried(j)
        mk.fell_back(j, j)
        mk.set_cooldown(j, "open")
        mk.observe_usage(model=j, input_tokens=1, output_tokens=1, cost_usd=0.1, key=j)
        mk.rejected(j)
        mk.set_budget_remaining(j, j, 1.0, 2.0)
        mk.observe_store(j, 0.001, failure=j)
        mk.decision_log_error(j)
    allowed = {
        "model": set(MODELS) | {"none", "other"},
        "from_model": set(MODELS) | {"none", "other"},
        "to_model": set(MODELS) | {"none", "other"},
        "category": set(CATEGORIES) | {"other"},
        "preference": set(PREFERENCES) | {"other"},
        "outcome": set(OUTCOMES) | {"other", "cache_hit", "timeout", "error", "invalid"},
        "status": {"1xx", "2xx", "3xx", "4xx", "5xx", "other"},
        "provider": set(PROVIDERS) | {"none", "other"},
        "kind": set(ERROR_KINDS) | set(LIMITS.values()) | {"other"},
        "limit": set(LIMITS) | {"other"},
        "deployment": set(DEPLOYMENTS) | {"other"},
        "key": {"junk-0-" + "x" * 50, "junk-1-" + "x" * 50, "junk-2-" + "x" * 50, "other"},
        "period": {"day", "month", "total", "task", "other"},
        "direction": {"input", "output"},
        "constraint": {"other"},
        "operation": {"other"},
        "action": {"other"},
        "reason": {"write_error", "dropped", "other"},
        "stream": {"true", "false"},
        "endpoint": set(ENDPOINTS) | {"other"},
        "result": {"ok", "error"},
        "le": None,
    }
    seen_labels = set()
    for fam in families(render(mk.registry)[0]).values():
        for sample in fam.samples:
            for label, value in sample.labels.items():
                assert label in allowed, f"{sample.name}: unexpected label {label}"
                seen_labels.add(label)
                if allowed[label] is not None:
                    assert value in allowed[label], f"{sample.name}{{{label}={value!r}}} is not bounded"
    assert {"key", "model", "deployment", "kind", "constraint"} <= seen_labels


def test_no_default_registry_and_naming_convention() -> None:
    before = set(REGISTRY._names_to_collectors)
    a = Metrics(CollectorRegistry())
    Metrics(CollectorRegistry())  # a second app in the same process: no duplicate-name clash
    assert set(REGISTRY._names_to_collectors) == before
    assert not any(name.startswith("autoroute_") for name in before)
    units = ("_total", "_seconds", "_usd", "_ratio", "_info", "_up", "_in_flight", "_state")
    for fam in a.registry.collect():
        assert re.fullmatch(r"autoroute_[a-z0-9_]+", fam.name), fam.name
        name = fam.name + ("_total" if fam.type == "counter" else "")
        assert name.endswith(units), f"{name}: no unit suffix"
        assert fam.documentation, f"{fam.name}: no help text"


# ── exposition ───────────────────────────────────────────────────────────────────────
def _app(metrics: Metrics) -> Starlette:
    app = Starlette(routes=[metrics_route()])
    app.state.autoroute = SimpleNamespace(metrics=metrics)
    return app


async def test_metrics_endpoint_text_and_openmetrics(m: Metrics) -> None:
    m.rejected("tokens_per_minute")
    transport = httpx.ASGITransport(app=_app(m))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert 'autoroute_limit_rejections_total{kind="rate_limit",limit="tokens_per_minute"} 1.0' in r.text
        r = await client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.text.rstrip().endswith("# EOF")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_separate_metrics_port(m: Metrics) -> None:
    m.fell_back("openai/gpt-4.1", "openai/gpt-4.1-nano")
    port = _free_port()
    server, thread = start_metrics_server(port, "127.0.0.1", m.registry)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'autoroute_fallbacks_total{from_model="openai/gpt-4.1",to_model="openai/gpt-4.1-nano"} 1.0' in body
    thread.join(timeout=5)
    assert not thread.is_alive()
