"""The seam between a wire format (proxy/api/*) and the pipeline.

An inbound adapter turns its API's body into a chat-completions body (the pipeline's one
request shape) and renders the chat result, and each streamed chat chunk, back in its own
wire format. Routing, keys, limits, budgets, dispatch, metrics and decision records run
unchanged between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from proxy.errors import ProxyError
from proxy.mcp.loop import LoopEvents

if TYPE_CHECKING:
    from proxy.mcp.servers import ToolSpec
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


class LoopView(LoopEvents, Protocol):
    """The MCP tool loop's progress for a client API that shows it (Responses' mcp_* items)."""

    def listed(self, server: str, tools: list[ToolSpec], error: str | None) -> None:
        """A server's tools offered to the model (error: why it has none)."""
        ...


class LoopStream(LoopView, Protocol):
    """A streamed tool loop in the client's format; what it renders goes out through the `emit`
    it was made with. `start` comes once the first model call answers."""

    def start(self, model: str) -> None: ...

    def text(self, delta: str) -> None: ...

    async def end(self, final: dict[str, Any], usage: Usage | None, note: str | None) -> None:
        """The loop's final chat completion (its text streamed so far; `note`: what a limit added)."""
        ...

    def error(self, kind: str, message: str) -> None: ...


@runtime_checkable
class LoopInbound(Protocol):
    """An inbound API that can run the MCP tool loop (Responses)."""

    def loop_view(self) -> LoopView: ...

    def loop_stream(self, state: AppState, ex: Exchange, emit: Callable[[bytes], None]) -> LoopStream: ...
