"""Connections to the policy's MCP servers, through the official `mcp` SDK's client.

One `ServerConnection` per server owns its SDK `Client` in a background task (the SDK's
context must be entered and left in one task): it connects, lists the tools, and keeps the
list fresh every `tools_ttl_s` or when the server sends `notifications/tools/list_changed`.
A server that is down has no tools (they are simply absent), shows in /readyz detail and in
`autoroute_mcp_server_up`, and is retried with backoff. Requests never wait on a connection:
they read the cached tool list, and a call is bounded by the server's `call_timeout_s` (and the
caller's deadline), so one misbehaving server cannot stall the proxy.

The SDK (and the httpx2 it brings) is imported when the first server connects, not at start-up:
a proxy whose policy lists no MCP server never loads it (~25 MB of resident memory, ~240 modules).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from proxy.policy.mcp import SEPARATOR, McpPolicy, McpServer

if TYPE_CHECKING:
    from mcp import Client
    from mcp import types as mcp_types

log = logging.getLogger("autoroute.mcp")
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
MAX_TOOLS = 128  # tools exposed per server
MAX_LISTED = 4096  # tools read from a server's pages before the listing stops
MAX_NAME = 128  # characters of a tool's name
MAX_DESCRIPTION = 1024  # characters of a tool's description kept
MAX_SCHEMA_BYTES = 16_384  # a tool's input schema, as JSON


@dataclass(frozen=True)
class ToolSpec:
    server: str
    name: str  # the server's own name for it
    description: str
    input_schema: Mapping[str, Any]

    @property
    def qualified(self) -> str:
        return f"{self.server}{SEPARATOR}{self.name}"

    def openai(self) -> dict[str, Any]:
        """The tool as an OpenAI chat `tools` entry (providers translate it to their own format)."""
        params = dict(self.input_schema) or {"type": "object", "properties": {}}
        return {"type": "function", "function": {"name": self.qualified, "description": self.description[:1024], "parameters": params}}


@dataclass
class ToolResult:
    text: str
    outcome: str  # ok | tool_error | timeout | server_down | error
    seconds: float
    chars: int = 0
    truncated: bool = False

    @property
    def is_error(self) -> bool:
        return self.outcome != "ok"


def split_name(qualified: str) -> tuple[str, str] | None:
    server, sep, tool = qualified.partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None


@dataclass
class ServerConnection:
    name: str
    spec: McpServer
    environ: Mapping[str, str]
    ttl_s: float
    tools: list[ToolSpec] = field(default_factory=list)
    up: bool = False
    last_error: str | None = None
    _client: Client | None = None
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: bool = False
    on_status: Callable[[str, bool], None] | None = None  # (server, up): the server_up gauge

    def _set_up(self, up: bool) -> None:
        changed = up != self.up
        self.up = up
        if changed and self.on_status is not None:
            self.on_status(self.name, up)

    def target(self, stack: contextlib.AsyncExitStack) -> Any:
        """What the SDK's Client connects to: a command (stdio) or a URL (with the policy's headers)."""
        if self.spec.transport == "stdio":
            assert self.spec.command
            from mcp import StdioServerParameters

            env = {k: v for k, v in self.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")} | dict(self.spec.env)
            return StdioServerParameters(command=self.spec.command, args=list(self.spec.args), env=env, cwd=self.spec.cwd)
        assert self.spec.url
        if not self.spec.headers:
            return self.spec.url
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=dict(self.spec.headers), timeout=httpx2.Timeout(30.0, read=300.0))
        stack.push_async_callback(http.aclose)
        return streamable_http_client(self.spec.url, http_client=http)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"mcp-{self.name}")

    async def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
        self._client = None
        self._set_up(False)

    async def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.up and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.up

    async def _supervise(self) -> None:
        from mcp import Client

        failures = 0
        while not self._stop:
            stack = contextlib.AsyncExitStack()
            try:
                client = Client(self.target(stack), read_timeout_seconds=self.spec.call_timeout_s, message_handler=self._on_message)
                # One scope around the whole session (the SDK's task groups live inside it): its
                # deadline bounds the connect, then each refresh, and is lifted in between.
                with anyio.CancelScope(deadline=anyio.current_time() + self.spec.connect_timeout_s) as scope:
                    async with client, anyio.create_task_group() as listeners:
                        listeners.start_soon(self._listen, client)
                        self._client = client
                        try:
                            while not self._stop:
                                scope.deadline = anyio.current_time() + self.spec.connect_timeout_s
                                await self._refresh(client)
                                scope.deadline = float("inf")
                                self.last_error, failures = None, 0
                                self._set_up(True)
                                self._wake.clear()
                                with contextlib.suppress(TimeoutError):
                                    await asyncio.wait_for(self._wake.wait(), self.ttl_s)
                        finally:
                            self._client = None
                            self._set_up(False)
                            listeners.cancel_scope.cancel()
                if scope.cancelled_caught:
                    raise TimeoutError(f"no answer within {self.spec.connect_timeout_s}s")
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the SDK raises exception groups from its task groups
                self.last_error = _describe(exc)
                log.warning("mcp server %s is down: %s", self.name, self.last_error)
            finally:
                with anyio.CancelScope(shield=True):
                    await stack.aclose()
            self.tools = []
            self._set_up(False)
            if self._stop:
                return
            await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
            failures += 1

    async def _refresh(self, client: Client) -> None:
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(20):  # a paginator that never ends cannot hang the refresh
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor or len(listed) >= MAX_LISTED:
                break
        self.tools = exposed_tools(self.name, listed, self.spec.tools)

    async def _on_message(self, message: Any) -> None:
        """Handshake-era sessions: notifications/tools/list_changed re-lists the tools."""
        from mcp import types as mcp_types

        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._wake.set()

    async def _listen(self, client: Client) -> None:
        """2026-07-28 sessions: a subscriptions/listen stream for tools_list_changed re-lists the
        tools. A server or protocol without it (or a lost stream) leaves the TTL refresh."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._wake.set()
        except Exception as exc:  # ListenNotSupportedError, MCPError, SubscriptionLost, ...
            log.debug("mcp server %s: no list-changed subscription (%s)", self.name, _describe(exc))

    async def call(self, tool: str, arguments: dict[str, Any], *, timeout_s: float, max_chars: int) -> ToolResult:
        started = time.monotonic()
        client = self._client
        if client is None or not self.up:
            return ToolResult(
                f"Error: the tool server {self.name!r} is unavailable ({self.last_error or 'not connected'}).", "server_down", 0.0
            )
        timeout = max(0.01, min(timeout_s, self.spec.call_timeout_s))
        try:
            with anyio.fail_after(timeout):
                result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except TimeoutError:
            self._wake.set()  # re-check the server: a hung one gets reconnected
            return ToolResult(
                f"Error: the tool {tool!r} on {self.name!r} did not answer within {timeout:.1f}s.", "timeout", time.monotonic() - started
            )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._set_up(False)
            self._wake.set()
            why = _describe(exc)
            return ToolResult(
                f"Error: the tool server {self.name!r} failed during the call ({why}).", "server_down", time.monotonic() - started
            )
        text = result_text(result)
        outcome = "tool_error" if result.is_error else "ok"
        if result.is_error:
            text = f"Error from tool {tool!r}: {text}"
        return _capped(text, outcome, time.monotonic() - started, max_chars)


def exposed_tools(server: str, listed: list[mcp_types.Tool], patterns: Any) -> list[ToolSpec]:
    """The tools a server offers that the policy exposes, bounded: a server (a request's URL
    server above all) cannot fill every model call's prompt or the proxy's memory with its list.
    At most MAX_TOOLS per server, in the server's order; a tool whose input schema is larger
    than MAX_SCHEMA_BYTES (as JSON) is left out."""
    out: list[ToolSpec] = []
    for t in listed:
        if SEPARATOR in t.name or len(t.name) > MAX_NAME or not any(fnmatch.fnmatchcase(t.name, p) for p in patterns):
            continue
        schema = dict(t.input_schema or {})
        if len(orjson.dumps(schema, default=str)) > MAX_SCHEMA_BYTES:
            log.warning("mcp server %s: tool %r left out, its input schema is over %d bytes", server, t.name[:64], MAX_SCHEMA_BYTES)
            continue
        if len(out) == MAX_TOOLS:
            log.warning("mcp server %s: more than %d tools; the rest are left out", server, MAX_TOOLS)
            break
        out.append(ToolSpec(server, t.name, (t.description or "")[:MAX_DESCRIPTION], schema))
    return out


def load_sdk() -> None:
    """Import the SDK's client side (what `ServerConnection` imports where it needs it) in one go."""
    import httpx2  # noqa: F401
    import mcp.client.streamable_http  # noqa: F401  (and the package itself)


def result_text(result: mcp_types.CallToolResult) -> str:
    """The result as one text for the model: the text blocks, or the structured result as JSON
    when the server split a list into several blocks."""
    from mcp import types as mcp_types

    structured = result.structured_content
    if structured is not None and len(result.content) != 1:
        value = structured["result"] if isinstance(structured, dict) and set(structured) == {"result"} else structured
        return orjson.dumps(value).decode()
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            parts.append(orjson.dumps(block.model_dump(mode="json", exclude_none=True)).decode())
    if not parts and result.structured_content is not None:
        parts.append(orjson.dumps(result.structured_content).decode())
    return "\n".join(parts)


def _capped(text: str, outcome: str, seconds: float, max_chars: int) -> ToolResult:
    n = len(text)
    if n <= max_chars:
        return ToolResult(text, outcome, seconds, n)
    return ToolResult(text[:max_chars] + f"\n[result cut at {max_chars} of {n} characters]", outcome, seconds, n, truncated=True)


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class McpServers:
    """Every server of the policy; the tool view each key may see."""

    def __init__(self, policy: McpPolicy, environ: Mapping[str, str], on_status: Callable[[str, bool], None] | None = None) -> None:
        self.policy = policy
        self.connections = {
            n: ServerConnection(n, s, environ, policy.tools_ttl_s, on_status=on_status) for n, s in policy.enabled_servers.items()
        }
        for name in self.connections:
            if on_status is not None:
                on_status(name, False)

    def start(self) -> None:
        if self.connections:  # the SDK, at start-up as before, but only for a policy that lists a server
            load_sdk()
        for conn in self.connections.values():
            conn.start()

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.connections.values()))

    def status(self) -> dict[str, bool]:
        return {n: c.up for n, c in self.connections.items()}

    def visible(self, key_name: str, allows: Any, servers: Mapping[str, ServerConnection] | None = None) -> list[ToolSpec]:
        """Tools this key may see: the server admits the key's name and the key admits the tool."""
        out: list[ToolSpec] = []
        for conn in (servers if servers is not None else self.connections).values():
            if not any(fnmatch.fnmatchcase(key_name, p) for p in conn.spec.keys):
                continue
            out.extend(t for t in conn.tools if allows(t.qualified))
        return out
