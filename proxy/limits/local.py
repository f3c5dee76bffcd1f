"""The admission contract in-process (`LocalScripts`): admit.lua, settle.lua and spent.lua in pure
Python, for the embedded store (no REDIS_URL). No Lua, no fakeredis, no serialisation.

Same key names, same parameters, same replies as the Lua scripts (`proxy/limits/scripts.py`;
`tests/test_limits_contract.py` runs one suite on both). admit and settle live in
`local_scripts.py` and follow their Lua counterparts line by line, so a change to one is made to
the other; spent is below, with the keyspace they share. The data: a dict of key name
-> value, where a value is an int (a Redis string counter), a dict (a hash) or a `ZSet` (a sorted
list of (score, member) plus a member -> score dict), and key expiry times in ms, applied when a
key is touched and by a sweep once a minute (so nothing outlives its TTL, as on Redis).

Atomicity: every call runs to completion without awaiting, on the event loop's one thread.
Time: a steady clock (`steady_clock`: the wall clock at start, then `time.monotonic()`), unless
the call fixes `now` (tests); Lua uses Redis TIME. A wall clock stepped back (NTP, a VM restore)
would otherwise hold every window and reservation for the length of the step.
Key expiry always runs on `clock` (Redis: on the server's clock, whatever time a script is given).
Units as in the Lua headers: ms, integer nano-USD, integer tokens.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from typing import Any

from proxy.limits.local_scripts import admit, part, settle

_TOP = "\U0010ffff"  # sorts after every member: (score, _TOP) bounds all entries of that score
SWEEP_EVERY_MS = 60_000


def steady_clock() -> Callable[[], float]:
    """Unix seconds that never step: time.time() once, then time.monotonic()'s progress."""
    offset = time.time() - time.monotonic()
    return lambda: offset + time.monotonic()


class ZSet:
    """A Redis sorted set: entries ordered by (score, member)."""

    __slots__ = ("items", "scores")

    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []
        self.scores: dict[str, int] = {}

    def add(self, score: int, member: str) -> None:
        if member in self.scores:
            self.remove(member)
        self.scores[member] = score
        entry = (score, member)
        if not self.items or entry > self.items[-1]:
            self.items.append(entry)  # the usual case: admissions arrive in time order
        else:
            insort(self.items, entry)

    def remove(self, member: str) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        del self.items[bisect_left(self.items, (score, member))]
        return True

    def upto(self, cutoff: int) -> list[tuple[int, str]]:
        """ZRANGEBYSCORE -inf cutoff."""
        return self.items[: bisect_right(self.items, (cutoff, _TOP))]

    def remove_upto(self, cutoff: int) -> None:
        """ZREMRANGEBYSCORE -inf cutoff."""
        n = bisect_right(self.items, (cutoff, _TOP))
        for _, member in self.items[:n]:
            del self.scores[member]
        del self.items[:n]


class LocalScripts:
    in_process = True

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or steady_clock()
        self.data: dict[str, Any] = {}
        self.expires: dict[str, int] = {}  # key name -> expiry, ms
        self.now = 0  # the store's clock at the latest call, ms (key expiry is judged by it)
        self._swept = 0

    # ------------------------------------------------------------------ the keyspace
    def _at(self, p: dict[str, Any]) -> int:
        """The call's time in ms (lib.lua clock_ms). Key expiry runs on the store's clock even when
        the call fixes `now`, as Redis TTLs run on the server's clock whatever a script is told."""
        self._tick()
        return p["now"] if "now" in p else self.now

    def _tick(self) -> None:
        self.now = int(self.clock() * 1000)
        if not 0 <= self.now - self._swept < SWEEP_EVERY_MS:  # (a clock stepped back sweeps now, not when it catches up)
            self.sweep()

    def sweep(self) -> None:
        self._swept = self.now
        for name in [n for n, at in self.expires.items() if self.now > at]:
            self._drop(name)

    def _drop(self, name: str) -> None:
        self.data.pop(name, None)
        self.expires.pop(name, None)

    def _get(self, name: str) -> Any:
        at = self.expires.get(name)
        if at is not None and self.now > at:
            self._drop(name)
            return None
        return self.data.get(name)

    def _zset(self, name: str) -> ZSet:
        z = self._get(name)
        if z is None:
            z = self.data[name] = ZSet()
        return z

    def _hash(self, name: str) -> dict[str, Any]:
        h = self._get(name)
        if h is None:
            h = self.data[name] = {}
        return h

    def _num(self, name: str) -> int:
        v = self._get(name)
        return v if isinstance(v, int) else 0

    def _incr(self, name: str, by: int) -> None:
        self.data[name] = self._num(name) + by

    def _hincr(self, name: str, field: str, by: int) -> None:
        h = self._hash(name)
        h[field] = h.get(field, 0) + by

    def _zrem(self, name: str, member: str) -> bool:
        z = self._get(name)
        if z is None or not z.remove(member):
            return False
        if not z.items:
            self._drop(name)  # Redis deletes an empty sorted set
        return True

    def _zscore(self, name: str, member: str) -> int | None:
        z = self._get(name)
        return None if z is None else z.scores.get(member)

    def _expire_ms(self, name: str, ms: int) -> None:
        if self._get(name) is not None:
            self.expires[name] = self.now + ms

    def _expire_at(self, name: str, unix_s: int) -> None:
        if self._get(name) is not None:
            self.expires[name] = unix_s * 1000

    # ------------------------------------------------------------------ admit.lua
    async def admit(self, keys: list[str], p: dict[str, Any]) -> dict[str, Any]:
        return admit(self, keys, p)

    async def settle(self, keys: list[str], p: dict[str, Any]) -> None:
        settle(self, keys, p)

    async def spent(self, keys: list[str], p: dict[str, Any]) -> dict[str, Any]:
        now = self._at(p)

        def live(zkey: str, total: int, i: int) -> int:
            z = self._get(zkey)
            return total - sum(part(m, i) for _, m in z.upto(now)) if z is not None else total

        t = self._get(keys[7]) or {}
        return {
            "day": (self._get(keys[4]) or {}).get("nusd", 0),
            "month": (self._get(keys[5]) or {}).get("nusd", 0),
            "total": self._num(keys[6]),
            "pending": live(keys[2], (self._get(keys[3]) or {}).get("nusd", 0), 1),
            "task_nusd": t.get("nusd", 0) + live(keys[8], t.get("pnusd", 0), 1),
            "task_tok": t.get("tok", 0) + live(keys[8], t.get("ptok", 0), 2),
        }

    # ------------------------------------------------------------------ usage reads (admin API)
    async def read(self, reads: list[tuple[str, ...]]) -> list[Any]:
        self._tick()
        out: list[Any] = []
        for command, name, *args in reads:
            v = self._get(name)
            if command == "hgetall":
                out.append({f: str(n) for f, n in v.items()} if isinstance(v, dict) else {})
            elif command == "hget":
                out.append(str(v[args[0]]) if isinstance(v, dict) and args[0] in v else None)
            elif command == "get":
                out.append(None if v is None else str(v))
            elif command == "zcard":
                out.append(len(v.items) if isinstance(v, ZSet) else 0)
            else:
                raise ValueError(f"unknown read {command!r}")
        return out

    async def delete(self, names: list[str]) -> None:
        self._tick()
        for name in names:
            self._drop(name)

    async def register(self) -> None:
        return None

    def ttl_ms(self, name: str) -> int | None:
        """Time to live of a key (None: no such key, -1: no expiry), like PTTL; for tests."""
        self._tick()
        if self._get(name) is None:
            return None
        at = self.expires.get(name)
        return -1 if at is None else at - self.now

    def names(self) -> list[str]:
        self._tick()
        return [n for n in list(self.data) if self._get(n) is not None]
