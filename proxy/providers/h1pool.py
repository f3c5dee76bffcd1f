"""The lean upstream client: one deployment's keep-alive pool of HTTP/1.1 connections (h1.py),
in place of httpx + httpcore on the hot path.

What it does, and no more, because that is all a provider call needs: POST a body to a URL
with the caller's headers plus the deployment's, over plain TCP or TLS (the process's one SSL
context, server name checked), and hand back the response with its body still to be read.
Connections are kept per origin (scheme, host, port), reused newest first, dropped after
KEEPALIVE_S idle or when the upstream closed them; at most `max_connections` are open, a request
beyond that waits for one (the pool timeout). Timeouts are the deployment's: connect (TCP and
TLS handshake), read (per read), write (the read timeout, as before), pool (the connect
timeout). Every failure is one of httpx's exception classes, mapped by transport_error to the
UpstreamError the dispatcher already handles; a request cancelled while it waits for its answer
closes its connection. What the httpx client did that this one does not: nothing the proxy used
(it ran with trust_env=False, so no proxy from the environment; HTTP/1.1 only; no redirects,
cookies or auth hooks). `AUTOROUTE_UPSTREAM_CLIENT=httpx` selects httpx's pool (httpx_pool.py)
instead, should a deployment ever need it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from urllib.parse import quote, urlsplit

import httpx

from proxy.policy.registry import Deployment
from proxy.providers.base import UpstreamCall
from proxy.providers.h1 import Connection, Origin, Response
from proxy.providers.upstream_errors import transport_error

KEEPALIVE_S = 5.0  # httpx's default keep-alive expiry
USER_AGENT = b"user-agent: autoroute\r\naccept: */*\r\n"
_SAFE = "/?&=:@!$'()*+,;~%-._"  # what a path and query keep as it is
Target = tuple[Origin, bytes]  # where, and the request head's first lines (request line + host)


class Pool:
    def __init__(self, dep: Deployment, tls: ssl.SSLContext, max_connections: int = 512) -> None:
        self.deployment = dep
        self.tls = tls
        t = dep.timeouts
        self.connect_timeout, self.read_timeout, self.write_timeout, self.pool_timeout = t.connect_s, t.read_s, t.read_s, t.connect_s
        self.max_connections = max(1, max_connections)
        self.open = 0  # connections open or opening, idle ones included
        self.idle: dict[Origin, list[Connection]] = {}
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.extra = _header_lines([(k.lower().encode(), v.encode()) for k, v in dep.headers.items()])
        self._targets: dict[str, Target] = {}
        self._closed = False

    def target(self, url: str) -> Target:
        found = self._targets.get(url)
        if found is None:
            if len(self._targets) > 64:  # per-model URLs (Gemini) stay few; never grow unbounded
                self._targets.clear()
            found = self._targets[url] = _parse(url)
        return found

    async def send(self, call: UpstreamCall, url: str, headers: list[tuple[bytes, bytes]], content: bytes) -> Response:
        """POST `content` and return the response once its head has arrived."""
        try:
            origin, start = self.target(url)
            head = start + _header_lines(headers) + self.extra + b"content-length: %d\r\n\r\n" % len(content)
            conn = await self._acquire(origin)
        except httpx.HTTPError as exc:
            raise transport_error(exc, call, url) from None
        try:
            await conn.request(head + content, self.write_timeout, self.read_timeout)
        except BaseException as exc:
            self.release(conn, False)
            if isinstance(exc, httpx.HTTPError):
                raise transport_error(exc, call, url) from None
            raise
        return Response(self, conn, url)

    async def _acquire(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            if self._closed:
                raise httpx.PoolTimeout("the pool is closed")
            idle = self.idle.get(origin)
            now = loop.time()
            while idle:
                conn = idle.pop()
                if conn.closed or now - conn.idle_since > KEEPALIVE_S:
                    self._drop(conn)
                    continue
                conn.busy = True
                return conn
            if self.open < self.max_connections or self._evict():
                self.open += 1
                try:
                    return await self._connect(loop, origin)
                except BaseException:
                    self.open -= 1
                    self._wake()
                    raise
            if deadline is None:
                deadline = now + (self.pool_timeout if self.pool_timeout is not None else 1e9)
            await self._wait_for_room(loop, deadline - now)

    async def _wait_for_room(self, loop: asyncio.AbstractEventLoop, remaining: float) -> None:
        if remaining <= 0:
            raise httpx.PoolTimeout("no connection to the upstream was free in time")
        room: asyncio.Future[None] = loop.create_future()
        self.waiters.append(room)
        timer = loop.call_later(remaining, _time_out, room)
        try:
            await room
        except asyncio.CancelledError:
            if room.done() and not room.cancelled():
                self._wake()  # the room it was woken for goes to the next in line
            raise
        finally:
            timer.cancel()
            if not room.done():
                room.cancel()

    async def _connect(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> Connection:
        scheme, host, port = origin
        tls = self.tls if scheme == "https" else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop, origin), host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise httpx.ConnectTimeout("connect timed out") from exc
        except OSError as exc:  # refused, unreachable, unknown host, TLS failure (ssl.SSLError)
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        conn.busy = True
        return conn

    def release(self, conn: Connection, reuse: bool) -> None:
        """A request is over: its connection back to the idle list (when sound) or closed."""
        if reuse and not conn.closed and not self._closed:
            conn.busy = False
            conn.idle_since = conn.loop.time()
            self.idle.setdefault(conn.origin, []).append(conn)
        else:
            self._drop(conn)
        self._wake()

    def _drop(self, conn: Connection) -> None:
        conn.close()
        self.open -= 1

    def _evict(self) -> bool:
        """Make room by closing an idle connection to another origin (the pool is full)."""
        for idle in self.idle.values():
            if idle:
                self._drop(idle.pop(0))
                return True
        return False

    def _wake(self) -> None:
        while self.waiters:
            room = self.waiters.popleft()
            if not room.done():
                room.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for idle in self.idle.values():
            while idle:
                self._drop(idle.pop())
        while self.waiters:
            room = self.waiters.popleft()
            if not room.done():
                room.set_exception(httpx.PoolTimeout("the pool is closed"))


def _time_out(room: asyncio.Future[None]) -> None:
    if not room.done():
        room.set_exception(httpx.PoolTimeout("no connection to the upstream was free in time"))


def _parse(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise httpx.UnsupportedProtocol(f"the upstream URL must be http:// or https:// with a host, not {scheme or 'none'}://")
    port = parts.port or (443 if scheme == "https" else 80)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never userinfo in the Host header
    path = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_SAFE)  # non-ASCII percent-encoded
    start = b"POST " + path.encode() + b" HTTP/1.1\r\nhost: " + _ascii(netloc) + b"\r\n" + USER_AGENT
    _check(start, 4)
    return (scheme, parts.hostname, port), start


def _header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = b"".join([name + b": " + value + b"\r\n" for name, value in headers])
    _check(lines, len(headers))
    return lines


def _ascii(netloc: str) -> bytes:
    try:
        return netloc.encode("ascii")
    except UnicodeEncodeError:
        return netloc.encode("idna")


def _check(lines: bytes, count: int) -> None:
    """No field may smuggle a line break (a key or URL with CR/LF would forge headers)."""
    if lines.count(b"\n") != count or lines.count(b"\r") != count:
        raise httpx.LocalProtocolError("a header or the URL holds a line break")
