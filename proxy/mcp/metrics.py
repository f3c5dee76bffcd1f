"""MCP metrics: every tool call (`server`, `tool`, `outcome`) and each server's state.

Labels are bounded: servers come from the policy and tools from their listings; a server a
request supplied by URL is counted as server="_request_url", tool="_request_url".
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REQUEST_URL = "_request_url"


class McpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tool_calls = Counter(
            "autoroute_mcp_tool_calls_total",
            "MCP tool calls, by server, tool and outcome",
            ("server", "tool", "outcome", "via"),
            registry=registry,
        )
        self.tool_seconds = Histogram(
            "autoroute_mcp_tool_call_seconds", "MCP tool call duration", ("server",), registry=registry, buckets=(0.05, 0.25, 1, 5, 30)
        )
        self.server_up = Gauge(
            "autoroute_mcp_server_up",
            "1 when the MCP server is connected and listed its tools",
            ("server",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.gateway_rejected = Counter(
            "autoroute_mcp_gateway_rejected_total", "/mcp calls refused, by reason", ("reason",), registry=registry
        )

    def tool_call(self, server: str, tool: str, outcome: str, seconds: float = 0.0, *, via: str = "loop", known: bool = True) -> None:
        if not known:
            server = tool = REQUEST_URL
        self.tool_calls.labels(server, tool, outcome, via).inc()
        self.tool_seconds.labels(server).observe(seconds)

    def gateway_refused(self, reason: str) -> None:
        """A /mcp tool call the gateway refused (not_found: unknown or not allowed; rate_limited)."""
        self.gateway_rejected.labels(reason).inc()

    def server_changed(self, server: str, up: bool) -> None:
        self.server_up.labels(server).set(1 if up else 0)
