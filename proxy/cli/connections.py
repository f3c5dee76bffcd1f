"""How uvicorn holds client connections (issue 11 item 5): bounded header time, body time
(in the app, proxy/request/pipeline.py), idle keep-alive time and concurrency.

uvicorn has no header timeout: a connection that never finishes its request line and
headers (slowloris, or simply idle after connecting) stays open until the client leaves.
`HeaderTimeoutProtocol` closes it `AUTOROUTE_HEADER_TIMEOUT_S` after it opened (or after the
first byte of a later request on a keep-alive connection) unless the headers are complete by
then. Idle keep-alive connections close after `timeout_keep_alive_s` (uvicorn's own timer);
`limit_concurrency` caps connections + requests (uvicorn answers 503 beyond it).

A response whose length is known (a Content-Length header) goes out in one write: uvicorn
writes the status line and headers as soon as the app sends `http.response.start`, and the body
in a second write; `HeldHeaders` keeps the first until the body is written and then sends both
with one `writelines` (one writev, one TCP segment for a small response, one wake-up of the
client). Streams (no Content-Length) are untouched: their headers leave at once.

The timeout is read from the environment when the module loads, because uvicorn's worker
processes import the class by name; `uvicorn_options()` puts the setting there first.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.request.disconnect import LOSS_HOOK, LossHook
from proxy.request.drain import UVICORN_MARGIN_S
from proxy.settings import Settings

_ENV = "AUTOROUTE_HEADER_TIMEOUT_S"


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout_s: float = float(os.environ.get(_ENV) or 10.0)
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.send, HeldHeaders):
            cycle.send = HeldHeaders(cycle)  # type: ignore[method-assign]
            # the request's handler learns of a lost connection from here (proxy/request/disconnect.py)
            extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})
            extensions[LOSS_HOOK] = LossHook()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            hook = (cycle.scope.get("extensions") or {}).get(LOSS_HOOK)
            if isinstance(hook, LossHook):
                hook.fire()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class _Holding:
    """The connection's transport while a response's headers wait for its body: writes are kept,
    in order, and leave together on `release()` (or on `close()`, first)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.held.append(data)

    def writelines(self, lines: Iterable[bytes]) -> None:
        self.held.extend(lines)

    def release(self) -> None:
        held, self.held = self.held, []
        if held and not self.transport.is_closing():
            self.transport.writelines(held)

    def close(self) -> None:
        self.release()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HeldHeaders:
    """A request cycle's ASGI `send`: a start message with a Content-Length is written with the
    first body message (see the module's docstring); everything else passes straight through."""

    __slots__ = ("cycle", "send")

    def __init__(self, cycle: Any) -> None:
        self.cycle, self.send = cycle, cycle.send

    async def __call__(self, message: Any) -> None:
        cycle = self.cycle
        holding = cycle.transport if isinstance(cycle.transport, _Holding) else None
        if holding is None:
            if message["type"] == "http.response.start" and _has_length(message):
                holding = cycle.transport = _Holding(cycle.transport)
            await self.send(message)
            return
        try:
            await self.send(message)
        finally:
            cycle.transport = holding.transport
            holding.release()


def _has_length(message: Any) -> bool:
    return any(name.lower() == b"content-length" for name, _ in message.get("headers", ()))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run / uvicorn.Config keyword arguments for the connection limits."""
    os.environ[_ENV] = str(settings.header_timeout_s)
    HeaderTimeoutProtocol.header_timeout_s = settings.header_timeout_s
    return {
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": max(1, math.ceil(settings.timeout_keep_alive_s)),
        "limit_concurrency": settings.limit_concurrency,
        # our own cut of open streams happens at the grace (proxy/request/drain.py); uvicorn's
        # cancellation of whatever is left comes after it
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace_s) + UVICORN_MARGIN_S,
    }
