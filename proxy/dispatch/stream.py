"""An upstream stream handed from dispatch to the pipeline, after its first substantive chunk.

The pipeline relays `first`, then iterates `rest` (`anext(opened.rest, None)`), reads
`stream.usage` and must call `stream.aclose()` exactly when it is done, however it ends
(the pipeline does so in a shielded `finally`). `rest` and `stream` are the object itself:
it times the waits on the upstream (so overhead = total - upstream stays true), remembers
a mid-stream failure (which counts against the deployment's breaker), and on close hands
the lease and the in-flight slot back to dispatch.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

import anyio

from proxy.dispatch.attempts import Attempt, Outcome
from proxy.policy.registry import Deployment, ModelSpec
from proxy.providers.base import ChunkStream, UpstreamError, Usage


class StreamOwner(Protocol):
    """What an open stream tells the dispatcher that opened it (its lease, breaker, metrics)."""

    async def stream_closed(self, stream: OpenStream) -> None: ...


def substantive(chunk: dict[str, Any]) -> bool:
    """Worth the client's first byte: some delta content, a tool call, a refusal, a finish.
    A role-only chunk (`{"role": "assistant", "content": ""}`) or a usage chunk is not."""
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason"):
            return True
        delta = choice.get("delta") or {}
        for key, value in delta.items():
            if key != "role" and value:
                return True
    return False


class OpenStream:
    def __init__(
        self,
        dispatcher: StreamOwner,
        attempt: Attempt,
        outcome: Outcome,
        model: ModelSpec,
        deployment: Deployment,
        lease: object,
        upstream: ChunkStream,
        chunks: Any,
        buffered: list[dict[str, Any]],
        ended: bool,
        waited: float,
    ) -> None:
        self.first = buffered[0]
        self._buffer = deque(buffered[1:])
        self._dispatcher = dispatcher
        self.attempt, self.outcome, self.model, self.deployment, self.lease = attempt, outcome, model, deployment, lease
        self._upstream = upstream
        self._chunks = chunks
        self._poll = getattr(chunks, "poll", None)  # the chunks already read, without an await (OpenAIStream)
        self.finished = ended  # the upstream ended the stream properly
        self.error: UpstreamError | None = None
        self.upstream_seconds = waited
        self._closed = False

    @property
    def rest(self) -> OpenStream:
        return self

    @property
    def stream(self) -> OpenStream:
        return self

    @property
    def usage(self) -> Usage | None:
        return self._upstream.usage

    def ready(self) -> bool:
        """Whether the next chunk comes without waiting on the upstream (as far as the upstream's
        stream can tell: one without `ready()` never says so)."""
        if self._buffer:
            return True
        ready = getattr(self._upstream, "ready", None)
        return ready is not None and not self.finished and self.error is None and ready()

    def poll(self) -> dict[str, Any] | None:
        """The next chunk if it is already here (no waiting on the upstream: not timed), else None;
        then `__anext__` waits for it. A mid-stream failure it finds is remembered as `__anext__`'s is."""
        if self._buffer:
            return self._buffer.popleft()
        poll = self._poll
        if poll is None or self.finished or self.error is not None or self._closed:
            return None
        try:
            chunk: dict[str, Any] | None = poll()
        except UpstreamError as exc:
            self.error = exc
            raise
        return chunk

    def __aiter__(self) -> OpenStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._buffer:
            return self._buffer.popleft()
        if self.finished or self.error is not None or self._closed:
            raise StopAsyncIteration
        started = time.perf_counter()
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self.finished = True
            raise
        except UpstreamError as exc:
            self.error = exc
            raise
        finally:
            self.upstream_seconds += time.perf_counter() - started

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            try:
                if hasattr(self._chunks, "aclose"):
                    await self._chunks.aclose()
            except Exception:
                pass
            finally:
                await self._upstream.aclose()
                await self._dispatcher.stream_closed(self)
