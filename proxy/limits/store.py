"""The limits store: the Redis client, the Lua scripts it runs, and its readiness probe.

Owns how the process talks to Redis, nothing about what it stores (that is `limits.py` and
`keys.py`).

- With a Redis URL (`AUTOROUTE_REDIS_URL` / `REDIS_URL`): `redis.asyncio` with short socket
  and connect timeouts (`policy.limits.store_timeout_s`), a health check on idle pooled
  connections, and one immediate retry on a dropped connection only (so a restarted Redis is
  reconnected on the next command, while a hung one costs at most about two timeouts).
- With `redis+cluster://host:port[,host:port...]` (seed nodes; `rediss+cluster://` for TLS):
  redis-py's `RedisCluster`, which follows MOVED/ASK and re-reads the slot map after a
  failover. Every script call's keys share one hash tag (`proxy/limits/usage.py`), and the
  limiter runs a key's and a deployment's sections as separate calls there (`per_slot`).
- Timeouts that a busy proxy cannot fake (`patient_timeout`): a store call fails when the store
  has not answered within `store_timeout_s * 8` (2 s by default) *while this process was listening*. A saturated
  event loop (hundreds of requests in one process on a loaded host) reads replies late; a plain
  timeout would call that a store outage and trip the fail mode for every request (a healthy
  cluster under a 500-request burst gave 500 false 503s that way). The client's own socket and
  connect timeouts are only a backstop (`BACKSTOP_S`).
- Pool and queue (`StoreGate`): at most `AUTOROUTE_REDIS_MAX_CONNECTIONS` store commands are
  in flight per process (the pool holds a few more for admin reads and the decision writer);
  a burst beyond that *queues* for up to `AUTOROUTE_REDIS_POOL_WAIT_S`. Waiting for a
  connection is load, not an outage: it never trips the fail mode (only a command that fails
  or times out on the wire does). A wait that runs out is a 503 `limits_store_busy` with
  Retry-After, and the store is not marked down.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import fakeredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterError,
    CrossSlotTransactionError,
    InvalidPipelineStack,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy.errors import StoreUnavailable
from proxy.policy.limits import LimitsPolicy
from proxy.settings import Settings

HEALTH_CHECK_INTERVAL_S = 10
MAX_CONNECTIONS = 64  # in-flight store commands per process (AUTOROUTE_REDIS_MAX_CONNECTIONS)
POOL_WAIT_S = 5.0  # how long a command queues for one of them (AUTOROUTE_REDIS_POOL_WAIT_S)
BACKSTOP_S = 5.0  # the client's socket/connect timeouts: patient_timeout fires long before on a live loop
LATE_S = 0.02  # a timer that runs this late means the event loop was busy, not that the store was slow
GRACE_TURNS = 3  # event-loop turns a deadline waits for callbacks already queued (a reply already received)
POOL_HEADROOM = 8  # pool connections beyond the gate: admin reads, the decision writer, /readyz
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}


_UNAVAILABLE_REPLIES = ("BUSY", "LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN")


def is_store_failure(exc: BaseException) -> bool:
    """Did the store fail (unreachable, timed out, or mid-failover), as opposed to a bug in a command?

    Redis Cluster during a failover: connection errors to the dead master, then CLUSTERDOWN /
    MASTERDOWN / TRYAGAIN / READONLY replies, or no reachable node: all store failures. A
    CROSSSLOT reply or a bad command is a bug and is not hidden behind the fail mode.
    """
    if isinstance(exc, (CrossSlotTransactionError, InvalidPipelineStack)):
        return False
    if isinstance(exc, (ClusterError, TryAgainError, ReadOnlyError, RedisClusterException)):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).startswith(_UNAVAILABLE_REPLIES)
    return isinstance(exc, (RedisError, OSError, TimeoutError))


class StoreBusy(StoreUnavailable):
    """Every store connection of this process stayed busy for the whole pool wait (load, not an outage)."""

    default_code = "limits_store_busy"


class StoreGate:
    """At most `limit` store commands in flight in this process; the rest queue (FIFO) for up
    to `wait_s`. Used around the hot-path calls (admission, settlement, key lookups) so a burst
    waits its turn instead of exhausting the pool; a queue wait is never a store failure."""

    def __init__(self, limit: int = MAX_CONNECTIONS, wait_s: float = POOL_WAIT_S) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self._slots = asyncio.Semaphore(limit)
        self.waiting = 0
        self.timeouts = 0

    @asynccontextmanager
    async def slot(self, *, unbounded: bool = False) -> AsyncIterator[None]:
        """One in-flight slot; waits at most `wait_s` (`unbounded`: as long as it takes)."""
        self.waiting += 1
        try:
            async with patient_timeout(self.wait_s, cap_s=self.wait_s * 4) if not unbounded else asyncio.timeout(None):
                await self._slots.acquire()
        except TimeoutError:
            self.timeouts += 1
            raise StoreBusy(
                "The limits store is saturated: this request waited too long for a store connection. Retry shortly.",
                headers={"retry-after": "1"},
            ) from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()


@asynccontextmanager
async def patient_timeout(seconds: float, cap_s: float = BACKSTOP_S) -> AsyncIterator[None]:
    """Like `asyncio.timeout(seconds)`, except that time the event loop spent busy elsewhere is not
    held against the awaited call: when the deadline's timer itself runs late (the loop was
    blocked, so a reply may be sitting unread in the socket), the call gets another `seconds`.
    A store that really hangs is still cut after `seconds` of a responsive loop, and never later
    than `cap_s` in all. Raises TimeoutError like `asyncio.timeout`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(None) as scope:

        def check(deadline: float, grace: int = GRACE_TURNS) -> None:
            nonlocal handle
            now = loop.time()
            if now - deadline > LATE_S and now + seconds - started < cap_s:
                handle = loop.call_at(now + seconds, check, now + seconds)
            elif grace:  # a reply already read is processed by callbacks queued before this one: let them run
                handle = loop.call_soon(check, now, grace - 1)
            else:
                scope.reschedule(now)  # expire now: the awaited call is cancelled, TimeoutError on exit

        handle: asyncio.Handle = loop.call_at(started + seconds, check, started + seconds)
        try:
            yield
        finally:
            handle.cancel()


class SingleFlight:
    """Concurrent calls for one name share one call: the first starts it, the others await it.

    The shared call is shielded, so one caller cancelled (a client that disconnected) does not
    cancel it for the others; its error, if nobody awaits it any more, is retrieved, not logged."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Any]] = {}

    async def run(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        flight = self._flights.get(name)
        if flight is None:
            flight = asyncio.ensure_future(call())
            self._flights[name] = flight
            flight.add_done_callback(lambda f: self._landed(name, f))
        return await asyncio.shield(flight)

    def _landed(self, name: str, flight: asyncio.Future[Any]) -> None:
        if self._flights.get(name) is flight:
            del self._flights[name]
        if not flight.cancelled():
            flight.exception()


def gate_of(redis: Any) -> StoreGate:
    """The gate `create_redis` attached to this client (a default one for a bare client)."""
    gate = getattr(redis, "autoroute_gate", None)
    if gate is None:
        gate = StoreGate()
        redis.autoroute_gate = gate
    return gate


def create_redis(settings: Settings, limits: LimitsPolicy) -> Any:
    """A Redis (or Redis Cluster) client for `settings.redis_url`, or an embedded fakeredis when it is unset."""
    size, wait = settings.redis_max_connections, settings.redis_pool_wait_s
    client = (
        embedded_redis()
        if settings.redis_url is None
        else connect_redis(settings.redis_url.get_secret_value(), timeout_s=limits.store_timeout_s, max_connections=size)
    )
    client.autoroute_gate = StoreGate(size, wait)
    return client


def connect_redis(url: str, *, timeout_s: float, max_connections: int = MAX_CONNECTIONS) -> Any:
    """`redis.asyncio` client; the hot path bounds each call with `patient_timeout(timeout_s * 8)`,
    and the socket timeouts here (`BACKSTOP_S`) bound everything else (admin reads, the decision writer).

    `max_connections` is the gate's size; the pool gets `POOL_HEADROOM` more. Its own wait is a
    backstop only: the gate in front of it is where a burst queues.
    """
    if urlsplit(url).scheme in CLUSTER_SCHEMES:
        return connect_cluster(url, timeout_s=timeout_s, max_connections=max_connections)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections + POOL_HEADROOM,
        timeout=POOL_WAIT_S,
        socket_timeout=max(timeout_s, BACKSTOP_S),
        socket_connect_timeout=max(timeout_s, BACKSTOP_S),
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        decode_responses=True,
    )
    return Redis.from_pool(pool)


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """`redis+cluster://[user:pass@]h1:p1[,h2:p2...][?...]` -> seed nodes and client options."""
    parts = urlsplit(url)
    netloc = parts.netloc
    auth, _, hosts = netloc.rpartition("@")
    options: dict[str, Any] = {"ssl": CLUSTER_SCHEMES[parts.scheme]}
    if auth:
        user, _, password = auth.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    nodes = []
    for seed in filter(None, (h.strip() for h in hosts.split(","))):
        host, sep, port = seed.rpartition(":")
        nodes.append((host.strip("[]"), int(port)) if sep else (seed, 6379))
    if not nodes:
        raise ValueError("REDIS_URL redis+cluster:// needs at least one host:port seed node")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("Redis Cluster has database 0 only: drop the /db from REDIS_URL")
    for name, values in parse_qs(parts.query).items():
        options[name] = values[-1]
    return nodes, options


def connect_cluster(url: str, *, timeout_s: float, max_connections: int = MAX_CONNECTIONS) -> RedisCluster:
    """redis-py's cluster client: follows MOVED/ASK, re-reads the slot map after a failover.

    `max_connections` is per node (the gate bounds the process's total below it)."""
    nodes, options = cluster_nodes(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        max_connections=max_connections + POOL_HEADROOM,
        socket_timeout=max(timeout_s, BACKSTOP_S),
        socket_connect_timeout=max(timeout_s, BACKSTOP_S),
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(NoBackoff(), 1),  # one more try after a MOVED-less failure: the slot map is re-read first
        decode_responses=True,
        **options,
    )


def embedded_redis() -> Redis:
    """An in-process fakeredis with its own server: one process only."""
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)


def is_embedded(redis: Any) -> bool:
    return isinstance(redis, fakeredis.FakeAsyncRedis)


def describe(redis: Any) -> str:
    """One line for the start-up log saying which store is in use (never the password)."""
    if is_embedded(redis):
        return "limits store: embedded in-process store (no REDIS_URL); limits hold for this one process only, and reset when it restarts"
    if isinstance(redis, RedisCluster):
        seeds = ", ".join(f"{n.host}:{n.port}" for n in redis.nodes_manager.startup_nodes.values())
        return f"limits store: Redis Cluster, seed nodes {seeds}"
    kwargs = redis.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return f"limits store: Redis at {where} db {kwargs.get('db', 0)}"


async def ping(redis: Any, timeout_s: float = 1.0) -> bool:
    """Readiness probe: True when the store answers PING within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            reply = await redis.ping()
            return all(reply.values()) if isinstance(reply, dict) else bool(reply)
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
