"""Run a step to its end even when the task running it is cancelled (owns: accounting that a
client leaving cannot cut in half).

`CancelOnDisconnect` (proxy/request/disconnect.py) cancels a request's task with a native
`task.cancel()` when its client leaves. anyio's `CancelScope(shield=True)` only shields from
anyio's own scopes: a native cancel still raises at the next `await` inside it. A client that
left while its finished stream was being accounted (after the last event, before the response's
end) cut the accounting between the key's settle and the metrics and decision record: the key
was charged for a request the counters never saw (found by the bench's verifier, stream-openai
at c=1). `to_the_end` runs the step in its own task, waits for it through any number of
cancellations, then lets the cancellation go on. A step that itself runs `to_the_end` (the
relay's close-and-account calls `AppState.record`) is already in such a task, which nothing
cancels: it runs inline there, so a streamed request costs one extra task, not two.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_RUNNING: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar("to_the_end", default=None)


async def to_the_end(step: Coroutine[Any, Any, T]) -> T:
    """`await step`, finished even if this task is cancelled meanwhile; the cancellation is re-raised after."""
    running = _RUNNING.get()
    if running is not None and running is asyncio.current_task():  # already run to the end (not a child task)
        return await step
    context = contextvars.copy_context()
    task = asyncio.get_running_loop().create_task(step, context=context)
    context.run(_RUNNING.set, task)  # the task has not started: it sees itself as protected
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.cancelled():  # the step itself was cancelled (the loop is closing): nothing to wait for
                raise
            cancelled = exc
    result = task.result()
    if cancelled is not None:
        raise cancelled
    return result
