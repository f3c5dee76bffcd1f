"""One HTTP/1.1 upstream connection (an asyncio Protocol with httptools' C response parser) and
the response it delivers: the lean client's wire half (the pool is h1pool.py).

The parser runs in `data_received`: the head's fields and the body's chunks (Content-Length,
chunked, or until EOF) land in the connection's state, and the one task that owns the
connection (HTTP/1.1: one request at a time) is woken. Failures are httpx's exception classes,
so upstream_errors.transport_error and the dispatcher's retries, failover and breakers see what
they saw from httpx: a lost connection is ReadError, a close before the response's end or a
malformed response is RemoteProtocolError, a silent upstream is ReadTimeout (per read, as
httpcore), a peer that stops reading is WriteTimeout.

Back-pressure: above HIGH_WATER buffered body bytes the socket stops being read until the
reader has taken them (a slow client of a streamed answer slows the upstream, bounded memory).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httptools
import httpx

from proxy.providers.waiting import Waiting

if TYPE_CHECKING:
    from proxy.providers.h1pool import Pool

HIGH_WATER = 256 * 1024  # buffered body bytes at which the socket stops being read
Origin = tuple[str, str, int]  # scheme, host, port


class Connection(Waiting, asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> None:
        self.loop = loop
        self.origin = origin
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False  # a request is being sent or its response read
        self.closed = False  # no further request may use it (EOF, lost, stray bytes, closed)
        self.idle_since = 0.0
        self.read_paused = self.write_paused = self.expired = False
        self.waiter = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_done = self.done = False
        self.keep_alive = True
        self.body: list[bytes] = []
        self.size = 0
        self.error: Exception | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.done:  # bytes nobody asked for: the connection cannot be trusted
            self.closed = True
            self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response from the upstream ({exc})"))
        self.wake()

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.wake()

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        if self.done:  # a second response to one request: stop parsing, the connection is dropped
            raise httpx.RemoteProtocolError("the upstream sent more than one response")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = self.status >= 200  # an interim 1xx head is skipped

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.size += len(body)
        if self.size > HIGH_WATER and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.head_done:
            self.done = True
        else:
            self.raw_headers = []

    # --- state ---

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.error is None and not self.done:
            self.error = error
        self.transport.close()

    def _ended(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy and not self.done and self.error is None:
            if exc is not None:
                self.error = httpx.ReadError(str(exc) or type(exc).__name__)
            elif self.head_done and _until_eof(self.raw_headers):
                self.done, self.keep_alive = True, False  # a body delimited by the close
            elif self.head_done:
                self.error = httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            else:
                self.error = httpx.RemoteProtocolError("Server disconnected without sending a response.")
        self.write_paused = False
        self.wake()

    # --- what the pool and the response call ---

    async def request(self, data: bytes, write_timeout: float | None, read_timeout: float | None) -> None:
        """Send one request (head and body in one write) and wait for the response's head."""
        self._reset()
        self.busy = True
        if self.closed or self.transport.is_closing():
            raise httpx.WriteError("the connection is closed")
        self.transport.write(data)
        if self.write_paused:
            await self.wait(self.loop, write_timeout, lambda: not self.write_paused, httpx.WriteTimeout)
            if self.closed and self.error is None:
                raise httpx.WriteError("the connection was lost while writing")
        if not self.head_done:
            await self.wait(self.loop, read_timeout, lambda: self.head_done or self.error is not None, httpx.ReadTimeout)
        if not self.head_done:
            raise self.error  # type: ignore[misc]

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        """What the body has buffered (waiting for some if none), None at its end."""
        if not self.body and not self.done and self.error is None:
            await self.wait(self.loop, timeout, lambda: self.body or self.done or self.error is not None, httpx.ReadTimeout)
        body = self.body
        if body:
            data = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
            self.size = 0
            if self.read_paused:
                self.read_paused = False
                if not self.closed:
                    self.transport.resume_reading()
            return data
        if self.done:
            return None
        raise self.error  # type: ignore[misc]

    def close(self) -> None:
        self.closed = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if transport.get_extra_info("sslcontext") is not None:
                transport.abort()  # no close_notify exchange (as httpcore: standard_compatible=False)
            else:
                transport.close()


def _until_eof(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a body has no length of its own (neither Content-Length nor chunked)."""
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            return False
    return True


class Headers(dict[str, str]):
    """A response's header fields, names lower-cased (repeated fields joined by ', ')."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        super().__init__()
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1").strip()
            self[key] = f"{self[key]}, {text}" if key in self else text

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)


class Response:
    """An upstream response whose body is still to be read: `aread()` or `aiter_raw()`, then
    `aclose()` (always: it gives the connection back, or closes it when the body was not read
    to its end)."""

    __slots__ = ("status_code", "url", "_raw", "_headers", "_pool", "_conn", "_content")

    def __init__(self, pool: Pool, conn: Connection, url: str) -> None:
        self.status_code = conn.status
        self.url = url
        self._raw = conn.raw_headers
        self._headers: Headers | None = None
        self._pool: Pool = pool
        self._conn: Connection | None = conn
        self._content: bytes | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._raw)
        return self._headers

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise httpx.ResponseNotRead()
        return self._content

    async def _next(self) -> bytes | None:
        conn = self._conn
        if conn is None:
            raise httpx.StreamClosed()
        chunk = await conn.next_chunk(self._pool.read_timeout)
        if chunk is None:
            self._conn = None
            self._pool.release(conn, conn.keep_alive)
        return chunk

    def buffered(self) -> bool:
        """Whether some of the body has arrived and not been read yet."""
        conn = self._conn
        return conn is not None and bool(conn.body)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        while (chunk := await self._next()) is not None:
            yield chunk

    async def aread(self) -> bytes:
        if self._content is None:
            parts = []
            while (chunk := await self._next()) is not None:
                parts.append(chunk)
            content = parts[0] if len(parts) == 1 else b"".join(parts)
            self._content = _decoded(content, self.headers.get("content-encoding")) if _encoded(self._raw) else content
        return self._content

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # the body was not read to its end: the connection cannot be reused
            self._pool.release(conn, False)

    def to_httpx(self) -> httpx.Response:
        """The read response as httpx's (litellm's response transformers take one)."""
        skip = (b"content-encoding", b"content-length", b"transfer-encoding")
        headers = [(k, v) for k, v in self._raw if k.lower() not in skip]
        return httpx.Response(self.status_code, headers=headers, content=self.content, request=httpx.Request("POST", self.url))


def _encoded(raw: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"content-encoding" for name, _ in raw)


def _decoded(content: bytes, encoding: str | None) -> bytes:
    """A gzip/deflate body decoded (the client asks for none; a server may still send one)."""
    kind = (encoding or "").strip().lower()
    if kind not in ("gzip", "x-gzip", "deflate"):
        return content
    try:
        return zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(content)  # gzip or zlib header
    except zlib.error:
        if kind == "deflate":
            try:
                return zlib.decompressobj(-zlib.MAX_WBITS).decompress(content)  # raw deflate
            except zlib.error:
                pass
        raise httpx.DecodingError(f"the upstream's {kind} body could not be decoded") from None
