"""The MCP gateway: `/mcp` (Streamable HTTP) for MCP clients, with a virtual key.

It lists the policy's servers' tools that the key may see, prefixed `<server>__<tool>`, plus the
proxy's own tools (`route`, `list_models`), and forwards calls. The key's `allowed_tools`
(globs, deny by default once it has a list) applies to listing and calling alike: a tool the key
may not use is reported exactly like one that does not exist. Each call is rate-limited per key
and audited (the caller's `on_call`: a decision record and a metric). Built on the SDK's
low-level `Server`, served stateless with JSON responses, so any replica can answer any call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from mcp import types as mcp_types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from proxy.errors import ProxyError
from proxy.keys.store import KeyRecord
from proxy.mcp.servers import McpServers, ToolResult, split_name

SCOPE_KEY = "autoroute.key"
OwnTool = Callable[[KeyRecord, dict[str, Any]], Awaitable[Any]]
RATE_LIMITED = -32029  # a server-defined JSON-RPC error code


@dataclass(frozen=True)
class OwnToolSpec:
    name: str
    description: str
    input_schema: Mapping[str, Any]
    run: OwnTool


@dataclass
class GatewayCall:
    """What the gateway did for one tools/call (for the audit record and the metric)."""

    key: KeyRecord
    tool: str
    server: str | None
    outcome: str  # ok | tool_error | timeout | server_down | not_found | rate_limited | error
    seconds: float
    chars: int = 0


class Gateway:
    def __init__(
        self,
        servers: McpServers,
        own_tools: list[OwnToolSpec],
        *,
        authenticate: Callable[[Mapping[str, str]], Awaitable[KeyRecord]],
        allow_call: Callable[[KeyRecord], Awaitable[bool]],
        on_call: Callable[[GatewayCall], None],
        max_result_chars: int,
    ) -> None:
        self.servers = servers
        self.own = {t.name: t for t in own_tools}
        self.authenticate = authenticate
        self.allow_call = allow_call
        self.on_call = on_call
        self.max_result_chars = max_result_chars
        self.server: Server[Any] = Server("autoroute", on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        self.manager = StreamableHTTPSessionManager(app=self.server, stateless=True, json_response=True)

    def tools_for(self, key: KeyRecord) -> list[mcp_types.Tool]:
        out = [
            mcp_types.Tool(name=t.name, description=t.description, input_schema=dict(t.input_schema))
            for t in self.own.values()
            if key.allows_tool(t.name)
        ]
        for spec in self.servers.visible(key.name, key.allows_tool):
            schema = dict(spec.input_schema) or {"type": "object", "properties": {}}
            out.append(mcp_types.Tool(name=spec.qualified, description=spec.description, input_schema=schema))
        return out

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI: authenticate the bearer key first (an OpenAI-shaped 401/403), then MCP."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        try:
            key = await self.authenticate(headers)
        except ProxyError as exc:
            body = exc.json()
            start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            start += [(k.encode(), v.encode()) for k, v in exc.headers.items()]
            await send({"type": "http.response.start", "status": exc.status, "headers": start})
            await send({"type": "http.response.body", "body": body})
            return
        scope[SCOPE_KEY] = key
        await self.manager.handle_request(scope, receive, send)

    @staticmethod
    def _key(ctx: Any) -> KeyRecord:
        request = getattr(ctx, "request", None)
        key = request.scope.get(SCOPE_KEY) if request is not None else None
        if not isinstance(key, KeyRecord):
            raise MCPError(INVALID_PARAMS, "no authenticated key on this request")
        return key

    async def _list_tools(self, ctx: Any, params: mcp_types.PaginatedRequestParams | None) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(tools=self.tools_for(self._key(ctx)))

    async def _call_tool(self, ctx: Any, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        key = self._key(ctx)
        name, arguments = params.name, dict(params.arguments or {})
        started = time.monotonic()
        pair = split_name(name)
        if not key.allows_tool(name) or (name not in self.own and (pair is None or not self._listed(key, name))):
            self.on_call(GatewayCall(key, name, pair[0] if pair else None, "not_found", 0.0))
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {name}")
        if not await self.allow_call(key):
            self.on_call(GatewayCall(key, name, pair[0] if pair else None, "rate_limited", 0.0))
            raise MCPError(RATE_LIMITED, "Rate limit reached for this key's MCP tool calls; retry in a minute.")
        if name in self.own:
            result = await self._own(self.own[name], key, arguments)
            server = None
        else:
            assert pair is not None
            server, tool = pair
            result = await self.servers.connections[server].call(tool, arguments, timeout_s=1e9, max_chars=self.max_result_chars)
        self.on_call(GatewayCall(key, name, server, result.outcome, time.monotonic() - started, result.chars))
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=result.text)], is_error=result.is_error)

    def _listed(self, key: KeyRecord, name: str) -> bool:
        return any(t.qualified == name for t in self.servers.visible(key.name, key.allows_tool))

    async def _own(self, spec: OwnToolSpec, key: KeyRecord, arguments: dict[str, Any]) -> ToolResult:
        started = time.monotonic()
        try:
            value = await spec.run(key, arguments)
        except ProxyError as exc:
            return ToolResult(f"Error: {exc.message}", "tool_error", time.monotonic() - started)
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return ToolResult(text, "ok", time.monotonic() - started, len(text))
