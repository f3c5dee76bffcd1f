"""MCP: the client side (servers.py: connections to the policy's servers), the tool loop for chat
completions (loop.py), the context assembler (context.py) and the /mcp gateway (gateway.py)."""
