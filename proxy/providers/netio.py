"""An httpcore network backend on plain asyncio: httpcore keeps the pooling and HTTP/1.1 logic,
the sockets are asyncio transports with a small Protocol and a buffer.

httpcore's default backend goes through anyio: every read and write opens a cancel scope
(`fail_after`) and a stream wrapper, and the idle check (`is_readable`) polls the socket with a
syscall. Here a read returns what the protocol has buffered and only waits (with one timer for
the timeout) when there is nothing yet; `is_readable` is the protocol's own state.

The contract httpcore relies on, kept here:
- errors are httpcore's: ConnectTimeout/ConnectError (connect and TLS handshake), ReadTimeout/
  ReadError, WriteTimeout/WriteError, so httpx maps them to its own and the dispatcher's
  retries, failover and breakers see the same failures as before;
- a read returns b"" at end of stream (the peer closed cleanly), raises ReadError when the
  connection was lost with an error and nothing is left in the buffer;
- writes respect the transport's flow control (wait for `resume_writing`, bounded by the write
  timeout);
- cancellation leaves the stream consistent (data stays buffered, no waiter left behind);
  httpcore closes a connection whose request was cancelled;
- TLS by `loop.start_tls` with the caller's SSL context and server_hostname.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

from httpcore import AsyncNetworkBackend, AsyncNetworkStream, ConnectError, ConnectTimeout, ReadError, ReadTimeout, WriteError, WriteTimeout
from httpcore._backends.base import SOCKET_OPTION

from proxy.providers.waiting import Waiting

HIGH_WATER = 256 * 1024  # buffered bytes at which the socket stops being read
LOW_WATER = 64 * 1024  # ... and starts again


class _Protocol(Waiting, asyncio.Protocol):
    """The socket's side: buffers what arrives, records EOF and loss, wakes the one waiter
    (HTTP/1.1: httpcore reads or writes a connection from one task at a time)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False  # no more data will arrive (EOF or connection lost)
        self.error: BaseException | None = None  # why the connection was lost, when it was not clean
        self.lost = False
        self.read_paused = False
        self.write_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        self.wake()

    def eof_received(self) -> bool:
        self.eof = True
        self.wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self.error = exc
        self.wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.wake()

    def take(self, max_bytes: int) -> bytes:
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(data) > max_bytes:
            data, rest = data[:max_bytes], data[max_bytes:]
            chunks[:] = [rest]
            self.size = len(rest)
        else:
            chunks.clear()
            self.size = 0
        if self.read_paused and self.size <= LOW_WATER and not self.lost:
            self.read_paused = False
            self.transport.resume_reading()
        return data


class AsyncioStream(AsyncNetworkStream):
    """One connection (plain or TLS) as httpcore sees it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, tls: bool = False) -> None:
        self._transport = transport
        self._protocol = protocol
        self._tls = tls
        self._loop = asyncio.get_running_loop()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        if not p.chunks and not p.eof:
            await p.wait(self._loop, timeout, lambda: p.chunks or p.eof, ReadTimeout)
        if p.chunks:
            return p.take(max_bytes)
        if p.error is not None:
            raise ReadError(str(p.error) or type(p.error).__name__)
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        p = self._protocol
        if p.lost or self._transport.is_closing():
            raise WriteError("the connection is closed")
        try:
            self._transport.write(buffer)
        except (OSError, RuntimeError) as exc:
            raise WriteError(str(exc)) from exc
        if p.write_paused:
            await p.wait(self._loop, timeout, lambda: not p.write_paused or p.lost, WriteTimeout)
            if p.lost:
                raise WriteError("the connection was lost while writing")

    async def aclose(self) -> None:
        transport = self._transport
        if self._tls:
            transport.abort()  # no close_notify exchange (as httpcore's anyio backend: standard_compatible=False)
        elif not transport.is_closing():
            transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport = await self._loop.start_tls(self._transport, self._protocol, ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._transport.abort()
            raise ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            self._transport.abort()
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # only when the loop has no TLS support
            raise ConnectError("the event loop could not start TLS")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol, tls=True)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection with data or EOF pending is stale
            p = self._protocol
            return bool(p.chunks) or p.eof or self._transport.is_closing()
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        return await _connect(loop.create_connection(_Protocol, host, port, local_addr=local), timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await _connect(loop.create_unix_connection(_Protocol, path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(opening: Any, timeout: float | None, socket_options: Iterable[SOCKET_OPTION] | None) -> AsyncioStream:
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await opening
    except TimeoutError as exc:  # before OSError: TimeoutError is one
        raise ConnectTimeout("connect timed out") from exc
    except OSError as exc:
        raise ConnectError(str(exc) or type(exc).__name__) from exc
    if socket_options:
        sock: socket.socket = transport.get_extra_info("socket")
        for option in socket_options:
            sock.setsockopt(*option)
    return AsyncioStream(transport, protocol)
