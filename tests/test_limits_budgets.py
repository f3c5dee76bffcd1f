"""The limiter: budgets, task budgets, store failures, the SDK. Every test that takes `redis` runs
on both implementations of the admission contract (Lua on Redis, in-process); the store-failure
tests use fakeredis with Lua (`fake_redis`), whose server they disconnect."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from proxy.errors import BudgetExceeded, StoreUnavailable
from proxy.limits.format import KeyBudgetExceeded, KeyRateLimited
from proxy.limits.limiter import Limiter
from proxy.policy.limits import LimitsPolicy, TaskBudget
from tests.support.limiting import Clock, admit, clock, dep, fake_redis, key, make_limiter, redis, store_names  # noqa: F401  (fixtures)

# ---------------------------------------------------------------------------- budgets


async def test_a_huge_budget_admits_like_no_budget(redis: Any, clock: Clock) -> None:
    # The admin API takes any budget >= 0: 1e300 USD overflowed the nano-USD conversion (a 500 on
    # every request of the key, both stores), and above ~1.8e10 USD orjson cannot encode the
    # integer for the Lua scripts (a 500 on Redis only, while the embedded store admitted).
    lim = make_limiter(redis, clock)
    k = key(budget_usd_day=1e300, budget_usd_month=float("inf"), budget_usd_total=1e12, task_max_cost_usd=1e300)
    res = await admit(lim, k, cost=0.5, task_id="t1")
    await lim.settle(res, input_tokens=10, output_tokens=10, cost_usd=0.25)
    await admit(lim, k, cost=0.5, task_id="t1")
    assert await lim.budget_remaining_usd(k) == pytest.approx(1e12 - 0.25 - 0.5)


async def test_a_huge_request_is_admitted_or_refused_the_same_on_both(redis: Any, clock: Clock) -> None:
    # max_tokens is unbounded (a named model: 1e17 reaches admission). Lua numbers are doubles and
    # reach Redis as "1e+17", which INCRBY/HINCRBY refuse: a ResponseError (a 500) on Redis for a
    # key or deployment with an rpm, while the embedded store admitted. Same for a 1e11 USD estimate.
    lim = make_limiter(redis, clock)
    res = await admit(lim, key(id="k_rpm", rpm=5), dep(rpm=100, max_concurrent=10), tokens=10**17)
    await lim.settle(res, input_tokens=10**18, output_tokens=10**18, cost_usd=1e11)  # a hostile upstream's usage
    await admit(lim, key(id="k_rich", budget_usd_day=1e300), cost=1e11, tokens=2**63)
    with pytest.raises(KeyRateLimited):
        await admit(lim, key(id="k_tpm", tpm=10**6), tokens=10**17)


async def test_daily_budget_reserves_estimates_and_settles_actuals(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock, reservation_ttl_s=86400), key(budget_usd_day=1.0)
    a = await admit(lim, k, cost=0.4)
    await admit(lim, k, cost=0.4)
    with pytest.raises(KeyBudgetExceeded) as info:
        await admit(lim, k, cost=0.4)
    exc = info.value
    assert isinstance(exc, BudgetExceeded) and exc.status == 429
    assert exc.body()["error"]["type"] == "budget_exceeded"
    assert exc.limit == "daily_budget"
    assert exc.remaining_usd == pytest.approx(0.2)
    assert "daily budget: limit $1.00, $0.2000 left" in exc.message
    assert "resets at 2027-03-11T00:00:00Z (in 12h0m0s)" in exc.message
    assert exc.headers["retry-after"] == str(12 * 3600) and exc.headers["x-should-retry"] == "false"
    assert "A cheaper model may still fit" in exc.message
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.2)
    await lim.settle(a, input_tokens=10, output_tokens=10, cost_usd=0.1)  # 0.4 reserved -> 0.1 spent
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.5)
    await admit(lim, k, cost=0.4)
    clock.advance(12 * 3600)  # next UTC day: settled spend of yesterday no longer counts
    assert await lim.budget_remaining_usd(k) == pytest.approx(1.0 - 0.8)  # two reservations still live
    await admit(lim, k, cost=0.2)


async def test_monthly_and_total_budgets(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock)
    k = key(budget_usd_month=1.0, budget_usd_total=1.5)
    res = await admit(lim, k, cost=0.9)
    await lim.settle(res, input_tokens=1, output_tokens=1, cost_usd=0.9)
    with pytest.raises(KeyBudgetExceeded) as info:
        await admit(lim, k, cost=0.2)
    assert info.value.limit == "monthly_budget"
    assert "resets at 2027-04-01T00:00:00Z" in info.value.message
    clock.t = datetime(2027, 4, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    res = await admit(lim, k, cost=0.5)
    await lim.settle(res, input_tokens=1, output_tokens=1, cost_usd=0.5)
    with pytest.raises(KeyBudgetExceeded) as info:
        await admit(lim, k, cost=0.2)
    assert info.value.limit == "total_budget"
    assert "does not reset" in info.value.message and info.value.retry_after_s is None
    assert "retry-after" not in info.value.headers
    assert info.value.remaining_usd == pytest.approx(0.1)
    await lim.usage.reset_key(k.id)
    assert await lim.budget_remaining_usd(k) == pytest.approx(1.0)


async def test_free_requests_pass_an_exhausted_budget(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock), key(budget_usd_day=0.0)
    await admit(lim, k, cost=0.0)  # e.g. the local model
    with pytest.raises(KeyBudgetExceeded) as info:
        await admit(lim, k, cost=0.000001)
    assert "A cheaper model may still fit" not in info.value.message


async def test_budget_remaining_is_none_without_budgets(redis: Any, clock: Clock) -> None:
    assert await make_limiter(redis, clock).budget_remaining_usd(key(rpm=5)) is None


async def test_task_budget_policy_default_and_key_override(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock, task=TaskBudget(max_cost_usd=0.10, max_tokens=10_000, ttl_s=3600))
    k = key()
    await admit(lim, k, cost=0.06, task_id="job-1")
    with pytest.raises(KeyBudgetExceeded) as info:
        await admit(lim, k, cost=0.06, task_id="job-1")
    assert info.value.limit == "task_budget" and "task budget of task 'job-1'" in info.value.message
    assert info.value.remaining_usd == pytest.approx(0.04)
    assert await lim.budget_remaining_usd(k, "job-1") == pytest.approx(0.04)
    await admit(lim, k, cost=0.06, task_id="job-2")  # another task has its own budget
    await admit(lim, k, cost=0.06)  # no task: no task budget
    await admit(lim, key(id="key_other"), cost=0.06, task_id="job-1")  # tasks are scoped to the key
    rich = key(task_max_cost_usd=1.0, task_max_tokens=50_000)
    await admit(lim, rich, cost=0.5, task_id="job-1")  # same task id, key rich's own task
    await admit(lim, rich, cost=0.4, task_id="job-1")


async def test_task_token_budget(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock, task=TaskBudget(max_cost_usd=None, max_tokens=10_000))
    k = key()
    res = await admit(lim, k, tokens=6000, task_id="t")
    with pytest.raises(KeyBudgetExceeded) as info:
        await admit(lim, k, tokens=6000, task_id="t")
    assert "token limit 10000, 4000 left, this request needs 6000" in info.value.message
    assert info.value.remaining_usd is None
    await lim.settle(res, input_tokens=1000, output_tokens=500, cost_usd=0)  # 6000 estimated -> 1500 used
    await admit(lim, k, tokens=6000, task_id="t")
    with pytest.raises(KeyBudgetExceeded):
        await admit(lim, k, tokens=3000, task_id="t")


async def test_odd_task_ids_are_digested_into_the_key_name(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock, task=TaskBudget(max_cost_usd=0.1, max_tokens=None))
    await admit(lim, key(), cost=0.05, task_id="x" * 500 + "{}")
    names = await store_names(redis, "*:t:*")
    assert names and all(len(n) < 100 and "{}" not in n.split("}", 1)[1] for n in names)


# ---------------------------------------------------------------------------- store failures


def _disconnect(redis: Any, connected: bool) -> None:
    redis.connection_pool.connection_kwargs["server"].connected = connected


async def test_fail_closed_answers_503_then_recovers(fake_redis: Any, clock: Clock) -> None:
    errors: list[str] = []
    lim = Limiter(fake_redis, LimitsPolicy(on_store_error="fail_closed"), clock=clock, retry_interval_s=0.0,
                  on_store_error=lambda op, exc: errors.append(op))  # fmt: skip
    k = key(rpm=1)
    _disconnect(fake_redis, False)
    with pytest.raises(StoreUnavailable) as info:
        await admit(lim, k)
    assert info.value.status == 503 and info.value.body()["error"]["code"] == "limits_store_unavailable"
    with pytest.raises(StoreUnavailable):
        await lim.budget_remaining_usd(key(budget_usd_day=1))
    assert errors == ["reserve", "read"] and lim.stats.fail_closed_rejections == 1
    _disconnect(fake_redis, True)
    await admit(lim, k)
    with pytest.raises(KeyRateLimited):
        await admit(lim, k)


async def test_fail_open_admits_unreserved_counts_and_recovers(fake_redis: Any, clock: Clock) -> None:
    lim = make_limiter(fake_redis, clock, on_store_error="fail_open")
    k = key(rpm=1)
    _disconnect(fake_redis, False)
    res = [await admit(lim, k) for _ in range(3)]
    assert all(r.degraded and r.headers == {} for r in res)
    assert lim.stats.fail_open_admissions == 3 and lim.stats.store_errors == 3
    assert await lim.budget_remaining_usd(key(budget_usd_day=1)) is None
    await lim.settle(res[0], input_tokens=1, output_tokens=1, cost_usd=0)  # never raises
    assert lim.stats.lost_settlements == 1
    _disconnect(fake_redis, True)
    ok = await admit(lim, k)
    assert not ok.degraded and ok.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(KeyRateLimited):
        await admit(lim, k)


async def test_breaker_skips_the_store_for_the_retry_interval(fake_redis: Any, clock: Clock) -> None:
    calls: list[str] = []
    lim = Limiter(fake_redis, LimitsPolicy(on_store_error="fail_open"), clock=clock, retry_interval_s=3600,
                  on_store_error=lambda op, exc: calls.append(op))  # fmt: skip
    _disconnect(fake_redis, False)
    await admit(lim, key(rpm=1))
    _disconnect(fake_redis, True)
    res = await admit(lim, key(rpm=1))  # store back, but within the retry interval: not tried
    assert res.degraded and calls == ["reserve"] and lim.stats.fail_open_admissions == 2


async def test_budget_check_is_exact_at_the_boundary(redis: Any, clock: Clock) -> None:
    lim, k = make_limiter(redis, clock), key(budget_usd_total=0.3)
    for _ in range(3):
        await admit(lim, k, cost=0.1)  # 0.1 is not exact in binary; nano-USD integers are
    with pytest.raises(KeyBudgetExceeded):
        await admit(lim, k, cost=1e-9)
    assert math.isclose(await lim.budget_remaining_usd(k) or 0.0, 0.0, abs_tol=1e-12)


# ---------------------------------------------------------------------------- through the OpenAI SDK


async def test_openai_sdk_sees_rate_limit_error_with_headers(redis: Any, clock: Clock) -> None:
    """A minimal /v1 handler (authenticate -> reserve -> settle) and the lead's error handler."""
    import httpx
    import openai
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from proxy.errors import ProxyError
    from proxy.keys.store import KeyFields, KeyStore, bearer_token

    keys = KeyStore(redis, "sdk-test-master-key-000")
    lim = make_limiter(redis, clock)
    calls: list[int] = []

    async def chat(request: Request) -> JSONResponse:
        calls.append(1)
        principal = await keys.authenticate(bearer_token(request.headers))
        body = await request.json()
        res = await lim.reserve(principal, None, model=body["model"], input_tokens=10,
                                output_tokens=body.get("max_tokens") or 100, cost_usd=0.2)  # fmt: skip
        await lim.settle(res, input_tokens=10, output_tokens=5, cost_usd=0.2)
        return JSONResponse(
            {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}},
            headers=res.headers,
        )  # fmt: skip

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProxyError)
        return JSONResponse(exc.body(), exc.status, headers=exc.headers)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])],
                    exception_handlers={ProxyError: on_error})  # fmt: skip
    _, secret = await keys.create(KeyFields(name="sdk", rpm=1, budget_usd_day=0.3))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = openai.AsyncOpenAI(api_key=secret, base_url="http://proxy/v1", http_client=http, max_retries=0)
    messages: Any = [{"role": "user", "content": "hello"}]
    raw = await client.chat.completions.with_raw_response.create(model="m1", messages=messages)
    assert raw.headers["x-ratelimit-remaining-requests"] == "0" and raw.parse().choices[0].message.content == "hi"
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="m1", messages=messages)
    err = info.value
    assert err.status_code == 429 and err.type == "rate_limit_exceeded"  # type: ignore[attr-defined]
    assert "requests per minute" in err.message and err.response.headers["retry-after"] == "60"
    assert err.response.headers["x-ratelimit-limit-requests"] == "1"
    clock.advance(60)
    retrying = openai.AsyncOpenAI(api_key=secret, base_url="http://proxy/v1", http_client=http, max_retries=3)
    calls.clear()
    with pytest.raises(openai.RateLimitError) as info:  # 0.2 spent, 0.2 more does not fit 0.3
        await retrying.chat.completions.create(model="m1", messages=messages)
    assert info.value.code == "budget_exceeded" and "daily budget" in info.value.message
    assert calls == [1]  # x-should-retry: false -> the SDK did not retry a budget refusal
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(api_key="sk-ar-wrong", base_url="http://proxy/v1", http_client=http,
                                 max_retries=0).chat.completions.create(model="m1", messages=messages)  # fmt: skip
    await http.aclose()
