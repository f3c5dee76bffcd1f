"""Graceful shutdown for streams: on SIGTERM the proxy lets streams run for the grace
(`AUTOROUTE_SHUTDOWN_GRACE_S`), then cuts every stream still open so that each ends the way
the SDKs understand (an error event, then the end of the body) and is accounted like any
other request (settled to what was streamed, one decision line), before uvicorn's own
deadline (the grace + `UVICORN_MARGIN_S`) cancels what is left and the lifespan closes the
store.

Relays wait on the upstream through `Tracked.next()`: a cut that finds a relay waiting cancels
that wait (and only it: the cancellation is taken back, `Task.uncancel`); a relay that is busy
writing sees the cut before its next read. Nothing here costs a task per chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger("autoroute")
UVICORN_MARGIN_S = 2  # uvicorn cancels handlers this long after the streams were cut


class StreamCut(Exception):
    """The server is stopping and the grace is over: end this stream now."""


class Tracked:
    __slots__ = ("cut", "waiting", "task")

    def __init__(self) -> None:
        self.cut = False
        self.waiting = False
        self.task: asyncio.Task[Any] | None = None

    async def next(self, chunks: AsyncIterator[Any]) -> Any:
        """The next chunk, None at the end; StreamCut once the drain cuts this stream."""
        if self.cut:
            raise StreamCut
        if self.task is None:  # the relay's task, the same for every chunk (asyncio.current_task is a getpid on 3.11)
            self.task = asyncio.current_task()
        self.waiting = True
        try:
            return await anext(chunks, None)
        except asyncio.CancelledError:
            if self.cut and self.task is not None and self.task.uncancel() == 0:
                raise StreamCut from None
            raise
        finally:
            self.waiting = False


class Drain:
    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.draining = False
        self._streams: set[Tracked] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._open = 0  # chat requests started and not yet accounted
        self._idle = asyncio.Event()
        self._idle.set()

    # ── streams ─────────────────────────────────────────────────────────────
    def track(self) -> Tracked:
        t = Tracked()
        t.cut = self._timer is None and self.draining  # already past the grace
        self._streams.add(t)
        return t

    def untrack(self, t: Tracked) -> None:
        self._streams.discard(t)

    def begin(self) -> None:
        """SIGTERM: streams get the grace, then are cut. Idempotent; call on the event loop."""
        if self.draining:
            return
        self.draining = True
        log.info("stopping: %d stream(s) open get %gs to finish, then are cut with an error event", len(self._streams), self.grace_s)
        self._timer = asyncio.get_running_loop().call_later(self.grace_s, self.cut_all)

    def cut_all(self) -> None:
        self._timer = None
        if self._streams:
            log.warning("stopping: cutting %d stream(s) still open after the %gs grace", len(self._streams), self.grace_s)
        for t in list(self._streams):
            t.cut = True
            if t.waiting and t.task is not None and not t.task.done():
                t.task.cancel()

    # ── accounting ──────────────────────────────────────────────────────────
    def started(self) -> None:
        self._open += 1
        self._idle.clear()

    def recorded(self) -> None:
        self._open = max(0, self._open - 1)
        if self._open == 0:
            self._idle.set()

    async def wait_recorded(self, timeout: float) -> bool:
        """At shutdown: wait until every started request has been accounted."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            log.warning("stopping: %d request(s) not yet accounted after %gs", self._open, timeout)
            return False
