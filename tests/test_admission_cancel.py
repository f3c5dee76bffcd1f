"""A client that leaves while its admission is being reserved leaves nothing reserved.

The window: the admission script has run on the store (the reservation exists there) but its
reply has not reached `Admission.acquire` yet when the request is cancelled. Real Redis (the
tests' own redis-server); the reply is held back by pausing `_admit_sections` after the script.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from proxy.limits.limiter import Limiter
from proxy.policy import Policy
from proxy.policy.limits import LimitsPolicy, TaskBudget
from proxy.policy.registry import ModelSpec
from proxy.request.admission import Admission
from tests.support.limiting import dep, key

COST = 0.25


@dataclass
class _Plan:
    """The three figures Admission reads from a routing plan."""

    input_tokens: int = 100

    def output_tokens_for(self, model: ModelSpec) -> int:
        return 50

    def estimated_cost_usd(self, model: ModelSpec) -> float:
        return COST


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Any]:
    r = aioredis.from_url(redis_url, db=7)
    await r.flushdb()
    yield r
    await r.flushdb()
    await r.aclose()


def _paused_limiter(store: Any) -> tuple[Limiter, asyncio.Event, asyncio.Event]:
    """A limiter whose admission script runs, then waits for `go` before its reply is read."""
    lim = Limiter(store, LimitsPolicy(task=TaskBudget(max_cost_usd=None, max_tokens=None)), retry_interval_s=0.0)
    ran, go = asyncio.Event(), asyncio.Event()
    real = lim._admit_sections

    async def admit_then_pause(*args: Any) -> Any:
        result = await real(*args)  # reserved in Redis now
        ran.set()
        await go.wait()  # the reply "in flight"
        return result

    lim._admit_sections = admit_then_pause  # type: ignore[method-assign]
    return lim, ran, go


async def _left(lim: Limiter, k: Any) -> float | None:
    return await lim.budget_remaining_usd(k)


async def test_cancel_after_the_script_ran_releases_the_reservation(store: Any, policy: Policy) -> None:
    lim, ran, go = _paused_limiter(store)
    k = key(budget_usd_day=1.0)
    model = policy.resolve_model("openai/gpt-4.1")
    assert model is not None
    admission = Admission(lim, k, _Plan())  # type: ignore[arg-type]
    acquiring = asyncio.ensure_future(admission.acquire(dep(max_concurrent=5), model, 150))
    await asyncio.wait_for(ran.wait(), 5)
    assert await _left(lim, k) == pytest.approx(1.0 - COST)  # the script's reservation is pending
    assert await store.zcard(lim.layout.dep_keys("dep1")[2]) == 1
    acquiring.cancel()  # the client leaves here
    await asyncio.sleep(0.01)
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await acquiring
    assert admission.reservation is not None  # recorded despite the cancellation
    await admission.finish(None, 0.0, None)  # what accounting does for a request that ended
    assert await _left(lim, k) == pytest.approx(1.0)  # nothing left pending
    assert await store.zcard(lim.layout.dep_keys("dep1")[2]) == 0  # the deployment's in-flight slot too


async def test_uncancelled_acquire_still_reserves_and_settles(store: Any, policy: Policy) -> None:
    lim, _ran, go = _paused_limiter(store)
    go.set()
    k = key(id="key_ok", budget_usd_day=1.0)
    model = policy.resolve_model("openai/gpt-4.1")
    assert model is not None
    admission = Admission(lim, k, _Plan())  # type: ignore[arg-type]
    assert await admission.acquire(dep(id="dep2"), model, 150) is admission.reservation is not None
    assert await _left(lim, k) == pytest.approx(1.0 - COST)
    await admission.finish(None, 0.0, None)
    assert await _left(lim, k) == pytest.approx(1.0)
