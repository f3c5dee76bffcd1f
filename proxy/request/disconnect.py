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
"""

from __future__ import annotations

import asyncio
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


class CancelOnDisconnect:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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


class _Watch:
    def __init__(self, receive: Any, send: Any) -> None:
        self._receive = receive
        self._send = send
        self.task: asyncio.Future[None] | None = None
        self.cancelled_it = False
        self._body_done = False
        self._complete = False
        self._gone = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self._body_done:  # the watcher owns the real receive now
            await self._gone.wait()
            return {"type": "http.disconnect"}
        message: Message = await self._receive()
        if message["type"] == "http.disconnect":
            self._gone.set()
        elif not message.get("more_body", False):
            self._body_done = True
            self._watcher = asyncio.ensure_future(self._watch())
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
        self._gone.set()
        if not self._complete and self.task is not None and not self.task.done():
            self.cancelled_it = True
            self.task.cancel()

    def stop(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
