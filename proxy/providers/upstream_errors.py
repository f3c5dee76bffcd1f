"""Upstream failures as UpstreamErrors with a short message that is safe to show: the upstream's
own error message (truncated, with the deployment's key redacted), never the request body,
never a header. Transport failures arrive as httpx's exception classes, from either client (the
lean one in h1pool.py raises the same classes)."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import httpx
import orjson

from proxy.providers.base import UpstreamCall, UpstreamError, redact_secrets

MAX_ERROR_CHARS = 300


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


async def read_error(resp: Any, call: UpstreamCall) -> UpstreamError:
    """Read a non-2xx upstream response's body (bounded by the read timeout) and map it."""
    try:
        content = await resp.aread()
    except httpx.HTTPError:
        content = b""
    finally:
        await resp.aclose()
    return response_error(resp, call, content)


def response_error(resp: Any, call: UpstreamCall, content: bytes | None = None) -> UpstreamError:
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


def mid_stream_error(call: UpstreamCall, err: Any) -> UpstreamError:
    """An error event inside a stream (`{"error": ...}`, any provider's): a server error, its message redacted."""
    detail = err.get("message", "") if isinstance(err, dict) else str(err or "")
    dep = call.deployment
    return UpstreamError(
        dep.provider, dep.id, "server_error", f"{dep.id} failed mid-stream: {safe_detail(str(detail), call.api_key)}", model=call.model.id
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
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
