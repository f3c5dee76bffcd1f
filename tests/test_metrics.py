"""proxy/observe/metrics.py: each event moves the right series by the right amount, and outcomes,
status classes and error kinds map as documented. (Bounded labels, the default registry and
the /metrics exposition: tests/test_metrics_exposition.py; real processes:
tests/test_metrics_multiprocess.py.)"""

from __future__ import annotations

import asyncio

import pytest

from proxy import errors
from proxy.observe.export import render
from proxy.observe.metrics import OUTCOMES, Metrics, error_kind_for_status, outcome_of, status_class
from tests.support.metrics_fixtures import m, mk  # noqa: F401  (fixtures)


def val(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample's value, 0.0 when the series does not exist yet."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


# ── each event moves the right series ────────────────────────────────────────────────
def test_request_lifecycle_counts_in_flight_outcome_and_latencies(m: Metrics) -> None:
    m.request_started()
    m.request_started()
    assert val(m, "autoroute_requests_in_flight") == 2
    m.observe_request(
        outcome="ok",
        status=200,
        total_s=2.5,
        upstream_s=2.4985,
        category="complex_coding",
        model="openai/gpt-4.1",
        preference="balanced",
        stream=True,
    )
    assert val(m, "autoroute_requests_in_flight") == 1
    labels = dict(
        endpoint="chat_completions", category="complex_coding", model="openai/gpt-4.1", preference="balanced", outcome="ok", status="2xx"
    )
    assert val(m, "autoroute_requests_total", **labels) == 1
    assert val(m, "autoroute_request_duration_seconds_count", stream="true") == 1
    assert val(m, "autoroute_request_duration_seconds_sum", stream="true") == pytest.approx(2.5)
    assert val(m, "autoroute_request_duration_seconds_bucket", stream="true", le="2.0") == 0
    assert val(m, "autoroute_request_duration_seconds_bucket", stream="true", le="4.0") == 1
    # overhead = total - upstream = 1.5 ms: above the 1 ms bucket, inside 2.5 ms
    assert val(m, "autoroute_proxy_overhead_seconds_sum") == pytest.approx(0.0015)
    assert val(m, "autoroute_proxy_overhead_seconds_bucket", le="0.001") == 0
    assert val(m, "autoroute_proxy_overhead_seconds_bucket", le="0.0025") == 1

    m.observe_request(outcome="rate_limited", status=429, total_s=0.002)  # refused before routing
    assert val(m, "autoroute_requests_in_flight") == 0
    none = dict(category="none", model="none", preference="none")
    assert val(m, "autoroute_requests_total", endpoint="chat_completions", **none, outcome="rate_limited", status="4xx") == 1
    m.request_started()
    m.observe_request(endpoint="messages", outcome="ok", status=200, total_s=0.1)
    assert val(m, "autoroute_requests_total", endpoint="messages", **none, outcome="ok", status="2xx") == 1
    m.request_started()
    m.observe_request(endpoint="/v1/unknown", outcome="ok", status=200, total_s=0.1)  # a raw path never becomes a label
    assert val(m, "autoroute_requests_total", endpoint="other", **none, outcome="ok", status="2xx") == 1
    assert val(m, "autoroute_request_duration_seconds_count", stream="false") == 3
    assert val(m, "autoroute_proxy_overhead_seconds_count") == 4


def test_overhead_never_negative(m: Metrics) -> None:
    m.request_started()
    m.observe_request(outcome="ok", status=200, total_s=1.0, upstream_s=1.2)
    assert val(m, "autoroute_proxy_overhead_seconds_sum") == 0
    assert val(m, "autoroute_proxy_overhead_seconds_bucket", le="0.0001") == 1


def test_route_counts_decision_confidence_and_overrides(m: Metrics) -> None:
    m.observe_route(
        category="classification", model="openai/gpt-4.1-nano", preference="cheapest", confidence=0.35, overrides=["tools", "budget"]
    )
    m.observe_route(category="classification", model="openai/gpt-4.1-nano", preference="cheapest", confidence=0.95)
    assert val(m, "autoroute_routing_decisions_total", category="classification", model="openai/gpt-4.1-nano", preference="cheapest") == 2
    assert val(m, "autoroute_classifier_confidence_ratio_count", category="classification") == 2
    assert val(m, "autoroute_classifier_confidence_ratio_sum", category="classification") == pytest.approx(1.3)
    assert val(m, "autoroute_classifier_confidence_ratio_bucket", category="classification", le="0.4") == 1
    assert val(m, "autoroute_routing_overrides_total", constraint="tools") == 1
    assert val(m, "autoroute_routing_overrides_total", constraint="budget") == 1


def test_llm_classifier(m: Metrics) -> None:
    assert val(m, "autoroute_llm_classifier_requests_total", outcome="timeout") == 0  # pre-bound
    m.observe_llm_classifier("ok", 0.4)
    m.observe_llm_classifier("cache_hit")
    m.observe_llm_classifier("timeout", 1.5)
    assert val(m, "autoroute_llm_classifier_requests_total", outcome="ok") == 1
    assert val(m, "autoroute_llm_classifier_requests_total", outcome="cache_hit") == 1
    assert val(m, "autoroute_llm_classifier_requests_total", outcome="timeout") == 1
    assert val(m, "autoroute_llm_classifier_duration_seconds_count") == 2
    assert val(m, "autoroute_llm_classifier_duration_seconds_sum") == pytest.approx(1.9)


def test_upstream_attempts_errors_ttft_retries_fallbacks(m: Metrics) -> None:
    common = dict(deployment="openai", provider="openai", model="openai/gpt-4.1")
    m.observe_upstream_attempt(**common, seconds=30.0, error="timeout")
    m.retried("openai")
    m.observe_upstream_attempt(**common, seconds=0.2, error=error_kind_for_status(503))
    m.fell_back("openai/gpt-4.1", "anthropic/claude-sonnet-4")
    m.observe_upstream_attempt(deployment="anthropic", provider="anthropic", model="anthropic/claude-sonnet-4", seconds=3.0, ttft_s=0.6)
    assert val(m, "autoroute_upstream_attempts_total", **common, result="error") == 2
    assert (
        val(
            m,
            "autoroute_upstream_attempts_total",
            deployment="anthropic",
            provider="anthropic",
            model="anthropic/claude-sonnet-4",
            result="ok",
        )
        == 1
    )
    assert val(m, "autoroute_upstream_errors_total", provider="openai", kind="timeout") == 1
    assert val(m, "autoroute_upstream_errors_total", provider="openai", kind="server_error") == 1
    assert val(m, "autoroute_upstream_errors_total", provider="anthropic", kind="timeout") == 0
    assert val(m, "autoroute_upstream_duration_seconds_count", provider="openai", model="openai/gpt-4.1") == 2
    assert val(m, "autoroute_upstream_duration_seconds_sum", provider="openai", model="openai/gpt-4.1") == pytest.approx(30.2)
    assert val(m, "autoroute_time_to_first_token_seconds_count", provider="anthropic", model="anthropic/claude-sonnet-4") == 1
    assert val(m, "autoroute_time_to_first_token_seconds_bucket", provider="anthropic", model="anthropic/claude-sonnet-4", le="0.5") == 0
    assert val(m, "autoroute_time_to_first_token_seconds_count", provider="openai", model="openai/gpt-4.1") == 0
    assert val(m, "autoroute_upstream_retries_total", provider="openai") == 1
    assert val(m, "autoroute_fallbacks_total", from_model="openai/gpt-4.1", to_model="anthropic/claude-sonnet-4") == 1


def test_cooldown_state_and_openings(m: Metrics) -> None:
    assert val(m, "autoroute_deployment_cooldown_state", deployment="anthropic") == 0  # pre-bound at 0
    m.set_cooldown("openai", "open")
    assert val(m, "autoroute_deployment_cooldown_state", deployment="openai") == 2
    m.set_cooldown("openai", "half_open")
    assert val(m, "autoroute_deployment_cooldown_state", deployment="openai") == 1
    m.set_cooldown("openai", "closed")
    m.set_cooldown("openai", "open")
    assert val(m, "autoroute_deployment_cooldown_state", deployment="openai") == 2
    assert val(m, "autoroute_deployment_cooldowns_total", deployment="openai") == 2
    assert val(m, "autoroute_deployment_cooldowns_total", deployment="anthropic") == 0
    with pytest.raises(KeyError):
        m.set_cooldown("openai", "melting")


def test_usage_tokens_cost_and_estimate(m: Metrics) -> None:
    m.observe_usage(model="openai/gpt-4.1", input_tokens=1000, output_tokens=250, cost_usd=0.004, estimated_cost_usd=0.005, key="team-a")
    m.observe_usage(model="openai/gpt-4.1", input_tokens=10, output_tokens=5, cost_usd=0.0001)
    assert val(m, "autoroute_tokens_total", model="openai/gpt-4.1", direction="input") == 1010
    assert val(m, "autoroute_tokens_total", model="openai/gpt-4.1", direction="output") == 255
    assert val(m, "autoroute_cost_usd_total", model="openai/gpt-4.1") == pytest.approx(0.0041)
    assert val(m, "autoroute_estimated_cost_usd_total", model="openai/gpt-4.1") == pytest.approx(0.005)
    assert val(m, "autoroute_cost_estimate_ratio_count") == 1
    assert val(m, "autoroute_cost_estimate_ratio_sum") == pytest.approx(0.8)
    # key labels are off: no per-key series at all
    assert val(m, "autoroute_key_cost_usd_total", key="team-a") == 0
    assert b'key="team-a"' not in render(m.registry)[0]


def test_usage_and_budget_by_key_when_opted_in(mk: Metrics) -> None:
    mk.observe_usage(model="openai/gpt-4.1", input_tokens=100, output_tokens=20, cost_usd=0.5, key="team-a")
    mk.observe_usage(model="openai/gpt-4.1", input_tokens=1, output_tokens=2, cost_usd=0.25, key="team-a")
    assert val(mk, "autoroute_key_cost_usd_total", key="team-a") == pytest.approx(0.75)
    assert val(mk, "autoroute_key_tokens_total", key="team-a", direction="input") == 101
    assert val(mk, "autoroute_key_tokens_total", key="team-a", direction="output") == 22
    mk.set_budget_remaining("team-a", "day", 4.25, 5.0)
    mk.set_budget_remaining("team-a", "day", 4.0, 5.0)
    assert val(mk, "autoroute_key_budget_remaining_usd", key="team-a", period="day") == 4.0
    assert val(mk, "autoroute_key_budget_limit_usd", key="team-a", period="day") == 5.0


def test_budget_gauge_is_noop_without_opt_in(m: Metrics) -> None:
    m.set_budget_remaining("team-a", "day", 4.0, 5.0)
    assert val(m, "autoroute_key_budget_remaining_usd", key="team-a", period="day") == 0
    assert b"team-a" not in render(m.registry)[0]


def test_rejections_by_limit_type(m: Metrics) -> None:
    assert val(m, "autoroute_limit_rejections_total", limit="daily_budget", kind="budget") == 0  # pre-bound
    m.rejected("requests_per_minute")
    m.rejected("requests_per_minute")
    m.rejected("daily_budget")
    m.rejected("made-up limit")
    assert val(m, "autoroute_limit_rejections_total", limit="requests_per_minute", kind="rate_limit") == 2
    assert val(m, "autoroute_limit_rejections_total", limit="daily_budget", kind="budget") == 1
    assert val(m, "autoroute_limit_rejections_total", limit="other", kind="other") == 1


def test_limiter_store_latency_errors_and_up(m: Metrics) -> None:
    assert val(m, "autoroute_limiter_store_up") == 1
    m.observe_store("reserve", 0.0004)
    m.observe_store("settle", 0.002)
    assert val(m, "autoroute_limiter_store_duration_seconds_bucket", operation="reserve", le="0.0005") == 1
    assert val(m, "autoroute_limiter_store_duration_seconds_bucket", operation="settle", le="0.001") == 0
    m.observe_store("reserve", 0.25, failure="fail_open")  # a timeout: latency counted, error counted, down
    assert val(m, "autoroute_limiter_store_errors_total", operation="reserve", action="fail_open") == 1
    assert val(m, "autoroute_limiter_store_duration_seconds_count", operation="reserve") == 2
    assert val(m, "autoroute_limiter_store_up") == 0
    m.observe_store("reserve", 0.0003)
    assert val(m, "autoroute_limiter_store_up") == 1
    m.observe_store("settle", 0.01, failure="fail_closed")
    assert val(m, "autoroute_limiter_store_errors_total", operation="settle", action="fail_closed") == 1
    assert val(m, "autoroute_limiter_store_up") == 0
    m.set_store_up(True)
    assert val(m, "autoroute_limiter_store_up") == 1
    m.set_store_up(False)
    assert val(m, "autoroute_limiter_store_up") == 0


def test_decision_log_errors_and_build_info(m: Metrics) -> None:
    m.decision_log_error("write_error", 5)
    m.decision_log_error("dropped")
    assert val(m, "autoroute_decision_log_errors_total", reason="write_error") == 5
    assert val(m, "autoroute_decision_log_errors_total", reason="dropped") == 1
    m.set_build_info("0.1.0", "aaaa")
    m.set_build_info("0.1.0", "bbbb")  # a policy reload replaces, not adds
    assert val(m, "autoroute_build_info", version="0.1.0", policy_hash="bbbb") == 1
    assert val(m, "autoroute_build_info", version="0.1.0", policy_hash="aaaa") == 0


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, "ok"),
        (errors.RateLimited("x"), "rate_limited"),
        (errors.BudgetExceeded("x"), "budget_exceeded"),
        (errors.AuthenticationFailed("x"), "unauthorized"),
        (errors.PermissionDenied("x"), "forbidden"),
        (errors.NoCapableModel("x"), "no_capable_model"),
        (errors.ModelNotFound("x"), "not_found"),
        (errors.PayloadTooLarge("x"), "too_large"),
        (errors.InvalidRequest("x"), "invalid_request"),
        (errors.StoreUnavailable("x"), "store_unavailable"),
        (errors.ServiceUnavailable("x"), "unavailable"),
        (errors.UpstreamTimeout("x"), "upstream_timeout"),
        (errors.UpstreamFailed("x"), "upstream_error"),
        (errors.UpstreamRejected("x", status=400), "upstream_rejected"),
        (asyncio.CancelledError(), "cancelled"),
        (ValueError("bug"), "internal_error"),
    ],
)
def test_outcome_of(exc: BaseException | None, outcome: str) -> None:
    assert outcome_of(exc) == outcome
    assert outcome in OUTCOMES


def test_status_class_and_error_kind() -> None:
    assert [status_class(s) for s in (200, 201, 302, 400, 429, 499, 500, 503, 999)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "4xx",
        "4xx",
        "5xx",
        "5xx",
        "other",
    ]
    assert [error_kind_for_status(s) for s in (429, 401, 403, 400, 404, 500, 502)] == [
        "rate_limited",
        "auth",
        "auth",
        "rejected",
        "rejected",
        "server_error",
        "server_error",
    ]
