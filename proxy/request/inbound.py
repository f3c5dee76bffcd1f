"""The seam between a wire format (proxy/api/*) and the pipeline.

An inbound adapter turns its API's body into a chat-completions body (the pipeline's one
request shape) and renders the chat result, and each streamed chat chunk, back in its own
wire format. Routing, keys, limits, budgets, dispatch, metrics and decision records run
unchanged between the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from proxy.errors import ProxyError

if TYPE_CHECKING:
    from proxy.providers.base import Usage
    from proxy.request.appstate import AppState
    from proxy.request.exchange import Exchange


class StreamRenderer(Protocol):
    """One stream's events in the client's format; state (block indexes, text so far) lives here."""

    def chunk(self, chunk: dict[str, Any]) -> bytes: ...

    async def end(self, usage: Usage | None) -> bytes: ...

    def error(self, kind: str, message: str) -> bytes: ...


class Inbound(Protocol):
    endpoint: str  # the `endpoint` label of metrics and decision records

    async def parse(self, state: AppState, ex: Exchange, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """The wire body -> a checked chat-completions body (raise InvalidRequest naming the field)."""
        ...

    async def render(self, state: AppState, ex: Exchange, body: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """A chat completion -> this API's response object."""
        ...

    def stream(self, state: AppState, ex: Exchange, body: dict[str, Any]) -> StreamRenderer: ...

    def error_body(self, exc: ProxyError) -> bytes:
        """An error in this API's own shape."""
        ...
