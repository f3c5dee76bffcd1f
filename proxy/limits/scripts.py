"""The admission contract (`Scripts`) and its Redis implementation (the Lua scripts).

Two implementations, one contract (`tests/test_limits_contract.py` runs the same cases on both):

- `LuaScripts`: `lua/admit.lua`, `lua/settle.lua`, `lua/spent.lua` on a Redis node or a Redis
  Cluster (one EVALSHA per call, so every check-and-reserve is atomic across replicas). Time is
  the Redis server's clock (TIME) unless a call fixes `now`.
- `LocalScripts` (`proxy/limits/local.py`): the same three calls in pure Python on plain
  dicts and sorted lists, for the embedded store (no REDIS_URL). One process holds all its
  limits, so the event loop's single thread makes each call atomic. Time is a steady clock
  (the wall clock at start, then monotonic: a clock stepped back does not hold the windows).

Every call takes the key names the limiter built (`proxy/limits/usage.py` StoreLayout) and the
parameters the Lua headers describe, and returns the same reply (a dict: the scripts' JSON,
decoded). `read` and `delete` serve the usage reads and resets of the admin API.
`scripts_of(redis)` picks the implementation that store creation attached to the client
(`proxy/limits/store.py` create_redis), and Lua on Redis otherwise.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from proxy.limits.store import SCRIPTS_ATTR, load_script

#: a read of the usage API: ("hgetall", name) | ("get", name) | ("hget", name, field) | ("zcard", name)
Read = tuple[str, ...]


class Scripts(Protocol):
    in_process: bool  # True: calls cannot fail on a wire (the limiter skips the store guard)

    async def admit(self, keys: list[str], params: dict[str, Any]) -> dict[str, Any]:
        """admit.lua: check every limit of the sections given, then reserve in all, or in none."""
        ...

    async def settle(self, keys: list[str], params: dict[str, Any]) -> None:
        """settle.lua: a reservation becomes real usage (settle) or is given back (release)."""
        ...

    async def spent(self, keys: list[str], params: dict[str, Any]) -> dict[str, Any]:
        """spent.lua: what a key has spent and holds reserved (read-only)."""
        ...

    async def read(self, reads: list[Read]) -> list[Any]:
        """Plain reads in one round trip, with Redis's reply shapes (hash: dict, missing: None)."""
        ...

    async def delete(self, names: list[str]) -> None: ...

    async def register(self) -> None:
        """Prepare the scripts (Redis: load them into the script cache; optional)."""
        ...


class LuaScripts:
    """The contract on Redis: one EVALSHA per call (EVAL after a NOSCRIPT)."""

    in_process = False

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._admit = load_script("admit")
        self._settle = load_script("settle")
        self._spent = load_script("spent")

    async def admit(self, keys: list[str], params: dict[str, Any]) -> dict[str, Any]:
        return orjson.loads(await self._admit(self.redis, keys, [orjson.dumps(params).decode()]))

    async def settle(self, keys: list[str], params: dict[str, Any]) -> None:
        await self._settle(self.redis, keys, [orjson.dumps(params).decode()])

    async def spent(self, keys: list[str], params: dict[str, Any]) -> dict[str, Any]:
        return orjson.loads(await self._spent(self.redis, keys, [orjson.dumps(params).decode()]))

    async def read(self, reads: list[Read]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for command, *args in reads:
            getattr(pipe, command)(*args)
        return list(await pipe.execute())

    async def delete(self, names: list[str]) -> None:
        await self.redis.delete(*names)

    async def register(self) -> None:
        for script in (self._admit, self._settle, self._spent):
            await script.register(self.redis)


def scripts_of(redis: Any) -> Scripts:
    """The implementation attached to this client at store creation, else Lua on it."""
    attached = getattr(redis, SCRIPTS_ATTR, None)
    return attached if attached is not None else LuaScripts(redis)
