"""One request's reservation in the limits store (what `Limiter.reserve` returns) and the USD unit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from proxy.limits.format import NUSD_PER_USD


@dataclass(frozen=True)
class Reservation:
    rid: str
    key_id: str
    model: str
    deployment_id: str | None
    tokens: int
    nusd: int
    task: str | None = None  # the task's store name (sanitised X-Task-Id)
    task_ttl_s: int | None = None
    agent: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    degraded: bool = False  # admitted without the store (fail_open): nothing is reserved
    #: USD left in each of the key's budgets (day/month/total) once this reservation was made
    budget_left_usd: dict[str, float] = field(default_factory=dict)

    @property
    def estimated_cost_usd(self) -> float:
        return self.nusd / NUSD_PER_USD

    @property
    def window_member(self) -> str:
        return f"{self.rid}|{self.tokens}"

    @property
    def pending_member(self) -> str:
        return f"{self.rid}|{self.nusd}"

    @property
    def task_member(self) -> str:
        return f"{self.rid}|{self.nusd}|{self.tokens}"


#: the largest amount the stores take (2**62 nano-USD, about 4.6e9 USD): within orjson's 64-bit
#: integers for the Lua scripts, and a budget above it is unlimited in effect. Without it a budget
#: of 1e300 USD overflowed here and 2e10 USD failed to encode (a 500 on every request of the key).
MAX_NUSD = 2**62
#: the largest tokens or nano-USD of one request the stores write (INCRBY, HINCRBY): 2**53. Lua
#: numbers are doubles and reach Redis as "1e+17" beyond about 1e17, which it refuses (a 500),
#: while the embedded store took any size.
MAX_AMOUNT = 2**53


def amount(n: int) -> int:
    return min(max(n, 0), MAX_AMOUNT)


def usd_to_nusd(usd: float) -> int:
    if not usd * NUSD_PER_USD < MAX_NUSD:  # (also inf)
        return MAX_NUSD
    return max(math.ceil(round(usd * NUSD_PER_USD, 3)), 0)
