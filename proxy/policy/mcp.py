"""MCP tool servers and the tool loop's limits (`policies/mcp.yaml`).

Servers come only from here (a request can never start a process). Each names its transport:
`stdio` (a command the proxy starts and talks to over stdin/stdout) or `http` (a Streamable
HTTP URL). Environment values use `${VAR}` references, expanded at load like every policy file.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, model_validator

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


def url_host_entry(entry: str) -> tuple[str, int | str | None]:
    """A `request_url_hosts` entry -> (host, port): port None = the scheme's default (80/443), "*" = any."""
    text = entry.strip().lower()
    host, port = text, ""
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or any(c in host for c in "/@?# "):
        raise ValueError(f"request_url_hosts entry {entry!r}: a host name or address, optionally :port or :*")
    if not port:
        return host, None
    if port == "*":
        return host, "*"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"request_url_hosts entry {entry!r}: the port must be 1-65535 or *")
    return host, int(port)


class McpPolicy(Strict):
    servers: dict[str, McpServer] = Field(default_factory=dict)
    loop: LoopLimits = LoopLimits()
    gateway: Gateway = Gateway()
    tools_ttl_s: float = Field(300.0, gt=0, description="tool lists are re-fetched this often (and on list_changed)")
    request_url_hosts: tuple[str, ...] = Field(
        (),
        description="where a request-supplied server URL may point: `host` (the scheme's default port only), "
        "`host:port`, or `host:*` (any port); empty = nowhere",
    )
    _hosts: tuple[tuple[str, int | str | None], ...] = PrivateAttr(())  # the entries, parsed once at load

    @model_validator(mode="after")
    def _names(self) -> McpPolicy:
        for name in self.servers:
            if not SERVER_NAME.match(name) or SEPARATOR in name:
                raise ValueError(f"server name {name!r}: lowercase letters, digits, - and _ (no '__'), at most 31 characters")
        self._hosts = tuple(url_host_entry(entry) for entry in self.request_url_hosts)
        return self

    def allows_url(self, hostname: str, port: int | None, scheme: str) -> bool:
        """Whether a request may name a server at this host and port (None: the scheme's default)."""
        port = (443 if scheme == "https" else 80) if port is None else port
        hostname = hostname.lower()
        for host, allowed in self._hosts:
            if host == hostname and (allowed == "*" or allowed == port or (allowed is None and port in (80, 443))):
                return True
        return False

    @property
    def enabled_servers(self) -> dict[str, McpServer]:
        return {n: s for n, s in self.servers.items() if s.enabled}
