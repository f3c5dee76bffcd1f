"""The limiter: rate limits, reservations, deployments, usage. Every test that takes `redis`
runs on both implementations of the admission contract (Lua on Redis, in-process)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from proxy.errors import RateLimited
from proxy.limits.format import (
    DeploymentBusy,
    KeyBudgetExceeded,
    KeyRateLimited,
    go_duration,
    next_period_start,
    rate_limit_headers,
)
from proxy.policy.limits import TaskBudget
from tests.support.limiting import Clock, admit, clock, dep, fake_redis, key, make_limiter, redis, store_names, store_ttl_s  # noqa: F401  (clock, redis: fixtures)

# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0s"), (-5, "0s"), (20, "20ms"), (999.4, "999ms"), (1000, "1s"), (8640, "8.64s"),
     (59_999.6, "1m0s"), (360_000, "6m0s"), (61_500, "1m1.5s"), (3_723_000, "1h2m3s"), (3_600_000, "1h0m0s")],
)  # fmt: skip
def test_go_duration_matches_openai_format(ms: float, text: str) -> None:
    assert go_duration(ms) == text


def test_rate_limit_headers_from_snapshot() -> None:
    h = rate_limit_headers({"rpm": 100, "tpm": 5000, "count": 7, "used": 1200, "reset_ms": 6000})
    assert h == {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "93",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "5000",
        "x-ratelimit-remaining-tokens": "3800",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert rate_limit_headers({"rpm": 10, "count": 12, "used": 0, "reset_ms": 0})["x-ratelimit-remaining-requests"] == "0"
    assert rate_limit_headers(None) == {}


def test_next_period_start() -> None:
    now = datetime(2027, 12, 31, 23, 59, tzinfo=UTC)
    assert next_period_start(now, "day") == datetime(2028, 1, 1, tzinfo=UTC)
    assert next_period_start(now, "month") == datetime(2028, 1, 1, tzinfo=UTC)
    assert next_period_start(datetime(2027, 2, 3, 1, tzinfo=UTC), "month") == datetime(2027, 3, 1, tzinfo=UTC)


# ---------------------------------------------------------------------------- key rate limits


async def test_rpm_admits_exactly_the_limit_and_says_when_it_resets(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock), key(rpm=3)
    for i in range(3):
        res = await admit(lim, k)
        assert res.headers["x-ratelimit-remaining-requests"] == str(2 - i)
        assert res.headers["x-ratelimit-limit-requests"] == "3"
        clock.advance(10)
    with pytest.raises(KeyRateLimited) as info:
        await admit(lim, k)
    exc = info.value
    assert isinstance(exc, RateLimited) and exc.status == 429
    assert exc.body()["error"]["type"] == "rate_limit_exceeded"
    assert exc.limit == "requests_per_minute"
    assert "requests per minute: limit 3, used 3" in exc.message and "Resets in 30s" in exc.message
    assert exc.retry_after_s == pytest.approx(30.0)
    assert exc.headers["retry-after"] == "30" and exc.headers["retry-after-ms"] == "30000"
    assert exc.headers["x-ratelimit-remaining-requests"] == "0"
    assert exc.headers["x-ratelimit-reset-requests"] == "30s"
    assert "x-should-retry" not in exc.headers


async def test_rpm_window_slides_at_the_exact_millisecond(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock), key(rpm=2)
    await admit(lim, k)
    clock.advance(1)
    await admit(lim, k)
    clock.advance(58.998)  # 59.998 s after the first admission
    with pytest.raises(KeyRateLimited) as info:
        await admit(lim, k)
    assert info.value.headers["retry-after-ms"] == "2"
    clock.advance(0.002)  # exactly 60 s: the first entry leaves the window
    res = await admit(lim, k)
    assert res.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(KeyRateLimited):
        await admit(lim, k)


async def test_tpm_counts_estimated_tokens_and_computes_retry(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock), key(tpm=1000)
    await admit(lim, k, tokens=600)
    clock.advance(5)
    res = await admit(lim, k, tokens=400)
    assert res.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.advance(5)
    with pytest.raises(KeyRateLimited) as info:
        await admit(lim, k, tokens=300)
    exc = info.value
    assert exc.limit == "tokens_per_minute"
    assert "tokens per minute: limit 1000, used 1000, requested 300" in exc.message
    assert exc.retry_after_s == pytest.approx(50.0)  # the 600-token entry frees at +60 s


async def test_request_larger_than_tpm_is_refused_without_retry(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock)
    with pytest.raises(KeyRateLimited) as info:
        await admit(lim, key(tpm=1000), tokens=1500)
    assert "more than the whole limit of 1000" in info.value.message
    assert info.value.headers["x-should-retry"] == "false"
    assert "retry-after" not in info.value.headers


async def test_settle_replaces_estimated_tokens_with_actual(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock), key(tpm=1000)
    res = await admit(lim, k, tokens=900)
    with pytest.raises(KeyRateLimited):
        await admit(lim, k, tokens=200)
    await lim.settle(res, input_tokens=60, output_tokens=40, cost_usd=0)
    ok = await admit(lim, k, tokens=800)
    assert ok.headers["x-ratelimit-remaining-tokens"] == "100"


async def test_release_refunds_tokens_but_keeps_the_request_slot(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock), key(rpm=2, tpm=1000)
    res = await admit(lim, k, tokens=1000)
    await lim.release(res)
    res2 = await admit(lim, k, tokens=1000)  # tokens came back
    assert res2.headers["x-ratelimit-remaining-requests"] == "0"  # the released request still counts
    await lim.release(res2, refund_request=True)
    res3 = await admit(lim, k, tokens=10)
    assert res3.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(KeyRateLimited):
        await admit(lim, k, tokens=10)


# ---------------------------------------------------------------------------- reservations expire


async def test_unsettled_reservation_expires_after_its_ttl(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock, reservation_ttl_s=120)
    k, d = key(budget_usd_total=1.0), dep(max_concurrent=1)
    await admit(lim, k, d, cost=0.8)  # the process "crashes": never settled
    with pytest.raises(KeyBudgetExceeded):
        await admit(lim, k, cost=0.8)
    with pytest.raises(DeploymentBusy):
        await admit(lim, key(id="key_b"), d)
    clock.advance(119.9)
    with pytest.raises(KeyBudgetExceeded):
        await admit(lim, k, cost=0.8)
    clock.advance(0.1)
    await admit(lim, k, d, cost=0.8)  # budget and deployment slot are free again
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.2)


async def test_every_store_key_has_a_ttl(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock, task=TaskBudget(max_cost_usd=1.0, max_tokens=100_000))
    k = key(rpm=10, tpm=10_000, budget_usd_day=5, budget_usd_month=5, budget_usd_total=5)
    d = dep(rpm=10, tpm=10_000, max_concurrent=5)
    for i in range(3):
        res = await admit(lim, k, d, cost=0.1, task_id="t1", agent="agent-a")
        if i:
            await lim.settle(res, input_tokens=10, output_tokens=5, cost_usd=0.05)
    names = await store_names(redis)
    assert len(names) >= 14
    for name in names:
        assert await store_ttl_s(redis, name) > 0, name
        assert name.startswith("ar:{")


# ---------------------------------------------------------------------------- deployments


async def test_deployment_rpm_tpm_and_concurrency(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock)
    d = dep(rpm=2, tpm=500, max_concurrent=10)
    await admit(lim, key(id="key_a"), d, tokens=200)
    await admit(lim, key(id="key_b"), d, tokens=200)
    with pytest.raises(DeploymentBusy) as info:
        await admit(lim, key(id="key_c"), d, tokens=10)
    assert info.value.deployment_id == "dep1" and info.value.limit == "deployment_capacity"
    assert "requests-per-minute" in info.value.message and info.value.status == 429
    clock.advance(60)
    await admit(lim, key(id="key_c"), d, tokens=400)
    with pytest.raises(DeploymentBusy) as info:
        await admit(lim, key(id="key_c"), d, tokens=200)
    assert "tokens-per-minute" in info.value.message


async def test_max_concurrent_frees_on_settle_and_release(redis: Any, clock: Clock) -> None:
    lim, d = make_limiter(redis, clock), dep(max_concurrent=2)
    a = await admit(lim, key(), d)
    b = await admit(lim, key(), d)
    with pytest.raises(DeploymentBusy) as info:
        await admit(lim, key(), d)
    assert "concurrent" in info.value.message and info.value.headers["retry-after"] == "1"
    await lim.settle(a, input_tokens=1, output_tokens=1, cost_usd=0)
    c = await admit(lim, key(), d)
    await lim.release(b)
    await admit(lim, key(), d)
    with pytest.raises(DeploymentBusy):
        await admit(lim, key(), d)
    assert c.deployment_id == "dep1"


@pytest.mark.parametrize("per_slot", [False, True])
async def test_deployment_refusal_reserves_nothing_on_the_key(redis: Any, clock: Clock, per_slot: bool) -> None:
    lim = make_limiter(redis, clock, per_slot=per_slot)
    k, d = key(rpm=5, budget_usd_total=1.0), dep(max_concurrent=1)
    await admit(lim, k, d, cost=0.1)
    for _ in range(3):
        with pytest.raises(DeploymentBusy):
            await admit(lim, k, d, cost=0.1)
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.9)  # only the admitted one is held
    res = await admit(lim, k, None, cost=0.1)
    assert res.headers["x-ratelimit-remaining-requests"] == "3"  # 2 admitted of 5


async def test_key_refusal_leaves_the_deployment_untouched(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock, per_slot=True)
    d = dep(max_concurrent=1)
    with pytest.raises(KeyBudgetExceeded):
        await admit(lim, key(budget_usd_day=0.01), d, cost=0.1)
    await admit(lim, key(id="key_b"), d)


async def test_fallback_step_replaces_the_reservation(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock, task=TaskBudget(max_cost_usd=0.7, max_tokens=None))
    k = key(rpm=2, budget_usd_day=0.6)
    d1, d2 = dep(id="d1", max_concurrent=1), dep(id="d2", max_concurrent=1)
    first = await admit(lim, k, d1, cost=0.5, task_id="t")
    second = await admit(lim, k, d2, cost=0.3, task_id="t", replaces=first)  # 0.5 + 0.3 would not fit
    assert second.headers["x-ratelimit-remaining-requests"] == "1"  # still one request
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.3)
    assert await lim.budget_remaining_usd(k, "t") == pytest.approx(0.3)  # task: 0.7 - 0.3 - 0.1 (day is lower)
    await admit(lim, key(id="key_x"), d1)  # d1's in-flight slot was given back
    with pytest.raises(DeploymentBusy):
        await admit(lim, key(id="key_x"), d2)
    await lim.settle(second, input_tokens=5, output_tokens=5, cost_usd=0.25)
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.35)


# ---------------------------------------------------------------------------- usage


async def test_usage_per_key_model_day_month_and_agent(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock), key()
    for model, cost in (("m1", 0.01), ("m1", 0.02), ("m2", 0.5)):
        res = await lim.reserve(k, None, model=model, input_tokens=100, output_tokens=50, cost_usd=cost, agent="planner")
        await lim.settle(res, input_tokens=90, output_tokens=40, cost_usd=cost)
    failed = await admit(lim, k, cost=1.0, agent="planner")
    await lim.release(failed)  # released calls record no usage
    usage = await lim.usage.key_usage(k.id)
    assert usage["day"]["period"] == "20270310" and usage["month"]["period"] == "202703"
    for period in ("day", "month"):
        u = usage[period]
        assert (u["requests"], u["input_tokens"], u["output_tokens"]) == (3, 270, 120)
        assert u["cost_usd"] == pytest.approx(0.53)
        assert u["by_model"]["m1"]["requests"] == 2 and u["by_model"]["m2"]["cost_usd"] == pytest.approx(0.5)
    assert usage["total_cost_usd"] == pytest.approx(0.53)
    agent = await lim.usage.agent_usage("planner")
    assert agent["day"]["requests"] == 3 and agent["month"]["by_model"]["m2"]["input_tokens"] == 90
    assert (await lim.usage.agent_usage("someone-else"))["day"]["requests"] == 0
    await lim.usage.reset_agent("planner")
    assert (await lim.usage.agent_usage("planner"))["month"]["requests"] == 0
    clock.advance(86400)
    usage = await lim.usage.key_usage(k.id)
    assert usage["day"]["requests"] == 0 and usage["month"]["requests"] == 3


async def test_unlimited_key_without_deployment_limits_needs_no_store_round_trip(fake_redis: Any, clock: Clock) -> None:
    lim = make_limiter(fake_redis, clock, on_store_error="fail_closed")
    fake_redis.connection_pool.connection_kwargs["server"].connected = False
    res = await admit(lim, key(), dep(), cost=1.0)
    assert not res.degraded and res.headers == {}
