"""Shared pieces of the limiter tests: a settable clock, the embedded store, and builders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from proxy.keys.store import EPOCH, KeyRecord
from proxy.limits.limiter import Limiter, Reservation
from proxy.limits.store import embedded_redis
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


@pytest.fixture
async def redis() -> Any:
    r = embedded_redis()
    yield r
    await r.aclose()


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
