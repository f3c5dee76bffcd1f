"""The httpx client's pool (httpcore on netio.py's asyncio backend), kept as the fallback to the
lean client (h1pool.py): `AUTOROUTE_UPSTREAM_CLIENT=httpx` selects it for every deployment."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpcore
import httpx

from proxy.policy.registry import Deployment
from proxy.providers.base import UpstreamCall
from proxy.providers.netio import AsyncioBackend
from proxy.providers.upstream_errors import transport_error

SHARDS = 8


class HttpxPool:
    """One deployment's keep-alive connection pool, used through httpx's transport interface
    (`handle_async_request`): the client layer (redirects, cookies, auth hooks, URL merging)
    has nothing to do for an API call and measured ~120 us of CPU a request. URLs, the
    timeout extension and the fixed headers are prepared once.

    The pool is sharded: httpcore scans every connection of a pool on each request (and
    polls idle sockets), so its cost grows with the number of connections. Measured against
    the fake upstream at 64 concurrent requests: one pool 1,538 us of CPU a request (649
    req/s), eight shards 459 us (2,176 req/s). A request goes to the shard with the fewest
    requests in flight (counted until its response body is closed), so sequential traffic
    keeps to one connection and concurrent traffic spreads evenly.

    The shards' httpcore pools run on `netio.AsyncioBackend` (asyncio transports) instead of
    httpcore's anyio backend: client CPU per request against the fake upstream -25% (callgrind,
    c=1) to -31% (process CPU, c=16); see the README's Performance section."""

    def __init__(
        self,
        dep: Deployment,
        limits: httpx.Limits,
        tls: ssl.SSLContext,
        shards: int = SHARDS,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.deployment = dep
        per_shard = httpx.Limits(
            max_connections=max(1, (limits.max_connections or 512) // shards),
            max_keepalive_connections=max(1, (limits.max_keepalive_connections or 512) // shards),
        )
        backend = AsyncioBackend() if backend is None else backend
        self.shards = [_transport(per_shard, tls, backend) for _ in range(shards)]
        self.in_flight = [0] * shards
        t = dep.timeouts
        self.timeout = {"connect": t.connect_s, "read": t.read_s, "write": t.read_s, "pool": t.connect_s}
        self.extra_headers = [(k.lower().encode(), v.encode()) for k, v in dep.headers.items()]
        self._urls: dict[str, httpx.URL] = {}

    def url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 64:  # per-model URLs (Gemini) stay few; never grow unbounded
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def send(self, call: UpstreamCall, url: str, headers: list[tuple[bytes, bytes]], content: bytes) -> httpx.Response:
        """POST and return the response with its body still to be read (stream or `aread()`)."""
        request = httpx.Request(
            "POST",
            self.url(url),
            headers=headers + self.extra_headers,
            content=content,
            extensions={"timeout": self.timeout},
        )
        busy = self.in_flight
        shard = busy.index(min(busy))
        busy[shard] += 1
        try:
            resp = await self.shards[shard].handle_async_request(request)
        except BaseException as exc:
            busy[shard] -= 1
            if isinstance(exc, httpx.HTTPError):
                raise transport_error(exc, call, url) from None
            raise
        resp.stream = _Counted(resp.stream, busy, shard)  # type: ignore[arg-type]
        return resp

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


def _transport(limits: httpx.Limits, tls: ssl.SSLContext, backend: httpcore.AsyncNetworkBackend) -> httpx.AsyncHTTPTransport:
    """httpx's transport (its exception and response mapping) over an httpcore pool on `backend`
    (httpx has no parameter for the network backend, so its pool is replaced)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, verify=tls, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport


class _Counted(httpx.AsyncByteStream):
    """A response body that gives its shard's in-flight slot back when it is closed."""

    __slots__ = ("_inner", "_busy", "_shard", "_open")

    def __init__(self, inner: httpx.AsyncByteStream, busy: list[int], shard: int) -> None:
        self._inner, self._busy, self._shard, self._open = inner, busy, shard, True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._open:
                self._open = False
                self._busy[self._shard] -= 1
