"""Bursts against a healthy store are load, not an outage (issue 11, item 1): calls queue for a
connection, concurrent key lookups share one GET, a busy event loop does not pass for a slow
store, and only a store that fails on the wire trips the fail mode."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from proxy.errors import StoreUnavailable
from proxy.keys.store import KeyFields, KeyStore
from proxy.limits.store import StoreBusy, StoreGate, connect_redis, create_redis, embedded_redis, gate_of, patient_timeout
from proxy.policy.limits import LimitsPolicy
from tests.conftest import make_settings
from tests.support.limiting import Clock, admit, key, make_limiter


class SlowStore:
    """fakeredis running the Lua scripts (a Redis, as the limiter sees it), with every script call
    taking `delay` seconds of waiting (not CPU)."""

    def __init__(self, delay: float = 0.01) -> None:
        self.inner = embedded_redis()
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.gets = 0

    async def _slow(self, call: Any) -> Any:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return await call
        finally:
            self.in_flight -= 1

    async def evalsha(self, *args: Any) -> Any:
        return await self._slow(self.inner.evalsha(*args))

    async def eval(self, *args: Any) -> Any:
        return await self._slow(self.inner.eval(*args))

    async def get(self, name: str) -> Any:
        self.gets += 1
        return await self._slow(self.inner.get(name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _block_loop(seconds: float) -> asyncio.Task[None]:
    async def blocker() -> None:
        await asyncio.sleep(0.002)
        time.sleep(seconds)  # the event loop does nothing else meanwhile (a saturated proxy)

    return asyncio.create_task(blocker())


async def test_patient_timeout_forgives_a_busy_loop_but_not_a_hung_call() -> None:
    async def answered_at_once() -> str:  # answers after the deadline, but while the loop is blocked
        await asyncio.sleep(0.1)
        return "reply"

    blocker = _block_loop(0.3)
    with pytest.raises(TimeoutError):  # what a plain timeout says: the "store" was slow
        async with asyncio.timeout(0.05):
            await answered_at_once()
    await blocker
    blocker = _block_loop(0.3)
    async with patient_timeout(0.05):
        assert await answered_at_once() == "reply"
    await blocker
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # a call that never answers is still cut, on time
        async with patient_timeout(0.05):
            await asyncio.Event().wait()
    assert time.monotonic() - started < 0.5


async def test_a_busy_loop_is_not_a_store_outage() -> None:
    store = SlowStore(0.25)  # answers after the call's deadline, while the event loop is blocked
    lim = make_limiter(store, Clock(), on_store_error="fail_closed", store_timeout_s=0.02)
    await lim.register_scripts()  # one EVALSHA per call (no NOSCRIPT + EVAL: two waits)
    k = key(rpm=1000)
    blocker = _block_loop(0.5)
    results = await asyncio.gather(*(admit(lim, k) for _ in range(20)))
    await blocker
    assert all(not r.degraded for r in results)
    assert lim.stats.store_errors == 0


async def test_a_burst_queues_for_the_pool_and_is_never_an_outage() -> None:
    store = SlowStore(0.005)
    store.autoroute_gate = StoreGate(limit=4, wait_s=10)
    for mode in ("fail_closed", "fail_open"):
        lim = make_limiter(store, Clock(), on_store_error=mode, store_timeout_s=0.05)
        k = key(id=f"key_{mode}", rpm=50)
        outcomes = await asyncio.gather(*(admit(lim, k) for _ in range(300)), return_exceptions=True)
        admitted = [r for r in outcomes if not isinstance(r, BaseException)]
        assert len(admitted) == 50 and not any(r.degraded for r in admitted)
        assert all(type(e).__name__ == "KeyRateLimited" for e in outcomes if isinstance(e, BaseException))
        assert lim.stats.store_errors == 0 and lim.stats.lost_settlements == 0
        await asyncio.gather(*(lim.settle(r, input_tokens=1, output_tokens=1, cost_usd=0) for r in admitted))
        assert (await lim.usage.key_usage(k.id))["day"]["requests"] == 50
    assert store.peak == 4  # never more in flight than the gate allows


async def test_a_full_queue_is_a_busy_503_and_does_not_mark_the_store_down() -> None:
    store = SlowStore(0.2)
    store.autoroute_gate = StoreGate(limit=1, wait_s=0.05)
    lim = make_limiter(store, Clock(), on_store_error="fail_open", store_timeout_s=1.0)
    outcomes = await asyncio.gather(*(admit(lim, key(rpm=10)) for _ in range(3)), return_exceptions=True)
    busy = [e for e in outcomes if isinstance(e, StoreBusy)]
    assert len(busy) == 2 and busy[0].status == 503 and busy[0].headers["retry-after"] == "1"
    assert busy[0].body()["error"]["code"] == "limits_store_busy"
    assert not lim.guard.down and lim.stats.store_errors == 0 and lim.stats.fail_open_admissions == 0


async def test_concurrent_lookups_of_one_key_share_one_get() -> None:
    store = SlowStore(0.02)
    keys = KeyStore(store, "mk-0123456789abcdef")
    _, secret = await keys.create(KeyFields(name="burst"))
    records = await asyncio.gather(*(keys.authenticate(secret) for _ in range(300)))
    assert {r.name for r in records} == {"burst"}
    assert store.gets == 1
    keys.cache_ttl_s = 0  # uncached again: the next burst is one GET again, not 300
    await asyncio.gather(*(keys.authenticate(secret) for _ in range(300)))
    assert store.gets == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_lookup() -> None:
    store = SlowStore(0.05)
    keys = KeyStore(store, "mk-0123456789abcdef")
    record, secret = await keys.create(KeyFields(name="x"))
    first = asyncio.create_task(keys.authenticate(secret))
    second = asyncio.create_task(keys.authenticate(secret))
    await asyncio.sleep(0.01)
    first.cancel()
    assert (await second).id == record.id
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_dead_store_still_trips_the_fail_mode() -> None:
    client = connect_redis("redis://127.0.0.1:1/0", timeout_s=0.05)
    lim = make_limiter(client, Clock(), on_store_error="fail_closed", store_timeout_s=0.05)
    with pytest.raises(StoreUnavailable) as err:
        await admit(lim, key(rpm=5))
    assert not isinstance(err.value, StoreBusy) and lim.guard.down and lim.stats.store_errors == 1
    await client.aclose()


def test_pool_and_queue_come_from_the_settings() -> None:
    client = create_redis(make_settings(redis_max_connections=7, redis_pool_wait_s=1.5), LimitsPolicy())
    assert (gate_of(client).limit, gate_of(client).wait_s) == (7, 1.5)
    pooled = create_redis(make_settings(redis_url="redis://127.0.0.1:1/0", redis_max_connections=7), LimitsPolicy())
    assert pooled.connection_pool.max_connections == 7 + 8 and gate_of(pooled).limit == 7


async def test_a_slow_store_that_keeps_answering_is_not_an_outage() -> None:
    """Answers one call every 50 ms (a CPU-starved Redis under a burst): each call waits far past
    its 0.16 s deadline, but the store is visibly alive, so none trips the fail mode."""
    store = SlowStore(0.0)
    lim = make_limiter(store, Clock(), on_store_error="fail_open", store_timeout_s=0.02)
    await lim.register_scripts()
    k = key(rpm=1000)
    await admit(lim, k)  # the store has answered once
    turn = asyncio.Lock()

    async def one_at_a_time(call: Any) -> Any:
        async with turn:
            await asyncio.sleep(0.05)
            return await call

    store._slow = one_at_a_time  # type: ignore[method-assign]
    results = await asyncio.gather(*(admit(lim, k) for _ in range(15)))
    assert not any(r.degraded for r in results) and lim.stats.store_errors == 0
