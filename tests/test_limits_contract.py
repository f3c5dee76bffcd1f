"""The admission contract (`proxy/limits/scripts.py`): the same cases on both implementations,
Lua on the tests' own redis-server and in-process (the embedded store).

`redis` (tests/support/limiting.py) is parametrized over the two, so every test here (and every
one of tests/test_limits.py and tests/test_limits_budgets.py) runs on each. These tests use the
stores' own clocks (Redis TIME, time.time()) where those take a fixed one; the last test runs
one random sequence of operations on both at once and requires the same answer to every step.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from proxy.limits.format import DeploymentBusy, KeyBudgetExceeded, KeyRateLimited
from proxy.limits.limiter import Limiter, Reservation
from proxy.limits.local import LocalScripts
from proxy.limits.scripts import LuaScripts, scripts_of
from proxy.limits.store import connect_redis, create_redis, embedded_store
from proxy.policy.limits import LimitsPolicy, TaskBudget
from tests.conftest import make_settings
from tests.support.limiting import CONTRACT_DB, Clock, admit, clock, dep, key, make_limiter, redis  # noqa: F401  (fixtures)

REFUSALS = (KeyRateLimited, KeyBudgetExceeded, DeploymentBusy)


async def _try(lim: Limiter, *args: Any, **kw: Any) -> Any:
    try:
        return await admit(lim, *args, **kw)
    except REFUSALS as exc:
        return exc


@pytest.mark.parametrize("per_slot", [False, True])
async def test_a_burst_of_concurrent_reserves_admits_exactly_the_limit(redis: Any, per_slot: bool) -> None:
    lim = Limiter(redis, LimitsPolicy(), per_slot=per_slot)
    k, d = key(rpm=50, tpm=10**6), dep(max_concurrent=1000)
    results = await asyncio.gather(*(_try(lim, k, d) for _ in range(300)))
    admitted = [r for r in results if isinstance(r, Reservation)]
    assert len(admitted) == 50 and sum(isinstance(r, KeyRateLimited) for r in results) == 250
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted) == list(range(50))
    busy = await asyncio.gather(*(_try(lim, key(id=f"key_{i}"), dep(id="d2", max_concurrent=7)) for i in range(60)))
    assert sum(isinstance(r, Reservation) for r in busy) == 7 and sum(isinstance(r, DeploymentBusy) for r in busy) == 53
    # per_slot: a deployment refusal hands the key's reservation back (compensation)
    lim2 = Limiter(redis, LimitsPolicy(), per_slot=per_slot)
    burst = await asyncio.gather(*(_try(lim2, key(id="key_c", rpm=100), dep(id="d3", rpm=10)) for _ in range(40)))
    assert sum(isinstance(r, Reservation) for r in burst) == 10
    res = await admit(lim2, key(id="key_c", rpm=100))
    assert res.headers["x-ratelimit-remaining-requests"] == str(100 - 11)


async def test_settle_adjusts_spend_and_release_refunds(redis: Any) -> None:
    lim = Limiter(redis, LimitsPolicy(task=TaskBudget(max_cost_usd=1.0, max_tokens=None)))
    k = key(rpm=10, budget_usd_day=1.0, budget_usd_total=5.0)
    a = await admit(lim, k, cost=0.5, task_id="job")
    b = await admit(lim, k, cost=0.3, task_id="job")
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.2)
    assert a.budget_left_usd == pytest.approx({"day": 0.5, "total": 4.5})
    await lim.settle(a, input_tokens=40, output_tokens=10, cost_usd=0.1, model="m2")  # 0.5 reserved, 0.1 spent
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.6)
    assert await lim.budget_remaining_usd(k, "job") == pytest.approx(0.6)  # task: 0.1 spent + 0.3 held
    await lim.release(b)  # nothing was charged: all of it comes back
    assert await lim.budget_remaining_usd(k) == pytest.approx(0.9)
    assert await lim.budget_remaining_usd(k, "job") == pytest.approx(0.9)
    usage = await lim.usage.key_usage(k.id)
    assert usage["day"]["requests"] == 1 and usage["day"]["cost_usd"] == pytest.approx(0.1)
    assert usage["day"]["by_model"]["m2"] == {"requests": 1, "input_tokens": 40, "output_tokens": 10, "cost_usd": pytest.approx(0.1)}
    assert usage["total_cost_usd"] == pytest.approx(0.1) and usage["reserved_cost_usd"] == 0 and usage["requests_in_window"] == 2
    c = await admit(lim, k, cost=0.9)
    with pytest.raises(KeyBudgetExceeded):
        await admit(lim, k, cost=0.01)
    await lim.release(c, refund_request=True)
    assert (await lim.usage.key_usage(k.id))["requests_in_window"] == 2  # the refunded request left the window
    await lim.usage.reset_key(k.id)
    after = await lim.usage.key_usage(k.id)
    assert after["day"]["requests"] == 0 and after["total_cost_usd"] == 0 and after["requests_in_window"] == 0


async def test_an_unsettled_reservation_expires_on_the_stores_own_clock(redis: Any) -> None:
    lim = Limiter(redis, LimitsPolicy(reservation_ttl_s=1))
    k, d = key(budget_usd_total=1.0), dep(max_concurrent=1)
    await admit(lim, k, d, cost=0.8)  # never settled: the process "crashed"
    assert isinstance(await _try(lim, k, cost=0.8), KeyBudgetExceeded)
    assert isinstance(await _try(lim, key(id="key_b"), d), DeploymentBusy)
    await asyncio.sleep(1.1)
    assert await lim.budget_remaining_usd(k) == pytest.approx(1.0)
    await admit(lim, k, d, cost=0.8)  # budget and in-flight slot are free again


async def test_a_task_budget_counts_reserved_and_settled_tokens_and_cost(redis: Any, clock: Clock) -> None:
    lim = make_limiter(redis, clock, task=TaskBudget(max_cost_usd=0.5, max_tokens=1000))
    k = key()
    a = await admit(lim, k, tokens=600, cost=0.2, task_id="t")
    assert isinstance(await _try(lim, k, tokens=600, task_id="t"), KeyBudgetExceeded)  # tokens
    assert isinstance(await _try(lim, k, tokens=10, cost=0.31, task_id="t"), KeyBudgetExceeded)  # cost
    await admit(lim, k, tokens=600, task_id="other")  # another task: its own budget
    await lim.settle(a, input_tokens=100, output_tokens=100, cost_usd=0.0)  # free after all (0 nano-USD)
    await admit(lim, k, tokens=800, cost=0.5, task_id="t")
    with pytest.raises(KeyBudgetExceeded) as info:
        await admit(lim, k, tokens=1, cost=0.01, task_id="t")
    assert info.value.limit == "task_budget"


async def test_store_creation_picks_the_implementation(redis_url: str) -> None:
    embedded = create_redis(make_settings(), LimitsPolicy())  # no REDIS_URL: `make run`
    assert isinstance(Limiter(embedded, LimitsPolicy()).scripts, LocalScripts)
    real = create_redis(make_settings(redis_url=redis_url), LimitsPolicy())
    assert isinstance(Limiter(real, LimitsPolicy()).scripts, LuaScripts)
    await real.aclose()


async def test_the_in_process_store_forgets_expired_keys() -> None:
    store = embedded_store()
    scripts = scripts_of(store)
    assert isinstance(scripts, LocalScripts)
    clock = Clock()
    scripts.clock = clock  # key expiry runs on the store's clock (as on Redis), scores on the limiter's
    lim = make_limiter(store, clock, reservation_ttl_s=60)
    for i in range(20):
        await admit(lim, key(id=f"key_{i}", rpm=5, budget_usd_day=1), dep(rpm=100, max_concurrent=100), cost=0.1)
    assert len(scripts.names()) == 20 * 4 + 3
    clock.advance(3600)
    await admit(lim, key(id="key_last", rpm=5))  # the sweep runs (at most once a minute)
    assert sorted(scripts.names()) == ["ar:{key_last}:w", "ar:{key_last}:ws"]


async def test_the_in_process_sweep_keeps_running_after_the_clock_steps_back() -> None:
    """A clock stepped back (NTP, a VM restore) must not stop the sweep until it catches up again:
    keys that expire meanwhile and are never touched again would stay in memory until then."""
    store = embedded_store()
    scripts = scripts_of(store)
    assert isinstance(scripts, LocalScripts)
    clock = Clock()
    scripts.clock = clock
    lim = make_limiter(store, clock)
    await admit(lim, key(id="key_before", rpm=5))
    clock.advance(-86_400)  # one day back
    for i in range(20):
        await admit(lim, key(id=f"key_{i}", rpm=5))
    clock.advance(3600)  # every window above expired long ago (still a day behind the sweep's last run)
    await admit(lim, key(id="key_last", rpm=5))
    assert len(scripts.data) == 4  # the expired windows are gone from memory (names() would hide them)
    assert sorted(scripts.names()) == ["ar:{key_before}:w", "ar:{key_before}:ws", "ar:{key_last}:w", "ar:{key_last}:ws"]


async def test_a_wall_clock_stepped_back_does_not_hold_the_in_process_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded store's clock is steady: with time.time(), a key at its rpm when the wall clock
    stepped back an hour was refused for 61 minutes (Retry-After 3660), and its reservations held as long."""
    wall, steady = [1_800_000_000.0], [5_000.0]
    monkeypatch.setattr("time.time", lambda: wall[0])
    monkeypatch.setattr("time.monotonic", lambda: steady[0])
    lim = Limiter(embedded_store(), LimitsPolicy())  # no limiter clock: windows on the store's, as in production
    k = key(id="key_steady", rpm=2)
    await admit(lim, k)
    await admit(lim, k)
    wall[0] -= 3600  # NTP or a VM restore steps the wall clock back; 61 s pass
    wall[0] += 61
    steady[0] += 61
    await admit(lim, k)  # the window moved on by 61 s, whatever the wall clock says


# ---------------------------------------------------------------------------- one sequence, both stores


class Recording:
    """An implementation of the contract that keeps every admit and spent reply it passes on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.in_process = inner.in_process
        self.replies: list[dict[str, Any]] = []

    async def admit(self, keys: list[str], params: dict[str, Any]) -> dict[str, Any]:
        self.replies.append(await self.inner.admit(keys, params))
        return self.replies[-1]

    async def spent(self, keys: list[str], params: dict[str, Any]) -> dict[str, Any]:
        self.replies.append(await self.inner.spent(keys, params))
        return self.replies[-1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _outcome(result: Any) -> Any:
    if isinstance(result, Reservation):
        return ("ok", result.headers, {p: round(v, 9) for p, v in result.budget_left_usd.items()})
    return (type(result).__name__, result.message, result.headers)


@pytest.mark.parametrize("seed", [15, 16, 17])
async def test_one_random_sequence_gets_the_same_answers_from_both(redis_url: str, seed: int) -> None:
    """Lua on Redis and in-process, same clock, same calls: every reply (the scripts' own JSON),
    read and header equal."""
    real = connect_redis(redis_url.rsplit("/", 1)[0] + f"/{CONTRACT_DB}", timeout_s=5.0)
    await real.flushdb()
    clock = Clock()
    policy: dict[str, Any] = {"reservation_ttl_s": 40, "task": TaskBudget(max_cost_usd=0.6, max_tokens=5000)}
    lims = [make_limiter(real, clock, **policy), make_limiter(embedded_store(), clock, **policy)]
    recorders = [Recording(lim.scripts) for lim in lims]
    for lim, recorder in zip(lims, recorders, strict=True):
        lim.scripts = recorder
    keys = [key(id="k1", rpm=6, tpm=4000, budget_usd_day=1.5, budget_usd_total=1.2), key(id="k2", budget_usd_month=0.8),
            key(id="k3", rpm=3, task_max_tokens=2000)]  # fmt: skip
    deps = [None, dep(id="d1", rpm=8, tpm=4000, max_concurrent=3), dep(id="d2", tpm=2000, max_concurrent=2)]
    live: list[tuple[Reservation, Reservation]] = []
    rng = random.Random(seed)
    try:
        for step in range(400):
            op = rng.random()
            if op < 0.5:
                k, d = rng.choice(keys), rng.choice(deps)
                kw = {"tokens": rng.choice([0, 10, 300, 900, 2500]), "cost": rng.choice([0.0, 0.05, 0.1, 0.3]),
                      "task_id": rng.choice([None, "t1", "t2"]), "agent": rng.choice([None, "bot"])}  # fmt: skip
                same_key = [pair for pair in live if pair[0].key_id == k.id]
                replaced = rng.choice(same_key) if same_key and rng.random() < 0.2 else None
                got = [await _try(lim, k, d, replaces=replaced[i] if replaced else None, **kw) for i, lim in enumerate(lims)]
                assert _outcome(got[0]) == _outcome(got[1]), step
                if replaced is not None and isinstance(got[0], Reservation):
                    live.remove(replaced)
                if isinstance(got[0], Reservation):
                    live.append((got[0], got[1]))
            elif op < 0.75 and live:
                pair = live.pop(rng.randrange(len(live)))
                inp, out, cost = rng.randrange(0, 800), rng.randrange(0, 400), rng.choice([0.0, 0.02, 0.2])
                settle, refund = rng.random() < 0.7, rng.random() < 0.5
                for lim, res in zip(lims, pair, strict=True):
                    if settle:
                        await lim.settle(res, input_tokens=inp, output_tokens=out, cost_usd=cost)
                    else:
                        await lim.release(res, refund_request=refund)
            elif op < 0.9:
                clock.advance(rng.choice([0.5, 3, 11, 29]))
            else:
                for k in keys:
                    reads = [(await lim.budget_remaining_usd(k, "t1"), await lim.usage.key_usage(k.id)) for lim in lims]
                    assert reads[0] == reads[1], step
                assert await lims[0].usage.agent_usage("bot") == await lims[1].usage.agent_usage("bot")
            assert recorders[0].replies == recorders[1].replies, step
        assert sum(len(r.replies) for r in recorders) > 400
    finally:
        await real.flushdb()
        await real.aclose()
