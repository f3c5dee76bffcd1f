"""The limits store: the Redis client, the Lua scripts it runs, and its readiness probe.

Owns how the process talks to Redis, nothing about what it stores (that is `limits.py` and
`keys.py`).

- With a Redis URL (`AUTOROUTE_REDIS_URL` / `REDIS_URL`): `redis.asyncio` with short socket
  and connect timeouts (`policy.limits.store_timeout_s`), a health check on idle pooled
  connections, and one immediate retry on a dropped connection only (so a restarted Redis is
  reconnected on the next command, while a hung one costs at most about two timeouts). The
  limiter's script calls (EVALSHA / EVAL) skip the pool's per-command machinery on connections
  of their own (`proxy/limits/direct.py`), and every connection packs commands with hiredis'
  C packer (`c_packing`).
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
- Without one: the embedded store, in this process only (several workers or replicas would each
  have their own limits; the app logs that at start-up, `describe()` gives the sentence).
  Admission, settlement and budget reads (the hot path) run in-process on plain dicts
  (`proxy/limits/local.py`, the same contract as the Lua scripts: `proxy/limits/scripts.py`),
  with no Lua and no Redis emulation; key records and the decision stream use an in-process
  fakeredis (`embedded_redis()`), which is off the per-request path once a key is cached.

The client is built with `decode_responses=True`; callers in this package also accept bytes.

Lua scripts (the Redis implementation) live in `proxy/limits/lua/*.lua` (package data). `load_script(name)` reads one;
`LuaScript.__call__` runs it by EVALSHA and falls back to EVAL on NOSCRIPT (a restarted or
failed-over Redis has an empty script cache; EVAL also re-caches it there).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import fakeredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    NoScriptError,
)

from proxy.limits.direct import DirectRedis
from proxy.limits.local import LocalScripts
from proxy.policy.limits import LimitsPolicy
from proxy.settings import Settings
from proxy.store import (  # noqa: F401  (re-exported: the store's one import point for limits and tests)
    BACKSTOP_S,
    MAX_CONNECTIONS,
    POOL_WAIT_S,
    SingleFlight,
    StoreBusy,
    StoreGate,
    gate_of,
    is_store_failure,
    patient_timeout,
)

HEALTH_CHECK_INTERVAL_S = 10
POOL_HEADROOM = 8  # pool connections beyond the gate: admin reads, the decision writer, /readyz
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
SCRIPTS_ATTR = "autoroute_scripts"  # the admission contract's implementation, when not Lua on this client


def create_redis(settings: Settings, limits: LimitsPolicy) -> Any:
    """A Redis (or Redis Cluster) client for `settings.redis_url`; when it is unset, the embedded
    store: a fakeredis for key records and decisions, with the admission contract in-process."""
    size, wait = settings.redis_max_connections, settings.redis_pool_wait_s
    client = (
        embedded_store()
        if settings.redis_url is None
        else connect_redis(settings.redis_url.get_secret_value(), timeout_s=limits.store_timeout_s, max_connections=size)
    )
    setattr(client, "autoroute_gate", StoreGate(size, wait))  # noqa: B010  (read back by gate_of)
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
    pool.connection_class = c_packing(pool.connection_class)
    return DirectRedis.on_pool(pool)  # the limiter's script calls skip the pool machinery (direct.py)


_HIREDIS = HiredisRespSerializer()
_PACKING: dict[type, type] = {}


def c_packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` (plain, TLS or unix socket) with commands packed by hiredis' C packer.

    redis-py's asyncio connections pack every argument in Python even when hiredis is installed
    (its sync connections use hiredis); a profile of the named path showed packing at ~7 % of
    the proxy's CPU (an admission or settle call carries ~20 arguments). hiredis' packer is the
    one redis-py's sync client uses, so the bytes on the wire are the same."""
    if connection_class not in _PACKING:
        _PACKING[connection_class] = type(
            f"CPacked{connection_class.__name__}",
            (connection_class,),
            {"pack_command": lambda self, *args: _HIREDIS.pack(*args)},
        )
    return _PACKING[connection_class]


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
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        max_connections=max_connections + POOL_HEADROOM,
        socket_timeout=max(timeout_s, BACKSTOP_S),
        socket_connect_timeout=max(timeout_s, BACKSTOP_S),
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(NoBackoff(), 1),  # one more try after a MOVED-less failure: the slot map is re-read first
        decode_responses=True,
        **options,
    )
    manager = client.nodes_manager  # nodes found later take the manager's class; the seeds are built already
    manager.connection_kwargs["connection_class"] = c_packing(manager.connection_kwargs["connection_class"])
    for node in manager.startup_nodes.values():
        node.connection_class = manager.connection_kwargs["connection_class"]
    return client


def embedded_redis() -> Redis:
    """An in-process fakeredis with its own server: one process only (it runs the Lua scripts too)."""
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)


def embedded_store() -> Redis:
    """The embedded store: `embedded_redis()` for key records and decisions, and the admission
    contract in-process (`LocalScripts`, read back by `proxy/limits/scripts.py` scripts_of)."""
    client = embedded_redis()
    setattr(client, SCRIPTS_ATTR, LocalScripts())
    return client


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
