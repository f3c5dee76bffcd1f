"""A response of known length leaves in one write (proxy/cli/connections.py `HeldHeaders`).

Unit level: a real uvicorn request cycle on a transport that records what it is asked to do.
End to end: the protocol class `autoroute serve` uses, on a real server, answers plain, HEAD,
streamed and keep-alive requests byte for byte as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from proxy.cli.connections import HeaderTimeoutProtocol, HeldHeaders
from tests.support.servers import serving


class Recorder:
    """An asyncio transport that records calls instead of sending."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, lines: Any) -> None:
        self.calls.append(("writelines", [bytes(x) for x in lines]))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def cycle(method: str = "GET", keep_alive: bool = True) -> tuple[Any, Recorder]:
    transport = Recorder()
    scope = {"type": "http", "method": method, "http_version": "1.1", "path": "/", "query_string": b"", "headers": []}
    c = RequestResponseCycle(
        scope=scope,  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    c.send = HeldHeaders(c)  # type: ignore[method-assign]
    return c, transport


START: Any = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5"), (b"content-type", b"text/plain")]}
BODY: Any = {"type": "http.response.body", "body": b"hello"}


def run(coro: Any) -> Any:
    return asyncio.new_event_loop().run_until_complete(coro)


def test_a_sized_response_is_one_writelines_of_headers_then_body() -> None:
    c, t = cycle()

    async def go() -> None:
        await c.send(START)
        assert t.calls == []  # the headers wait for the body
        await c.send(BODY)

    run(go())
    assert [kind for kind, _ in t.calls] == ["writelines"]
    head, body = t.calls[0][1]
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5\r\n" in head and head.endswith(b"\r\n\r\n")
    assert body == b"hello"
    assert c.response_complete and c.transport is t  # the real transport is back for the next request


def test_a_stream_without_length_sends_its_headers_at_once() -> None:
    c, t = cycle()

    async def go() -> None:
        await c.send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        assert [kind for kind, _ in t.calls] == ["write"]  # not held: a stream's client sees the status now
        await c.send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await c.send({"type": "http.response.body", "body": b"", "more_body": False})

    run(go())
    assert [kind for kind, _ in t.calls] == ["write", "write", "write"]


def test_head_flushes_the_held_headers_although_the_body_writes_nothing() -> None:
    c, t = cycle("HEAD")

    async def go() -> None:
        await c.send(START)
        await c.send({"type": "http.response.body", "body": b""})

    run(go())
    assert len(t.calls) == 1 and t.calls[0][0] == "writelines"
    assert t.calls[0][1][0].startswith(b"HTTP/1.1 200 OK")


def test_connection_close_writes_before_it_closes() -> None:
    c, t = cycle(keep_alive=False)

    async def go() -> None:
        await c.send(START)
        await c.send(BODY)

    run(go())
    assert [kind for kind, _ in t.calls] == ["writelines", "close"]
    assert t.calls[0][1][1] == b"hello"


def test_an_app_that_dies_after_start_still_gets_its_headers_out_before_the_close() -> None:
    c, t = cycle()

    async def go() -> None:
        await c.send(START)
        c.transport.close()  # what uvicorn's run_asgi does when the app raises after starting

    run(go())
    assert [kind for kind, _ in t.calls] == ["writelines", "close"]
    assert t.calls[0][1][0].startswith(b"HTTP/1.1 200 OK")


def test_nothing_is_written_to_a_connection_already_closing() -> None:
    c, t = cycle()

    async def go() -> None:
        await c.send(START)
        t.closing = True
        await c.send(BODY)

    run(go())
    assert t.calls == []


async def _plain(request: Request) -> Response:
    return JSONResponse({"ok": True, "n": int(request.query_params.get("n", "0"))})


async def _stream(request: Request) -> Response:
    async def chunks() -> Any:
        for i in range(3):
            yield f"data: {i}\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


ROUTES = Starlette(routes=[Route("/plain", _plain, methods=["GET", "HEAD"]), Route("/stream", _stream)])


async def APP(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/send":  # which send the server hands the app
        body = type(send).__name__.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    await ROUTES(scope, receive, send)


@pytest.fixture(scope="module")
def served() -> Any:
    with serving(APP, http=HeaderTimeoutProtocol) as server:
        yield server


def test_served_responses_are_unchanged(served: Any) -> None:
    with httpx.Client(base_url=served.url) as client:
        assert client.get("/send").text == "HeldHeaders"  # the protocol installs it on every request
        for n in range(3):  # one keep-alive connection, several requests
            resp = client.get("/plain", params={"n": n})
            assert resp.status_code == 200 and resp.json() == {"ok": True, "n": n}
            assert resp.headers["content-length"] == str(len(resp.content))
        head = client.head("/plain")
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        stream = client.get("/stream")
        assert stream.status_code == 200 and stream.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
        assert client.get("/plain", params={"n": 9}).json()["n"] == 9
