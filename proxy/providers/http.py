"""The upstream pools (one per deployment, for the process's life) and the error mapping.

Provider calls go through the lean HTTP/1.1 client (h1pool.py); `AUTOROUTE_UPSTREAM_CLIENT=httpx`
selects httpx + httpcore (httpx_pool.py) instead. Both raise httpx's exception classes, which
upstream_errors.py maps to UpstreamErrors (re-exported here for the providers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from proxy.policy import Policy
from proxy.policy.registry import Deployment
from proxy.providers.h1 import Response
from proxy.providers.h1pool import Pool
from proxy.providers.httpx_pool import HttpxPool
from proxy.providers.upstream_errors import (
    MAX_ERROR_CHARS,
    bad_response,
    mid_stream_error,
    read_error,
    response_error,
    retry_after,
    safe_detail,
    transport_error,
)

__all__ = [
    "MAX_ERROR_CHARS",
    "HttpxPool",
    "Pool",
    "Upstreams",
    "as_httpx",
    "bad_response",
    "mid_stream_error",
    "read_error",
    "response_error",
    "retry_after",
    "safe_detail",
    "transport_error",
]


class Upstreams:
    """One keep-alive connection pool per deployment, shared by every request for the
    process's life."""

    def __init__(self, policy: Policy, environ: Mapping[str, str], *, max_connections: int = 512) -> None:
        self._environ = environ
        # One TLS context for every pool: building one loads the CA bundle (~20 ms, ~0.5 MB).
        tls = httpx.create_ssl_context()
        self._pools: dict[str, Any]
        if environ.get("AUTOROUTE_UPSTREAM_CLIENT", "").strip().lower() == "httpx":
            limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
            self._pools = {dep.id: HttpxPool(dep, limits, tls) for dep in policy.deployments}
        else:
            self._pools = {dep.id: Pool(dep, tls, max_connections) for dep in policy.deployments}

    def pool(self, dep: Deployment) -> Any:
        return self._pools[dep.id]

    def api_key(self, dep: Deployment) -> str | None:
        return dep.api_key(self._environ)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()


def as_httpx(resp: Response | httpx.Response) -> httpx.Response:
    """A read response as httpx's (litellm's response transformers take one)."""
    return resp if isinstance(resp, httpx.Response) else resp.to_httpx()
