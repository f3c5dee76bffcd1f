"""MCP tool servers and the tool loop's limits (`policies/mcp.yaml`).

Servers come only from here (a request can never start a process). Each names its transport:
`stdio` (a command the proxy starts and talks to over stdin/stdout) or `http` (a Streamable
HTTP URL). Environment values use `${VAR}` references, expanded at load like every policy file.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from proxy.policy.registry import Strict

SERVER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
SEPARATOR = "__"  # tools are offered as <server>__<tool>


class McpServer(Strict):
    transport: str = Field(pattern="^(stdio|http)$")
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    connect_timeout_s: float = Field(10.0, gt=0, le=300)
    call_timeout_s: float = Field(20.0, gt=0, le=600)
    tools: tuple[str, ...] = Field(("*",), description="glob patterns of this server's tools that are exposed at all")
    keys: tuple[str, ...] = Field(("*",), description="glob patterns of key names that may see this server")

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServer:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio server needs `command`")
        if self.transport == "http":
            if not self.url or urlsplit(self.url).scheme not in ("http", "https"):
                raise ValueError("an http server needs `url` (http:// or https://)")
        return self


class LoopLimits(Strict):
    max_depth: int = Field(6, ge=1, le=50, description="model calls per request, at most")
    deadline_s: float = Field(120.0, gt=0, le=3600, description="the whole loop, model and tool calls")
    max_result_chars: int = Field(20_000, ge=100, description="a tool result is cut to this many characters")
    max_tool_calls: int = Field(32, ge=1, description="tool calls per request, at most")


class Gateway(Strict):
    enabled: bool = True
    calls_per_minute: int = Field(120, ge=1, description="tools/call per key per minute through /mcp")


class McpPolicy(Strict):
    servers: dict[str, McpServer] = Field(default_factory=dict)
    loop: LoopLimits = LoopLimits()
    gateway: Gateway = Gateway()
    tools_ttl_s: float = Field(300.0, gt=0, description="tool lists are re-fetched this often (and on list_changed)")
    request_url_hosts: tuple[str, ...] = Field((), description="hosts a request-supplied server URL may point at; empty = none")

    @model_validator(mode="after")
    def _names(self) -> McpPolicy:
        for name in self.servers:
            if not SERVER_NAME.match(name) or SEPARATOR in name:
                raise ValueError(f"server name {name!r}: lowercase letters, digits, - and _ (no '__'), at most 31 characters")
        return self

    @property
    def enabled_servers(self) -> dict[str, McpServer]:
        return {n: s for n, s in self.servers.items() if s.enabled}
