"""How uvicorn holds client connections (issue 11 item 5): bounded header time, body time
(in the app, proxy/request/pipeline.py), idle keep-alive time and concurrency.

uvicorn has no header timeout: a connection that never finishes its request line and
headers (slowloris, or simply idle after connecting) stays open until the client leaves.
`HeaderTimeoutProtocol` closes it `AUTOROUTE_HEADER_TIMEOUT_S` after it opened (or after the
first byte of a later request on a keep-alive connection) unless the headers are complete by
then. Idle keep-alive connections close after `timeout_keep_alive_s` (uvicorn's own timer);
`limit_concurrency` caps connections + requests (uvicorn answers 503 beyond it).

The timeout is read from the environment when the module loads, because uvicorn's worker
processes import the class by name; `uvicorn_options()` puts the setting there first.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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
