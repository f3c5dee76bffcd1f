"""The SSE relay: an open upstream stream -> OpenAI server-sent events for the client.

Relays chunks with the answering model's id, strips the upstream's usage chunk and sends
its own last (only if the client asked for usage), ends with `data: [DONE]`, or with an
error event if the upstream fails after the first byte (no fallback is possible then).
However it ends (done, upstream failure, client gone), the upstream is closed and the
request accounted exactly once, shielded from cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from proxy.dispatch.dispatcher import OpenStream
from proxy.errors import ServiceUnavailable
from proxy.providers import sse
from proxy.providers.base import UpstreamError
from proxy.request import accounting
from proxy.request.drain import StreamCut
from proxy.request.exchange import Exchange
from proxy.request.inbound import StreamRenderer
from proxy.request.signals import StreamSignals
from proxy.request.to_the_end import to_the_end

if TYPE_CHECKING:
    from proxy.request.appstate import AppState


async def stream_events(
    state: AppState, ex: Exchange, opened: OpenStream, renderer: StreamRenderer | None = None
) -> AsyncGenerator[bytes, None]:
    """Chat chunks as OpenAI SSE, or through `renderer` as another API's events."""
    assert ex.request is not None
    model_id = ex.outcome.model.id if ex.outcome.model else ex.request.model
    include_usage = ex.request.include_usage
    text_chars = 0
    last: dict[str, Any] = opened.first
    tracked = state.drain.track()
    watch = StreamSignals()
    out: list[bytes] = []  # events not yet sent: the ones already here go out in one write
    try:
        chunk: dict[str, Any] | None = opened.first
        while chunk is not None:
            if chunk.get("choices") or not chunk.get("usage"):  # the upstream's usage chunk: ours comes last
                chunk["model"] = model_id
                text_chars += watch.feed(chunk)  # signals and the characters produced, one pass
                if ex.ttft_s is None:
                    ex.ttft_s = ex.total_seconds
                last = chunk
                out.append(sse.encode(chunk) if renderer is None else renderer.chunk(chunk))
            # the next chunk, if it is already read, without an await (a cut is seen by tracked.next)
            chunk = None if tracked.cut else opened.poll()
            if chunk is None:
                if out and not opened.ready():  # the next chunk is not here yet: send what is
                    yield _joined(out)
                chunk = await tracked.next(opened.rest)
        accounting.settle_usage(ex, opened.stream.usage, text_chars)
        ex.signals = watch.signals()
        if renderer is not None:
            out.append(await renderer.end(ex.usage))
        elif include_usage and ex.usage is not None:
            out.append(
                sse.encode(
                    {
                        "id": last.get("id"),
                        "object": "chat.completion.chunk",
                        "created": last.get("created"),
                        "model": model_id,
                        "choices": [],
                        "usage": ex.usage.as_openai(),
                    }
                )
            )
        if renderer is None:
            out.append(sse.DONE)
        yield Last(_joined(out))
        ex.completed(200)  # once the end is out (a client gone before it: cancelled)
    except UpstreamError as exc:
        ex.outcome.attempts[-1].error = exc
        accounting.settle_usage(ex, opened.stream.usage, text_chars)
        ex.upstream_failed(exc)
        message = f"The upstream failed mid-stream: {exc.message}"
        if renderer is not None:
            out.append(renderer.error(exc.kind, message))
        else:
            out.append(sse.encode({"error": {"message": message, "type": "upstream_error", "param": None, "code": exc.kind}}))
        yield Last(_joined(out))
    except StreamCut:  # the server is stopping and the grace is over: end the stream so SDKs see why
        accounting.settle_usage(ex, opened.stream.usage, text_chars)
        cut = ServiceUnavailable(
            f"The proxy is shutting down and cut this stream after its {state.drain.grace_s:g}s grace. Retry the request.",
            code="server_shutting_down",
        )
        ex.failed(cut)
        out.append(sse.encode(cut.body()))
        yield Last(_joined(out))
    finally:
        state.drain.untrack(tracked)
        # the client may have gone (or go now): still close and account, to the end
        await to_the_end(_close_and_account(state, ex, opened, text_chars))


class Last(bytes):
    """The relay's last body part: RelayResponse sends it as the end of the body (one write, not
    a part and then an empty end)."""


def _joined(out: list[bytes]) -> bytes:
    """The pending events as one body part (emptied)."""
    data = out[0] if len(out) == 1 else b"".join(out)
    out.clear()
    return data


async def _close_and_account(state: AppState, ex: Exchange, opened: OpenStream, text_chars: int) -> None:
    await opened.stream.aclose()
    if ex.finished is None:  # cancelled: the client disconnected
        accounting.settle_usage(ex, opened.stream.usage, text_chars)
        ex.cancelled(asyncio.CancelledError())
    await state.record(ex)


class RelayResponse(StreamingResponse):
    """The SSE relay. If the response never gets to iterate the relay (the client left
    first), the relay is closed here, so its cleanup (close upstream, account) still runs.

    The events are sent in this task, without Starlette's task group and its second task
    listening for the client's disconnect (what Starlette does itself for ASGI servers of spec
    2.4): the app's CancelOnDisconnect (proxy/request/disconnect.py) already watches for the
    disconnect and cancels this handler. In the profile of a streamed request (py-spy, c=4)
    anyio's task machinery was ~12% of the CPU."""

    def __init__(self, events: AsyncGenerator[bytes, None], first: bytes, **kwargs: Any) -> None:
        super().__init__(events, **kwargs)
        self._first = first
        self._events = events

    async def stream_response(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        first = self._first
        ended = type(first) is Last
        await send({"type": "http.response.body", "body": first, "more_body": not ended})
        async for part in self._events:  # to its end, after a Last too: the relay finishes its accounting
            ended = type(part) is Last
            await send({"type": "http.response.body", "body": part, "more_body": not ended})
        if not ended:  # another stream (the tool loop's): an empty end
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.stream_response(send)
        except OSError:
            raise ClientDisconnect() from None
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()
