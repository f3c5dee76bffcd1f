"""Shared pieces of the limiter tests: a settable clock, the stores, and builders.

`redis` is the admission contract's two implementations (`proxy/limits/scripts.py`): every test
that takes it runs twice, on Lua in the tests' own redis-server (`lua`, a private db flushed
around each test) and in-process (`local`, the embedded store). `fake_redis` is fakeredis with
Lua, whose server the store-failure tests can disconnect.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any

import pytest

from proxy.keys.store import EPOCH, KeyRecord
from proxy.limits.limiter import Limiter, Reservation
from proxy.limits.local import LocalScripts
from proxy.limits.scripts import scripts_of
from proxy.limits.store import connect_redis, embedded_redis, embedded_store
from proxy.policy.limits import LimitsPolicy, TaskBudget
from proxy.policy.registry import Deployment

T0 = datetime(2027, 3, 10, 12, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


CONTRACT_DB = 11  # the lua variant's private database on the session's redis-server
IMPLEMENTATIONS = ["lua", "local"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def redis(request: pytest.FixtureRequest) -> Any:
    """A store client whose Limiter runs the contract in Lua on Redis, or in-process."""
    if request.param == "local":
        r = embedded_store()
    else:
        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + f"/{CONTRACT_DB}"
        r = connect_redis(url, timeout_s=5.0)
        await r.flushdb()
    yield r
    if request.param == "lua":
        await r.flushdb()
    await r.aclose()


@pytest.fixture
async def fake_redis() -> Any:
    """fakeredis with Lua: its server can be disconnected to fake a store outage."""
    r = embedded_redis()
    yield r
    await r.aclose()


async def store_names(redis: Any, pattern: str = "*") -> list[str]:
    """The limit keys held (the in-process store: its own keyspace; Redis: KEYS)."""
    scripts = scripts_of(redis)
    if isinstance(scripts, LocalScripts):
        return [n for n in scripts.names() if fnmatch.fnmatchcase(n, pattern)]
    return list(await redis.keys(pattern))


async def store_ttl_s(redis: Any, name: str) -> float:
    """A key's time to live in seconds (-1: none, -2: no such key), as TTL says."""
    scripts = scripts_of(redis)
    if isinstance(scripts, LocalScripts):
        ms = scripts.ttl_ms(name)
        return -2 if ms is None else -1 if ms < 0 else ms / 1000
    return float(await redis.pttl(name)) / 1000 if await redis.exists(name) else -2


def make_limiter(redis: Any, clock: Clock, per_slot: bool = False, **policy: Any) -> Limiter:
    policy.setdefault("task", TaskBudget(max_cost_usd=None, max_tokens=None))
    return Limiter(redis, LimitsPolicy(**policy), clock=clock, per_slot=per_slot, retry_interval_s=0.0)


def key(**fields: Any) -> KeyRecord:
    return KeyRecord(id=fields.pop("id", "key_test"), name="test", created_at=EPOCH, **fields)


def dep(**limits: Any) -> Deployment:
    return Deployment(id=limits.pop("id", "dep1"), provider="openai", api_base="http://127.0.0.1:9", **limits)


async def admit(lim: Limiter, k: KeyRecord, d: Deployment | None = None, tokens: int = 100, cost: float = 0.0,
                **kw: Any) -> Reservation:  # fmt: skip
    return await lim.reserve(k, d, model="m1", input_tokens=tokens // 2, output_tokens=tokens - tokens // 2,
                             cost_usd=cost, **kw)  # fmt: skip
