"""CancelOnDisconnect when the server reports a lost connection itself (proxy/request/disconnect.py
`LossHook`, installed by `autoroute serve`'s protocol): the handler runs in the caller's task, a
loss cancels it, and only the cancellation the middleware caused is swallowed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from proxy.cli.connections import HeaderTimeoutProtocol
from proxy.request.disconnect import LOSS_HOOK, CancelOnDisconnect, LossHook
from tests.support.servers import serving


class Peer:
    """The server side of one request: a body, then nothing until the connection is lost."""

    def __init__(self, body_parts: int = 1) -> None:
        self.parts = body_parts
        self.sent: list[dict[str, Any]] = []
        self.hook = LossHook()
        self.scope: dict[str, Any] = {"type": "http", "extensions": {LOSS_HOOK: self.hook}}

    async def receive(self) -> dict[str, Any]:
        if self.parts > 0:
            self.parts -= 1
            return {"type": "http.request", "body": b"x", "more_body": self.parts > 0}
        await asyncio.Event().wait()  # uvicorn's receive after the body: only a disconnect ends it
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def handler(seen: dict[str, Any], finish: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["task"] = asyncio.current_task()
        while (await receive()).get("more_body"):
            pass
        seen["body_read"] = True
        try:
            if finish:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"ok"})
                return
            await asyncio.sleep(30)  # an upstream call
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    return app


async def past_the_body(seen: dict[str, Any], peer: Peer) -> asyncio.Future[None]:
    """The middleware serving `peer` in a task of its own, once its handler has read the body."""
    task = asyncio.ensure_future(CancelOnDisconnect(handler(seen))(peer.scope, peer.receive, peer.send))
    while "body_read" not in seen:
        await asyncio.sleep(0)
    return task


async def test_a_lost_connection_cancels_the_handler_in_the_callers_own_task() -> None:
    seen: dict[str, Any] = {}
    peer = Peer()
    task = await past_the_body(seen, peer)
    assert seen["task"] is task  # no child task, no watcher task
    peer.hook.fire()
    await asyncio.wait_for(task, 2)  # returns: the client left, nobody to answer
    assert seen["cancelled"] and task.cancelling() == 0 and not task.cancelled()
    assert peer.hook.on_lost is None  # a later loss on this connection touches nothing


async def test_a_loss_while_the_body_is_read_cancels_once_the_body_is_in() -> None:
    seen: dict[str, Any] = {}
    peer = Peer(body_parts=3)
    peer.hook.fire()  # too early for the hook's owner: nothing registered yet
    task = asyncio.ensure_future(CancelOnDisconnect(handler(seen))(peer.scope, peer.receive, peer.send))
    await asyncio.sleep(0)
    peer.hook.fire()  # lost while the body is being read: the handler gets its body, then the cancel
    await asyncio.wait_for(task, 2)
    assert seen["body_read"] and seen["cancelled"] and task.cancelling() == 0


async def test_a_finished_response_is_never_cancelled() -> None:
    seen: dict[str, Any] = {}
    peer = Peer()
    await CancelOnDisconnect(handler(seen, finish=True))(peer.scope, peer.receive, peer.send)
    peer.hook.fire()
    assert "cancelled" not in seen and peer.sent[-1]["body"] == b"ok"


async def test_the_server_stopping_is_not_swallowed() -> None:
    seen: dict[str, Any] = {}
    peer = Peer()
    task = await past_the_body(seen, peer)
    peer.hook.fire()
    task.cancel()  # the server's own cancellation, at the same time
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)


async def _scope_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = type((scope.get("extensions") or {}).get(LOSS_HOOK)).__name__.encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def test_autoroutes_protocol_gives_every_request_a_loss_hook() -> None:
    with serving(_scope_app, http=HeaderTimeoutProtocol) as server, httpx.Client(base_url=server.url) as client:
        assert [client.get("/").text for _ in range(2)] == ["LossHook", "LossHook"]  # keep-alive: one per request
    with serving(_scope_app) as server:  # another server: none, and the middleware falls back to its watcher
        assert httpx.get(server.url).text == "NoneType"
