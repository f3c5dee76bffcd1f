"""OpenAIStream reads an upstream's events: `poll()` hands out what is already read without an
await (the relay's fast path), `__anext__` reads on; the end of the body, [DONE], a cut stream
and a failure in an event keep their meaning on both paths."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from proxy.providers.base import UpstreamError
from proxy.providers.openai import OpenAIStream


class FakeResponse:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = list(reads)
        self.taken = 0
        self.closed = 0

    async def aiter_raw(self):
        while self.reads:
            self.taken += 1
            yield self.reads.pop(0)

    def buffered(self) -> bool:
        return False

    async def aclose(self) -> None:
        self.closed += 1


CALL = SimpleNamespace(
    deployment=SimpleNamespace(provider="openai", id="openai-main"), model=SimpleNamespace(id="gpt-4.1"), api_key="sk-secret"
)


def event(text: str) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + b"\n\n"


def texts(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"]["content"] for c in chunks)


def test_a_stream_read_at_once_is_handed_out_by_poll_without_another_read() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], FakeResponse]:
        resp = FakeResponse([event("a") + event("b") + event("c") + b"data: [DONE]\n\n"])
        stream = OpenAIStream(resp, CALL)  # type: ignore[arg-type]
        assert stream.poll() is None  # nothing read yet
        first = [await anext(stream)]
        assert resp.taken == 1 and stream.ready()
        polled = []
        while (chunk := stream.poll()) is not None:
            polled.append(chunk)
        assert resp.taken == 1  # no read for the chunks already here
        assert await anext(stream, None) is None  # the body's end: read, then closed
        return first, polled, resp

    first, polled, resp = asyncio.run(scenario())
    assert texts(first) == "a" and texts(polled) == "bc"
    assert resp.closed >= 1


def test_events_split_across_reads_and_after_done_are_handled() -> None:
    body = event("hel") + event("lo") + b"data: [DONE]\n\n" + event("ignored")
    reads = [body[i : i + 7] for i in range(0, len(body), 7)]

    async def scenario() -> list[dict[str, Any]]:
        return [c async for c in OpenAIStream(FakeResponse(reads), CALL)]  # type: ignore[arg-type]

    assert texts(asyncio.run(scenario())) == "hello"


def test_a_last_event_without_its_blank_line_then_no_done_is_a_cut_stream() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], UpstreamError]:
        stream = OpenAIStream(FakeResponse([event("a"), event("b")[:-2]]), CALL)  # type: ignore[arg-type]
        got = []
        with pytest.raises(UpstreamError) as err:
            async for chunk in stream:
                got.append(chunk)
        return got, err.value

    got, err = asyncio.run(scenario())
    assert texts(got) == "ab"  # the last event is still delivered
    assert err.kind == "stream_cut"


def test_a_done_without_its_blank_line_ends_the_stream_properly() -> None:
    async def scenario() -> list[dict[str, Any]]:
        return [c async for c in OpenAIStream(FakeResponse([event("a") + b"data: [DONE]"]), CALL)]  # type: ignore[arg-type]

    assert texts(asyncio.run(scenario())) == "a"


def test_an_error_event_found_by_poll_fails_the_stream_without_the_key() -> None:
    error = b'data: {"error": {"message": "overloaded, key sk-secret"}}\n\n'

    async def scenario() -> UpstreamError:
        stream = OpenAIStream(FakeResponse([event("a") + error]), CALL)  # type: ignore[arg-type]
        await anext(stream)
        with pytest.raises(UpstreamError) as err:
            stream.poll()
        return err.value

    err = asyncio.run(scenario())
    assert err.kind == "server_error" and "overloaded" in err.message
    assert "sk-secret" not in err.message


def test_open_stream_remembers_a_failure_its_poll_found() -> None:
    from proxy.dispatch.stream import OpenStream

    error = b'data: {"error": {"message": "overloaded"}}\n\n'

    async def run() -> tuple[OpenStream, list[str]]:
        upstream = OpenAIStream(FakeResponse([event("a") + event("b") + error]), CALL)  # type: ignore[arg-type]
        first = await anext(upstream)
        opened = OpenStream(None, None, None, None, None, None, upstream, upstream, [first], False, 0.0)  # type: ignore[arg-type]
        seen = [texts([opened.first])]
        seen.append(texts([opened.poll()]))  # type: ignore[list-item]
        with pytest.raises(UpstreamError):
            opened.poll()
        return opened, seen

    opened, seen = asyncio.run(run())
    assert seen == ["a", "b"]
    assert opened.error is not None and opened.error.kind == "server_error"
    assert opened.poll() is None  # a failed stream hands out nothing more
