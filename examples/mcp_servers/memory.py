"""A key-value memory MCP server. Kept in this process; set MEMORY_FILE to persist it as JSON.

python examples/mcp_servers/memory.py [--transport http --port 8767]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _run import run

server = MCPServer("memory", log_level="WARNING", instructions="Remember facts by key and recall them later.")
_FILE = Path(os.environ["MEMORY_FILE"]) if os.environ.get("MEMORY_FILE") else None
_store: dict[str, str] = json.loads(_FILE.read_text()) if _FILE and _FILE.is_file() else {}


def _save() -> None:
    if _FILE is not None:
        _FILE.write_text(json.dumps(_store))


@server.tool()
def remember(key: str, value: str) -> str:
    """Store `value` under `key` (replacing what was there)."""
    _store[key] = value
    _save()
    return f"remembered {key}"


@server.tool()
def recall(key: str) -> str:
    """The value stored under `key`, or a note that nothing is."""
    return _store.get(key, f"nothing is remembered under {key!r}")


@server.tool()
def list_keys() -> list[str]:
    """Every key in memory, sorted."""
    return sorted(_store)


@server.tool()
def forget(key: str) -> str:
    """Remove `key` from memory."""
    existed = _store.pop(key, None) is not None
    _save()
    return f"forgot {key}" if existed else f"nothing was remembered under {key!r}"


if __name__ == "__main__":
    run(server)
