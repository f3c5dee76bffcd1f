"""Pooled HTTP clients (one per deployment, for the process's life) and error mapping.

Every upstream failure becomes an UpstreamError with a short message that is safe to show:
the upstream's own error message (truncated, with the deployment's key redacted), never
the request body, never a header.
"""

from __future__ import annotations

import email.utils
import math
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC

import httpcore
import httpx
import orjson

from proxy.policy import Policy
from proxy.policy.registry import Deployment
from proxy.providers.base import UpstreamCall, UpstreamError, redact_secrets
from proxy.providers.netio import AsyncioBackend

MAX_ERROR_CHARS = 300


SHARDS = 8


class Pool:
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


class Upstreams:
    """One keep-alive connection pool per deployment, shared by every request for the
    process's life."""

    def __init__(self, policy: Policy, environ: Mapping[str, str], *, max_connections: int = 512) -> None:
        self._environ = environ
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        # One TLS context for every pool: building one loads the CA bundle (~20 ms, ~0.5 MB).
        tls = httpx.create_ssl_context()
        self._pools = {dep.id: Pool(dep, limits, tls) for dep in policy.deployments}

    def pool(self, dep: Deployment) -> Pool:
        return self._pools[dep.id]

    def api_key(self, dep: Deployment) -> str | None:
        return dep.api_key(self._environ)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()


def transport_error(exc: Exception, call: UpstreamCall, url: str | None = None) -> UpstreamError:
    dep = call.deployment
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        where = (url or dep.api_base).split("?", 1)[0]  # the URL tried (never a query: Gemini puts its key there)
        kind, msg = "connect", f"could not connect to {dep.id} at {where} ({type(exc).__name__})"
    elif isinstance(exc, httpx.TimeoutException):
        kind, msg = "timeout", f"{dep.id} did not answer in time ({type(exc).__name__})"
    elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        kind, msg = "stream_cut", f"{dep.id} closed the connection mid-response"
    else:
        kind, msg = "connect", f"transport error talking to {dep.id} ({type(exc).__name__})"
    return UpstreamError(dep.provider, dep.id, kind, msg, model=call.model.id)


async def read_error(resp: httpx.Response, call: UpstreamCall) -> UpstreamError:
    """Read a non-2xx upstream response's body (bounded by the read timeout) and map it."""
    try:
        content = await resp.aread()
    except httpx.HTTPError:
        content = b""
    finally:
        await resp.aclose()
    return response_error(resp, call, content)


def response_error(resp: httpx.Response, call: UpstreamCall, content: bytes | None = None) -> UpstreamError:
    """Map a non-2xx upstream response (its body read: `content`, or `resp.content`)."""
    dep, status = call.deployment, resp.status_code
    if status == 429:
        kind = "rate_limited"
    elif status >= 500:
        kind = "server_error"
    elif status == 408:
        kind = "timeout"
    else:
        kind = "rejected"
    detail = _error_message(resp.content if content is None else content, call.api_key)
    message = f"{dep.id} answered {status}" + (f": {detail}" if detail else "")
    return UpstreamError(dep.provider, dep.id, kind, message, status=status, retry_after=retry_after(resp.headers), model=call.model.id)


def bad_response(call: UpstreamCall, what: str) -> UpstreamError:
    dep = call.deployment
    return UpstreamError(dep.provider, dep.id, "bad_response", f"{dep.id} sent {what}", status=200, model=call.model.id)


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (delta-seconds or an HTTP date). A value
    that is neither (`1s`, `soon`, a broken date) counts as absent: the normal backoff applies."""
    if ms := headers.get("retry-after-ms"):
        seconds = _number(ms)
        if seconds is not None:
            return seconds / 1000
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return max(0.0, parsed.timestamp() - time.time())


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def safe_detail(text: str, api_key: str | None, limit: int = MAX_ERROR_CHARS) -> str:
    """Upstream text made safe to show: keys redacted first (the deployment's own, and anything
    that looks like a key or a bearer token), then truncated, so a key straddling the cut cannot
    leak its prefix."""
    return redact_secrets(text, api_key)[:limit]


def _error_message(content: bytes, api_key: str | None = None) -> str:
    """The upstream's own error message (OpenAI, Anthropic and Gemini shapes), redacted, then truncated."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        text = safe_detail(content[: 4 * MAX_ERROR_CHARS].decode("utf-8", "replace").strip(), api_key)
        return text if text and "<" not in text[:1] else ""
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message = err.get("message") or err.get("status") or ""
    elif isinstance(err, str):
        message = err
    else:
        message = ""
    return safe_detail(str(message), api_key)
