"""The limits store: the Redis client, the Lua scripts it runs, and its readiness probe.

Owns how the process talks to Redis, nothing about what it stores (that is `limits.py` and
`keys.py`).

- With a Redis URL (`AUTOROUTE_REDIS_URL` / `REDIS_URL`): `redis.asyncio` with short socket
  and connect timeouts (`policy.limits.store_timeout_s`), a health check on idle pooled
  connections, and one immediate retry on a dropped connection only (so a restarted Redis is
  reconnected on the next command, while a hung one costs at most about two timeouts).
- Without one: an embedded, in-process fakeredis with Lua (lupa). It runs the same scripts,
  but it lives in this process only: several workers or replicas would each have their own
  limits. The app must log that at start-up (`describe()` gives the sentence).

The client is built with `decode_responses=True`; callers in this package also accept bytes.

Lua scripts live in `proxy/limits/lua/*.lua` (package data). `load_script(name)` reads one;
`LuaScript.__call__` runs it by EVALSHA and falls back to EVAL on NOSCRIPT (a restarted or
failed-over Redis has an empty script cache; EVAL also re-caches it there).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fakeredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from proxy.policy.limits import LimitsPolicy
from proxy.settings import Settings

HEALTH_CHECK_INTERVAL_S = 10
MAX_CONNECTIONS = 64


def create_redis(settings: Settings, limits: LimitsPolicy) -> Redis:
    """A Redis client for `settings.redis_url`, or an embedded fakeredis when it is unset."""
    if settings.redis_url is None:
        return embedded_redis()
    return connect_redis(settings.redis_url.get_secret_value(), timeout_s=limits.store_timeout_s)


def connect_redis(url: str, *, timeout_s: float, max_connections: int = MAX_CONNECTIONS) -> Redis:
    """`redis.asyncio` client with short timeouts; never waits long on a dead or hung server.

    A blocking pool: under a burst, a command waits (at most `timeout_s`) for one of
    `max_connections` connections instead of failing at once, as redis-py's default pool does
    when its 100 connections are busy.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        decode_responses=True,
    )
    return Redis.from_pool(pool)


def embedded_redis() -> Redis:
    """An in-process fakeredis with its own server: one process only."""
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)


def is_embedded(redis: Any) -> bool:
    return isinstance(redis, fakeredis.FakeAsyncRedis)


def describe(redis: Any) -> str:
    """One line for the start-up log saying which store is in use (never the password)."""
    if is_embedded(redis):
        return "limits store: embedded in-process store (no REDIS_URL); limits hold for this one process only, and reset when it restarts"
    kwargs = redis.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return f"limits store: Redis at {where} db {kwargs.get('db', 0)}"


async def ping(redis: Any, timeout_s: float = 1.0) -> bool:
    """Readiness probe: True when the store answers PING within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return bool(await redis.ping())
    except Exception:
        return False


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str

    async def __call__(self, redis: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.source, len(keys), *keys, *args)

    async def register(self, redis: Any) -> None:
        """Load into the server's script cache (optional: calls fall back to EVAL anyway)."""
        await redis.script_load(self.source)


def load_script(name: str) -> LuaScript:
    """`proxy/limits/lua/<name>.lua` behind the shared helpers of `lua/lib.lua` (one EVAL each)."""
    folder = resources.files("proxy.limits") / "lua"
    source = (folder / "lib.lua").read_text(encoding="utf-8") + (folder / f"{name}.lua").read_text(encoding="utf-8")
    return LuaScript(name=name, source=source, sha=hashlib.sha1(source.encode()).hexdigest())
