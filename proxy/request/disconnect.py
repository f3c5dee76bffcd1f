"""Cancel a request's handler as soon as its client disconnects (pure ASGI middleware).

Starlette cancels a streaming response when the client goes away, but not a plain
handler: without this, a client that gives up on a slow non-streamed completion (or
during a retry's backoff) would leave the upstream call running for nobody. Once the
handler has read the whole request body, a watcher takes over `receive()`; when it sees
`http.disconnect` before the response is complete, it cancels the handler's task, which
cancels the upstream call (its connection is closed) and runs the handler's cleanup.

The handler still sees the disconnect through `receive()` (Starlette's streaming
response listens for it), because the watcher passes it on. The handler runs in a child
task (so it can be cancelled without cancelling the server's own task): context variables
it sets are not visible to middleware outside this one.

Under `autoroute serve` the server says itself when a connection is lost: its protocol
(proxy/cli/connections.py) puts a `LossHook` in `scope["extensions"][LOSS_HOOK]` and calls it
from `connection_lost`. Then the handler runs in the server's own task, with no child task and
no watcher task (two tasks per request fewer: ~2 % of an `auto` request's instructions): the
loss cancels that task, and the cancellation this middleware caused is taken back
(`Task.uncancel`) once the handler has unwound, so the server sees a finished request. A
cancellation from elsewhere (the server stopping) is never swallowed.
"""

from __future__ import annotations

import asyncio
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
LOSS_HOOK = "autoroute.connection_loss"


class LossHook:
    """Set by the server per request; `on_lost` is called when the client's connection is lost."""

    __slots__ = ("on_lost",)

    def __init__(self) -> None:
        self.on_lost: Any = None

    def fire(self) -> None:
        if self.on_lost is not None:
            self.on_lost()


class CancelOnDisconnect:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hook = (scope.get("extensions") or {}).get(LOSS_HOOK)
        if isinstance(hook, LossHook):
            await self._in_place(scope, receive, send, hook)
            return
        watch = _Watch(receive, send)
        task = asyncio.ensure_future(self.app(scope, watch.receive, watch.send))
        watch.task = task
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if watch.cancelled_it and not (current is not None and current.cancelling()):
                return  # the client left: nothing to answer, nobody to answer to
            raise
        finally:
            watch.stop()

    async def _in_place(self, scope: Scope, receive: Any, send: Any, hook: LossHook) -> None:
        task = asyncio.current_task()
        watch = _Watch(receive, send, hooked=True)
        watch.task = task
        hook.on_lost = watch.lost
        try:
            await self.app(scope, watch.receive, watch.send)
        except asyncio.CancelledError:
            if watch.cancelled_it and task is not None and task.uncancel() == 0:
                return  # only the client's leaving cancelled it: nothing to answer, nobody to answer to
            raise
        else:
            if watch.cancelled_it and task is not None:  # the handler absorbed it: take it back all the same
                task.uncancel()
        finally:
            hook.on_lost = None


class _Watch:
    def __init__(self, receive: Any, send: Any, hooked: bool = False) -> None:
        self._receive = receive
        self._send = send
        self.task: asyncio.Future[None] | None = None
        self.cancelled_it = False
        self._body_done = False
        self._complete = False
        self._gone = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._hooked = hooked  # the server calls lost(): no watcher task
        self._lost = False

    async def receive(self) -> Message:
        if self._body_done:  # the watcher owns the real receive now
            await self._gone.wait()
            return {"type": "http.disconnect"}
        message: Message = await self._receive()
        if message["type"] == "http.disconnect":
            self._gone.set()
        elif not message.get("more_body", False):
            self._body_done = True
            if not self._hooked:
                self._watcher = asyncio.ensure_future(self._watch())
            elif self._lost:  # lost while the body was read: what the watcher would have seen at once
                self.lost()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._complete = True
        await self._send(message)

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
        self.lost()

    def lost(self) -> None:
        """The client's connection is gone. Before the body is read whole, the handler's own
        `receive()` tells it; after, an unfinished response's task is cancelled."""
        self._lost = True
        if not self._body_done:
            return
        self._gone.set()
        if not self._complete and self.task is not None and not self.task.done():
            self.cancelled_it = True
            self.task.cancel()

    def stop(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
