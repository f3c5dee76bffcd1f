"""Store access that every Redis user in the proxy shares (keys and limits): the per-process
queue in front of the connection pool, single-flight reads, timeouts a busy event loop cannot
fake, and what counts as a store failure. The client itself is built in `proxy/limits/store.py`.

See `proxy/limits/store.py` (module docstring) for how these fit together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.exceptions import (
    ClusterError,
    CrossSlotTransactionError,
    InvalidPipelineStack,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from proxy.errors import StoreUnavailable

MAX_CONNECTIONS = 64  # in-flight store commands per process (AUTOROUTE_REDIS_MAX_CONNECTIONS)
POOL_WAIT_S = 5.0  # how long a command queues for one of them (AUTOROUTE_REDIS_POOL_WAIT_S)
BACKSTOP_S = 5.0  # the client's socket/connect timeouts: patient_timeout fires long before on a live loop
LATE_S = 0.02  # a timer that runs this late means the event loop was busy, not that the store was slow
GRACE_TURNS = 3  # event-loop turns a deadline waits for callbacks already queued (a reply already received)

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
    if isinstance(exc, (AttributeError, RuntimeError)) and _raised_in_a_redis_connection(exc):
        # redis-py's cluster client mid-failover writing to a connection already torn down:
        # "'NoneType' object has no attribute 'writelines'", or the event loop's "unable to
        # perform operation on <TCPTransport closed=True>"
        return True
    return isinstance(exc, (RedisError, OSError, TimeoutError))


def _raised_in_a_redis_connection(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("/redis/asyncio/connection.py"):
            return True
        tb = tb.tb_next
    return False


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
        if self._slots.locked():  # every slot taken, or others queued first: queue behind them
            await self._queue(unbounded)
        else:  # a free slot and nobody queued: taken at once, no timer (the common case)
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def _queue(self, unbounded: bool) -> None:
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


@asynccontextmanager
async def patient_timeout(seconds: float, cap_s: float = BACKSTOP_S, progress: Callable[[], float] | None = None) -> AsyncIterator[None]:
    """Like `asyncio.timeout(seconds)`, except that time the event loop spent busy elsewhere is not
    held against the awaited call: when the deadline's timer itself runs late (the loop was
    blocked, so a reply may be sitting unread in the socket), the call gets another `seconds`.
    Likewise while `progress()` (the loop time of the store's last answer to any call) shows the
    store answering other calls within the last `seconds`: it is slow under load, not hung. A
    store that really hangs is still cut after `seconds` of a responsive loop with no answers,
    and never later than `cap_s` in all. Raises TimeoutError like `asyncio.timeout`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(None) as scope:
        handle: asyncio.Handle | asyncio.TimerHandle

        def check(deadline: float, grace: int = GRACE_TURNS) -> None:
            nonlocal handle
            now = loop.time()
            alive = progress is not None and now - progress() < seconds  # the store answered other calls meanwhile: slow, not hung
            if (now - deadline > LATE_S or alive) and now + seconds - started < cap_s:
                handle = loop.call_at(now + seconds, check, now + seconds)
            elif grace:  # a reply already read is processed by callbacks queued before this one: let them run
                handle = loop.call_soon(check, now, grace - 1)
            else:
                scope.reschedule(now)  # expire now: the awaited call is cancelled, TimeoutError on exit

        handle = loop.call_at(started + seconds, check, started + seconds)
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
