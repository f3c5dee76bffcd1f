"""Search over a local folder of text documents (DOCS_DIR, default: the `docs/` folder here).

Ranks documents by how many query words they contain (case-insensitive), returns snippets.

    python examples/mcp_servers/docs_search.py [--transport http --port 8766]
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _run import run

server = MCPServer("docs", log_level="WARNING", instructions="Search the local document folder, then read a document by name.")
DOCS = Path(os.environ.get("DOCS_DIR") or Path(__file__).resolve().parent / "docs")
_WORD = re.compile(r"\w+")


def _documents() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8", errors="replace") for p in sorted(DOCS.glob("*")) if p.is_file()}


@server.tool()
def search(query: str, limit: int = 3) -> list[dict[str, str | int]]:
    """Documents matching the query's words, best first: name, score and a snippet."""
    words = {w.lower() for w in _WORD.findall(query)}
    hits = []
    for name, text in _documents().items():
        lowered = text.lower()
        score = sum(lowered.count(w) for w in words)
        if score:
            first = min((lowered.find(w) for w in words if w in lowered), default=0)
            hits.append({"name": name, "score": score, "snippet": " ".join(text[max(0, first - 80) : first + 160].split())})
    hits.sort(key=lambda h: (-int(h["score"]), str(h["name"])))
    return hits[: max(1, min(limit, 20))]


@server.tool()
def read_document(name: str) -> str:
    """The full text of one document (a name from `search`)."""
    docs = _documents()
    if name not in docs:
        raise ToolError(f"no document named {name!r}; search first")
    return docs[name]


if __name__ == "__main__":
    run(server)
