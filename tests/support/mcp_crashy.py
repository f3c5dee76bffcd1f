"""A test-only MCP server whose `crash` tool kills its own process mid-call (a server dying mid-loop)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "mcp_servers"))
from _run import run

server = MCPServer("crashy", log_level="WARNING")


@server.tool()
def crash() -> str:
    """Exit the server process without answering."""
    os._exit(3)


@server.tool()
def hang(seconds: float) -> str:
    """Sleep, then answer (a server that stops answering in time)."""
    time.sleep(min(seconds, 30))
    return "woke up"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool named `extra` and tell listening clients the tool list changed."""
    server.add_tool(extra)
    await ctx.notify_tools_changed()
    return "grown"


def extra() -> str:
    """A tool that exists once `grow` ran."""
    return "extra"


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    run(server)
