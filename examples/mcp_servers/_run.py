"""Shared command line for the example servers: `--transport stdio` (default) or `--transport http`."""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer


def run(server: MCPServer) -> None:
    parser = argparse.ArgumentParser(description=f"the {server.name} MCP server (network-free example)")
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if args.transport == "stdio":
        server.run("stdio")
    else:  # Streamable HTTP at http://HOST:PORT/mcp
        server.run("streamable-http", host=args.host, port=args.port, stateless_http=True, json_response=True)
