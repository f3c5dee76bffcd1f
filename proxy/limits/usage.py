"""The limits store's layout (key names, hash tags, UTC periods, retention) and usage reads.

Every name is `<prefix>:{<tag>}:...` so each Lua call touches one hash slot on Redis Cluster:

    {<key-id>}          w, ws            sliding window: zset "rid|tokens" by admission ms; token sum
                        pz, ps           pending reservations: zset "rid|nusd" by expiry ms; sums
                        u:d:YYYYMMDD     usage of the UTC day (hash: req, in, out, nusd, m|<model>|...)
                        u:m:YYYYMM       usage of the UTC month (same fields)
                        spend            total spend (nano-USD)
                        t:<task>, t:<task>:pz   task budget (hash nusd, tok, pnusd, ptok; pending zset)
                        key              the key record (proxy/keys/store.py)
    {dep:<id>}          w, ws, inflight  a deployment's window and in-flight zset (rid by expiry ms)
    {agent:<digest>}    u:d:..., u:m:... an agent's usage (hash, plus its name)

TTLs: windows 61 s after the last admission; pending sets `reservation_ttl_s` + 1 s; tasks
`task.ttl_s` after last use; day usage 8 days after the day; month usage 62 days after the month;
total spend 400 days after the last settled request. Nothing grows without bound.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.limits.format import NUSD_PER_USD

DAY_RETENTION = timedelta(days=8)  # a day's usage stays readable this long after the day
MONTH_RETENTION = timedelta(days=62)
TOTAL_TTL_S = 400 * 86400  # total spend is forgotten after 400 days without any settled request
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def task_name(task_id: str) -> str:
    """The store name of an X-Task-Id: itself when short and plain, else a digest."""
    return task_id if _SAFE_ID.match(task_id) else "h." + hashlib.sha256(task_id.encode()).hexdigest()[:32]


def agent_name(agent: str) -> str:
    return hashlib.sha256(agent.encode()).hexdigest()[:24]


class StoreLayout:
    def __init__(self, prefix: str = "ar") -> None:
        self.prefix = prefix

    def key_keys(self, key_id: str, task: str | None, day: str, month: str) -> list[str]:
        """The nine keys of a key's section in admit.lua / settle.lua / spent.lua, in order."""
        t = f"{self.prefix}:{{{key_id}}}"
        tk = f"{t}:t:{task or '-'}"
        return [
            f"{t}:w", f"{t}:ws", f"{t}:pz", f"{t}:ps",
            f"{t}:u:d:{day}", f"{t}:u:m:{month}", f"{t}:spend", tk, f"{tk}:pz",
        ]  # fmt: skip

    def dep_keys(self, deployment_id: str) -> list[str]:
        t = f"{self.prefix}:{{dep:{deployment_id}}}"
        return [f"{t}:w", f"{t}:ws", f"{t}:inflight"]

    def agent_keys(self, agent: str, day: str, month: str) -> list[str]:
        t = f"{self.prefix}:{{agent:{agent_name(agent)}}}"
        return [f"{t}:u:d:{day}", f"{t}:u:m:{month}"]


class UsageStore:
    """Usage reads and resets for the admin API."""

    def __init__(self, store: Any, layout: StoreLayout, now_s: Callable[[], float]) -> None:
        self.store = store  # proxy/limits/scripts.py Scripts: Redis, or the embedded in-process store
        self.layout = layout
        self.now_s = now_s
        self._periods: tuple[int, tuple[str, str, datetime]] | None = None

    def periods(self) -> tuple[str, str, datetime]:
        """(YYYYMMDD, YYYYMM, now) in UTC; worked out once per second (it is on every call)."""
        t = self.now_s()
        second = int(t)
        cached = self._periods
        if cached is not None and cached[0] == second:
            return cached[1]
        now = datetime.fromtimestamp(t, UTC)
        value = (now.strftime("%Y%m%d"), now.strftime("%Y%m"), now)
        self._periods = (second, value)
        return value

    async def key_usage(self, key_id: str) -> dict[str, Any]:
        """Requests, tokens and USD of the current UTC day and month (with a by-model split)."""
        day, month, _ = self.periods()
        w, _, _, ps, ud, um, spend, _, _ = self.layout.key_keys(key_id, None, day, month)
        reads = [("hgetall", ud), ("hgetall", um), ("get", spend), ("hget", ps, "nusd"), ("zcard", w)]
        d, m, total, pending, in_window = await self.store.read(reads)
        return {
            "key_id": key_id,
            "day": _usage(day, d),
            "month": _usage(month, m),
            "total_cost_usd": int(total or 0) / NUSD_PER_USD,
            "reserved_cost_usd": max(int(pending or 0), 0) / NUSD_PER_USD,
            "requests_in_window": int(in_window or 0),
        }

    async def agent_usage(self, agent: str) -> dict[str, Any]:
        day, month, _ = self.periods()
        kd, km = self.layout.agent_keys(agent, day, month)
        d, m = await self.store.read([("hgetall", kd), ("hgetall", km)])
        return {"agent": agent, "day": _usage(day, d), "month": _usage(month, m)}

    async def reset_key(self, key_id: str) -> None:
        """Forget a key's rate window and its day, month and total spend (not reservations in flight)."""
        day, month, _ = self.periods()
        w, ws, _, _, ud, um, spend, _, _ = self.layout.key_keys(key_id, None, day, month)
        await self.store.delete([w, ws, ud, um, spend])

    async def reset_agent(self, agent: str) -> None:
        day, month, _ = self.periods()
        await self.store.delete(self.layout.agent_keys(agent, day, month))


_FIELDS = {"req": "requests", "in": "input_tokens", "out": "output_tokens", "nusd": "cost_usd"}


def _usage(period: str, raw: dict[Any, Any]) -> dict[str, Any]:
    totals: dict[str, Any] = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    by_model: dict[str, dict[str, Any]] = {}
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else k
        if name == "name":
            continue
        target = totals
        if name.startswith("m|"):
            model, _, name = name[2:].rpartition("|")
            target = by_model.setdefault(model, {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
        if name in _FIELDS:
            target[_FIELDS[name]] = int(v) / NUSD_PER_USD if name == "nusd" else int(v)
    return {"period": period, **totals, "by_model": by_model}
