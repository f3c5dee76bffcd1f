"""Server-sent events: parse an upstream's stream, write the client's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def encode(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class EventBuffer:
    """The bytes read so far -> the `data:` payload of each whole event, one at a time (synchronous:
    what is already read is parsed without waiting, so a stream can hand its reader every buffered
    event without an await per event; proxy/providers/openai.py)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> None:
        buf = self._buf + chunk if self._buf else chunk
        self._buf = buf.replace(b"\r\n", b"\n") if b"\r" in buf else buf

    def whole(self) -> bool:
        """Whether a whole event is buffered (the next `next()` may still find it holds no data)."""
        return b"\n\n" in self._buf

    def next(self) -> bytes | None:
        """The data of the next whole event that has any (events without data are skipped), None when none is buffered."""
        buf = self._buf
        while (end := buf.find(b"\n\n")) >= 0:
            event, buf = buf[:end], buf[end + 2 :]
            data = _data_of(event)
            if data is not None:
                self._buf = buf
                return data
        self._buf = buf
        return None

    def tail(self) -> bytes | None:
        """At the body's end: the data of a last event without its blank line, if any (the end closes it)."""
        self.feed(b"\n\n")
        return self.next()


async def iter_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield the `data:` payload of each event (multi-line data joined by newlines)."""
    events = EventBuffer()
    async for chunk in chunks:
        events.feed(chunk)
        while (data := events.next()) is not None:
            yield data
    data = events.tail()
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
