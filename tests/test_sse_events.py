"""An SSE event's data: the one-line fast path of `sse._data_of` gives what the general parser
gives, for every shape an upstream sends (spaces or none after the colon, event/id/comment lines,
multi-line data, a line that only looks like data)."""

from __future__ import annotations

import pytest

from proxy.providers import sse

EVENTS = [
    b'data: {"a":1}',
    b'data:{"a":1}',
    b"data:   [DONE]",
    b"data:",
    b"data: ",
    b'event: message\ndata: {"a":1}',
    b'data: {"a":\ndata: 1}',
    b": keep-alive",
    b"id: 7",
    b"id: 7\ndata: x\n: note",
    b"datum: not data",
    b" data: indented is not data",
    b'data: {"text":"a: b\\n"}',
]


@pytest.mark.parametrize("event", EVENTS)
def test_fast_path_matches_the_general_parser(event: bytes) -> None:
    assert sse._data_of(event) == sse._data_lines(event)


def test_one_data_line_and_an_event_without_data() -> None:
    assert sse._data_of(b'data: {"a":1}') == b'{"a":1}'
    assert sse._data_of(b"event: ping") is None
