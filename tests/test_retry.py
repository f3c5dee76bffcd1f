"""Backoff: exponential, full jitter, capped; Retry-After replaces it, capped too."""

from __future__ import annotations

import random
import statistics

import pytest

from proxy.dispatch.retry import backoff_s, retry_wait_s
from proxy.policy.dispatch import DispatchPolicy
from proxy.providers.base import UpstreamError


@pytest.mark.parametrize("retry,ceiling", [(0, 0.25), (1, 0.5), (2, 1.0), (3, 2.0), (6, 8.0), (40, 8.0)])
def test_full_jitter_spans_zero_to_the_exponential_ceiling(retry: int, ceiling: float) -> None:
    rng = random.Random(7)
    waits = [backoff_s(retry, 0.25, 8.0, rng) for _ in range(4000)]
    assert min(waits) >= 0.0 and max(waits) <= ceiling
    # full jitter: uniform over [0, ceiling], not "ceiling plus a little"
    assert min(waits) < 0.02 * ceiling and max(waits) > 0.98 * ceiling
    assert statistics.fmean(waits) == pytest.approx(ceiling / 2, rel=0.05)


def test_zero_base_never_waits() -> None:
    assert backoff_s(3, 0.0, 8.0, random.Random(1)) == 0.0


def _err(retry_after: float | None) -> UpstreamError:
    return UpstreamError("openai", "openai", "rate_limited", "openai answered 429", status=429, retry_after=retry_after)


def test_retry_after_replaces_backoff_and_is_capped() -> None:
    policy = DispatchPolicy(retry_after_cap_s=5.0)
    rng = random.Random(1)
    assert retry_wait_s(_err(2.0), 0, policy, rng) == 2.0
    assert retry_wait_s(_err(0.0), 3, policy, rng) == 0.0  # "retry now" is honoured too
    assert retry_wait_s(_err(120.0), 0, policy, rng) == 5.0
    assert 0.0 <= retry_wait_s(_err(None), 1, policy, rng) <= 0.5


def test_policy_accepts_spec_spelling_and_checks_delays() -> None:
    assert DispatchPolicy.model_validate({"strategy": "round-robin"}).strategy == "round_robin"
    assert DispatchPolicy.model_validate({"strategies": {"x": "least-loaded"}}).strategy_for("x") == "least_loaded"
    with pytest.raises(ValueError, match="retry_max_delay"):
        DispatchPolicy.model_validate({"retry_base_delay": 2, "retry_max_delay": 1})
    with pytest.raises(ValueError):
        DispatchPolicy.model_validate({"strategy": "random"})
