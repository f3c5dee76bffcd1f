"""The relay's writes and its accounting task: events already read go out in one write, and the
close-and-account step runs in one protected task (not one per nested `to_the_end`)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import orjson

from proxy.app import create_app
from proxy.providers.sse import EventBuffer, iter_data
from proxy.request.to_the_end import to_the_end
from tests.conftest import make_settings
from tests.support.raw_tcp import raw_server, read_request
from tests.support.servers import provider_environ, serving

WORDS = ["Hello", " from", " one", " write", "."]


def _sse_body() -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1"}
    events = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": w}}]} for w in WORDS]
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**chunk, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _one_write(conn: socket.socket) -> None:
    read_request(conn)
    body = _sse_body()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(body)
    conn.sendall(head + body)  # the whole stream at once: the proxy reads it in one go
    conn.settimeout(5)
    try:
        conn.recv(1)  # until the proxy closes or reuses the connection
    except OSError:
        pass


def test_events_already_read_go_out_in_one_write() -> None:
    with raw_server(_one_write) as port:
        app = create_app(make_settings(), environ=provider_environ(f"http://127.0.0.1:{port}"))
        parts: list[bytes] = []  # every body message the relay sends

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            async def spy(message: Any) -> None:
                if message["type"] == "http.response.body":
                    parts.append(message["body"])
                await send(message)

            await app(scope, receive, spy if scope["type"] == "http" else send)

        with serving(counting) as server:
            resp = httpx.post(
                server.url + "/v1/chat/completions",
                timeout=10,
                json={
                    "model": "openai/gpt-4.1",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
    assert resp.status_code == 200
    datas = [line[6:] for line in resp.text.split("\n") if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in datas[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "".join(WORDS)
    assert chunks[-1]["usage"]["completion_tokens"] == 5  # the usage chunk, last, with the upstream's figures
    assert all(c["model"] == "openai/gpt-4.1" for c in chunks)
    assert len(parts) <= 2, f"{len(parts)} writes for a stream read at once"  # the first event, then the rest
    assert parts[-1].endswith(b"data: [DONE]\n\n")  # the end of the body goes with the last events, not alone


def test_event_buffer_hands_out_what_is_read_and_says_what_is_whole() -> None:
    events = EventBuffer()
    events.feed(b"data: 1\r\n\r\n: a comment\n\ndata: 2\n\nda")
    assert events.whole()
    assert events.next() == b"1"
    assert events.next() == b"2"  # the comment-only event in between is skipped
    assert not events.whole() and events.next() is None  # "da" is not a whole event yet
    events.feed(b"ta: 3")
    assert events.next() is None
    assert events.tail() == b"3"  # the body ended without the blank line
    assert events.tail() is None


async def _collect(data: bytes) -> list[bytes]:
    async def chunks():  # type: ignore[no-untyped-def]
        yield data
        yield b"b\n\n"

    return [d async for d in iter_data(chunks())]


def test_iter_data_joins_events_split_across_reads() -> None:
    assert asyncio.run(_collect(b"data: 1\n\ndata: 2\n\ndata: 3")) == [b"1", b"2", b"3b"]


def test_nested_step_runs_inline_and_survives_cancel() -> None:
    async def scenario() -> tuple[list[Any], bool]:
        tasks: list[Any] = []
        finished = asyncio.Event()

        async def inner() -> None:
            tasks.append(asyncio.current_task())
            await asyncio.sleep(0.05)
            finished.set()

        async def outer() -> None:
            tasks.append(asyncio.current_task())
            await to_the_end(inner())  # already protected: no second task
            child = asyncio.ensure_future(to_the_end(inner()))  # a child task is not: it gets its own
            await child
            tasks.append(child)

        async def handler() -> None:
            await to_the_end(outer())

        task = asyncio.ensure_future(handler())
        await asyncio.sleep(0.01)
        task.cancel()  # the client left: the step still finishes, then the cancellation goes on
        try:
            await task
        except asyncio.CancelledError:
            pass
        return tasks, finished.is_set() and task.cancelled()

    tasks, ok = asyncio.run(scenario())
    assert ok
    outer_task, nested, child_inner, child = tasks
    assert nested is outer_task
    assert child_inner is not child and child_inner is not outer_task
