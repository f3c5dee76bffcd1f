"""The example MCP servers (examples/mcp_servers/) for tests: policy entries over stdio, and
Streamable HTTP servers run as subprocesses on free loopback ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "mcp_servers"
CRASHY = Path(__file__).resolve().parent / "mcp_crashy.py"


def script(name: str) -> Path:
    return CRASHY if name == "crashy" else EXAMPLES / f"{name}.py"


def stdio_entry(name: str, **extra: Any) -> dict[str, Any]:
    return {"transport": "stdio", "command": sys.executable, "args": [str(script(name))], "cwd": str(REPO), **extra}


@contextmanager
def http_server(name: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run one example server over Streamable HTTP; yields its /mcp URL and the process."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script(name)), "--transport", "http", "--port", str(port)], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"MCP server {name} did not start on port {port}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def entries(names: list[str], transport: str, extra: dict[str, dict[str, Any]] | None = None) -> Iterator[dict[str, dict[str, Any]]]:
    """Policy entries for these servers over `transport` (http servers run while in the block)."""
    extra = extra or {}
    if transport == "stdio":
        yield {n: stdio_entry(n, **extra.get(n, {})) for n in names}
        return
    with _many(names) as urls:
        yield {n: {"transport": "http", "url": urls[n], **extra.get(n, {})} for n in names}


@contextmanager
def _many(names: list[str]) -> Iterator[dict[str, str]]:
    if not names:
        yield {}
        return
    with http_server(names[0]) as (url, _), _many(names[1:]) as rest:
        yield {names[0]: url, **rest}
