"""Waiting on a Protocol's events (owns: one waiter future and a timer per wait).

Both upstream connection Protocols (the lean client's `h1.Connection` and the httpx fallback's
`netio._Protocol`) wait the same way: the event callbacks call `wake()`, a wait re-checks its
`ready()` condition after each wake, and a timer marks the wait expired and wakes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Waiting:
    """Mixin: `wait` until a condition holds, woken by `wake` (called from the Protocol's callbacks)."""

    waiter: asyncio.Future[None] | None = None
    expired = False  # the current wait's timer fired

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        self.expired = True
        self.wake()

    async def wait(
        self, loop: asyncio.AbstractEventLoop, timeout: float | None, ready: Callable[[], object], timeout_error: type[Exception]
    ) -> None:
        """Wait until `ready()` is true; `timeout_error` after `timeout` seconds."""
        timer = None if timeout is None else loop.call_later(timeout, self.expire)
        try:
            while not ready():
                if self.expired:
                    raise timeout_error("timed out")
                self.waiter = loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
        finally:
            if timer is not None:
                timer.cancel()
            self.expired = False
