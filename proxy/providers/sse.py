"""Server-sent events: parse an upstream's stream, write the client's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def encode(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class Lookahead:
    """Set by `iter_data` at each event: whether another whole event is already buffered (the
    next one comes without waiting on the network)."""

    __slots__ = ("more",)

    def __init__(self) -> None:
        self.more = False


async def iter_data(chunks: AsyncIterator[bytes], ahead: Lookahead | None = None) -> AsyncIterator[bytes]:
    """Yield the `data:` payload of each event (multi-line data joined by newlines)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            event, buffer = buffer[:end], buffer[end + 2 :]
            data = _data_of(event)
            if data is not None:
                if ahead is not None:
                    ahead.more = b"\n\n" in buffer
                yield data
    if ahead is not None:
        ahead.more = False
    if buffer.strip():
        data = _data_of(buffer)
        if data is not None:
            yield data


def _data_of(event: bytes) -> bytes | None:
    if event.startswith(b"data:") and b"\n" not in event:  # one data line: nearly every event
        return event[5:].lstrip(b" ")
    return _data_lines(event)


def _data_lines(event: bytes) -> bytes | None:
    """The general case: `data:` lines among others (event:, id:, comments), joined by newlines."""
    parts = [line[5:].lstrip(b" ") if line.startswith(b"data:") else None for line in event.split(b"\n")]
    lines = [p for p in parts if p is not None]
    return b"\n".join(lines) if lines else None
