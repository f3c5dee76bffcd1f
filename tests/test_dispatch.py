"""Dispatch against the fake upstream driven into faults, through the real proxy and the
openai SDK: what the client sees, how many attempts the upstream got, the waits honoured,
and the accounting (AppState.record is spied on)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.request.appstate import AppState
from proxy.request.exchange import Exchange
from tests.support.dispatching import (
    FAST_RETRIES,
    MODEL,
    MSG,
    deployment,
    fast,
    nano_policy,
    proxy,
    sdk,
    upstream_name,
    wait_for,
)
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import ThreadedServer, free_port

SECRETS = ("sk-test-openai-0123456789abcdef", "sk-ant-test-0123456789abcdef", "gm-test-0123456789abcdef")


def header_attempts(resp: Any) -> list[str]:
    return resp.headers["x-autoroute-attempts"].split(",")


def assert_accounted(ex: Exchange, state: AppState, model_id: str, sent_prompt: int | None = None) -> None:
    """Usage is the provider's (not counted), cost is the answering model's price."""
    assert ex.status == 200 and ex.outcome.model is not None and ex.outcome.model.id == model_id
    assert ex.usage is not None and not ex.usage.counted and ex.usage.completion_tokens == 5
    model = state.policy.models[model_id]
    assert ex.cost_usd == pytest.approx(model.cost_usd(ex.usage.prompt_tokens, ex.usage.completion_tokens))
    assert ex.cost_usd > 0 or model.input_usd_per_mtok == 0
    answered = ex.outcome.attempts[-1]
    assert answered.error is None and answered.usage is not None and answered.seconds > 0
    assert ex.outcome.upstream_seconds == pytest.approx(sum(a.seconds for a in ex.outcome.attempts))
    assert ex.total_seconds >= ex.outcome.upstream_seconds + ex.outcome.backoff_seconds


# ── non-streamed ──────────────────────────────────────────────────────────────
def test_503_then_success_is_retried_on_the_same_deployment(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.status(503))
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        resp = sdk(server.url).chat.completions.with_raw_response.create(model="openai/gpt-4.1", messages=MSG)
        assert resp.parse().choices[0].message.content == "Hello from the fake upstream."
        assert header_attempts(resp) == ["openai/gpt-4.1@openai", "openai/gpt-4.1@openai"]
    assert len(upstream.requests_for("gpt-4.1")) == 2
    (ex,) = recorded
    assert_accounted(ex, state, "openai/gpt-4.1")
    assert ex.outcome.retries == 1 and ex.outcome.fallbacks == 0
    first, second = ex.outcome.attempts
    assert first.error is not None and first.error.status == 503 and first.error.kind == "server_error"
    assert second.retry == 1 and 0 <= second.backoff_s <= FAST_RETRIES["retry_base_delay"]
    assert ex.outcome.backoff_seconds == pytest.approx(second.backoff_s)


def test_500s_exhaust_the_deployment_then_fall_back_to_last_resort(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("claude-sonnet-4-20250514", *[Fault.status(500)] * 10)
    with proxy(environ, fast(tmp_path, dispatch={"last_resort": "openai/gpt-4.1-nano"})) as (server, recorded, state):
        resp = sdk(server.url).chat.completions.with_raw_response.create(model="anthropic/claude-sonnet-4", messages=MSG)
        completion = resp.parse()
        assert completion.model == "openai/gpt-4.1-nano"
        assert resp.headers["x-autoroute-model"] == "openai/gpt-4.1-nano"
        assert header_attempts(resp) == ["anthropic/claude-sonnet-4@anthropic"] * 3 + ["openai/gpt-4.1-nano@openai"]
    assert len(upstream.requests_for("claude-sonnet-4-20250514")) == 3  # 1 + retries, then move on
    assert len(upstream.requests_for("gpt-4.1-nano")) == 1
    (ex,) = recorded
    assert_accounted(ex, state, "openai/gpt-4.1-nano")
    assert ex.outcome.retries == 2 and ex.outcome.fallbacks == 1
    assert completion.usage is not None and completion.usage.prompt_tokens == ex.usage.prompt_tokens


def test_429_retry_after_is_honoured(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.status(429, retry_after=1))
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        started = time.monotonic()
        sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG)
        elapsed = time.monotonic() - started
    first, second = upstream.requests_for("gpt-4.1")
    assert 1.0 <= second.at - first.at < 1.4  # waited Retry-After, not the 10 ms backoff
    (ex,) = recorded
    assert_accounted(ex, state, "openai/gpt-4.1")
    assert ex.outcome.backoff_seconds == pytest.approx(1.0)
    assert ex.outcome.attempts[0].error.kind == "rate_limited"
    # the wait is not upstream time: proxy overhead = total - upstream - backoff stays small
    assert ex.outcome.upstream_seconds < 0.5 and elapsed >= 1.0


def test_retry_after_within_the_cap_is_waited_for(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.status(429, retry_after=0.3))
    with proxy(environ, fast(tmp_path, dispatch={"retry_after_cap_s": 1})) as (server, _, _state):
        sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG)
    first, second = upstream.requests_for("gpt-4.1")
    assert 0.3 <= second.at - first.at < 0.7


def test_retry_after_over_the_cap_is_not_waited_for(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    """Issue 11 item 6: the old code slept the capped Retry-After and tried the same deployment
    again; a wait longer than the cap now ends the deployment's turn at once, and the client gets
    the upstream's Retry-After to decide for itself."""
    upstream.script("gpt-4.1", Fault.status(429, retry_after=30))
    with proxy(environ, fast(tmp_path, dispatch={"retry_after_cap_s": 2})) as (server, _, _state):
        started = time.monotonic()
        resp = httpx.post(server.url + "/v1/chat/completions", json={"model": "openai/gpt-4.1", "messages": MSG}, timeout=10)
        took = time.monotonic() - started
    assert resp.status_code == 502 and resp.headers["retry-after"] == "30", resp.text
    assert took < 1.5 and len(upstream.requests_for("gpt-4.1")) == 1  # the capped wait alone would be 2 s


def test_hang_past_read_timeout_is_cut_and_retried(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.hang(3))
    policy = fast(tmp_path, deployments={"openai": {"timeouts": {"connect_s": 1, "read_s": 0.3}}})
    with proxy(environ, policy) as (server, recorded, state):
        started = time.monotonic()
        sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG)
        assert time.monotonic() - started < 1.5
    hung, answered = upstream.requests_for("gpt-4.1")
    wait_for(lambda: hung.disconnected_at is not None)  # the timed-out call's connection was closed
    assert hung.disconnected_at - hung.at < 0.8 and answered.completed
    (ex,) = recorded
    assert_accounted(ex, state, "openai/gpt-4.1")
    assert ex.outcome.attempts[0].error.kind == "timeout" and 0.25 < ex.outcome.attempts[0].seconds < 0.8


def test_refused_port_moves_to_the_next_deployment(
    environ: dict, upstream: FakeUpstream, upstream_server: ThreadedServer, tmp_path: Path
) -> None:
    dead = deployment("d1", f"http://127.0.0.1:{free_port()}", priority=1)
    live = deployment("d2", upstream_server.url, priority=2)
    with proxy(environ, nano_policy(tmp_path, upstream_server.url, [dead, live])) as (server, recorded, state):
        resp = sdk(server.url).chat.completions.with_raw_response.create(model=MODEL, messages=MSG)
        assert resp.parse().choices[0].message.content == "Hello from the fake upstream."
        assert header_attempts(resp) == [f"{MODEL}@d1"] * 3 + [f"{MODEL}@d2"]
    assert len(upstream.requests_for(upstream_name("d2"))) == 1
    (ex,) = recorded
    assert_accounted(ex, state, MODEL)
    assert [a.error.kind for a in ex.outcome.attempts[:3]] == ["connect"] * 3
    assert ex.outcome.fallbacks == 0 and ex.outcome.retries == 2  # another deployment, same model


def test_malformed_json_then_success(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.malformed())
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        completion = sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG)
        assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert len(upstream.requests_for("gpt-4.1")) == 2
    (ex,) = recorded
    assert_accounted(ex, state, "openai/gpt-4.1")
    assert ex.outcome.attempts[0].error.kind == "bad_response"


def test_non_retryable_4xx_is_returned_at_once_without_fallback(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.status(400), Fault.status(400))
    with proxy(environ, fast(tmp_path, dispatch={"last_resort": "openai/gpt-4.1-nano"})) as (server, recorded, state):
        with pytest.raises(openai.BadRequestError):
            sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG)
        assert state.health.snapshot()[0]["recent_failures"] == 0  # the request's fault, not the deployment's
    assert len(upstream.requests_for("gpt-4.1")) == 1 and not upstream.requests_for("gpt-4.1-nano")
    (ex,) = recorded
    assert ex.status == 400 and ex.outcome.retries == 0 and ex.outcome.fallbacks == 0


def test_exhausted_error_lists_every_cause_without_secrets(
    environ: dict, upstream: FakeUpstream, upstream_server: ThreadedServer, tmp_path: Path
) -> None:
    upstream.script(upstream_name("d1"), *[Fault.status(500)] * 5)
    deps = [deployment("d1", upstream_server.url, priority=1), deployment("d2", f"http://127.0.0.1:{free_port()}", priority=2)]
    with proxy(environ, nano_policy(tmp_path, upstream_server.url, deps, retries=0)) as (server, recorded, _):
        resp = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG}, timeout=10)
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert [(a["deployment"], a["status"], a["kind"]) for a in err["attempts"]] == [("d1", 500, "server_error"), ("d2", None, "connect")]
    assert all(set(a) >= {"provider", "reason"} for a in err["attempts"])
    assert "d1 answered 500" in err["message"] and "could not connect to d2" in err["message"]
    assert resp.headers["x-autoroute-attempts"] == f"{MODEL}@d1,{MODEL}@d2"
    assert not any(s in resp.text or any(s in v for v in resp.headers.values()) for s in SECRETS)
    assert recorded[0].status == 502


def test_open_breaker_answers_503_with_retry_after(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("claude-sonnet-4-20250514", *[Fault.status(500)] * 10)
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        body = {"model": "anthropic/claude-sonnet-4", "messages": MSG}
        assert httpx.post(server.url + "/v1/chat/completions", json=body, timeout=10).status_code == 502
        resp = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=10)
        assert state.health.is_open("anthropic", "anthropic/claude-sonnet-4")
        assert "anthropic/claude-sonnet-4" not in state.health.available_models()
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "deployments_cooling_down"
    assert 1 <= int(resp.headers["retry-after"]) <= 30
    assert len(upstream.requests_for("claude-sonnet-4-20250514")) == 3  # nothing sent while open
    assert recorded[1].outcome.skipped == ["anthropic/claude-sonnet-4@anthropic"]


# ── one deployment down for the whole run ─────────────────────────────────────
@pytest.mark.parametrize("failure", ["refused", "503"])
def test_one_deployment_down_no_client_visible_errors(
    environ: dict, upstream: FakeUpstream, upstream_server: ThreadedServer, tmp_path: Path, failure: str
) -> None:
    url = upstream_server.url
    bad = deployment("d1", f"http://127.0.0.1:{free_port()}" if failure == "refused" else url)
    upstream.script(upstream_name("d1"), *[Fault.status(503)] * 1000)
    deps = [bad, deployment("d2", url), deployment("d3", url)]
    policy = nano_policy(tmp_path, url, deps, strategy="round_robin", last_resort=None)
    with proxy(environ, policy) as (server, recorded, state):
        client = sdk(server.url)
        for _ in range(150):
            assert client.chat.completions.create(model=MODEL, messages=MSG).choices[0].message.content
        assert state.health.is_open("d1", MODEL)
    assert len(recorded) == 150 and all(ex.status == 200 for ex in recorded)
    d1_attempts = sum(a.deployment == "d1" for ex in recorded for a in ex.outcome.attempts)
    assert d1_attempts == 3  # the breaker opened after 3 failures; d1 was skipped from then on
    if failure == "503":
        assert len(upstream.requests_for(upstream_name("d1"))) == 3
    served = len(upstream.requests_for(upstream_name("d2"))) + len(upstream.requests_for(upstream_name("d3")))
    assert served == 150


def test_plan_model_down_falls_back_to_another_model(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("claude-sonnet-4-20250514", *[Fault.status(503)] * 1000)
    with proxy(environ, fast(tmp_path, dispatch={"last_resort": "openai/gpt-4.1"})) as (server, recorded, _state):
        client = sdk(server.url)
        models = {client.chat.completions.create(model="anthropic/claude-sonnet-4", messages=MSG).model for _ in range(40)}
    assert models == {"openai/gpt-4.1"}
    assert len(upstream.requests_for("claude-sonnet-4-20250514")) == 3
    assert all(ex.status == 200 and ex.outcome.fallbacks == 1 for ex in recorded)
