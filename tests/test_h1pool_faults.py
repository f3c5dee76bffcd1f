"""The lean upstream client's failures (proxy/providers/h1pool.py, h1.py), each as the
UpstreamError kind the dispatcher already handles (connect, timeout, stream_cut), its place in
the pool given back; and through the proxy, a broken upstream answer is the API's error, never
a 500."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest

from proxy.policy import Policy
from proxy.providers.base import UpstreamError
from tests.support.dispatching import MODEL, MSG, deployment, nano_policy, proxy
from tests.support.raw_tcp import raw_server, read_request, reset
from tests.support.servers import free_port
from tests.test_h1pool import BODY, JSON, pool_for, post

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


async def test_connect_refused_is_a_connect_error_and_frees_its_place(policy: Policy) -> None:
    port = free_port()
    pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
    with pytest.raises(UpstreamError) as info:
        await pool.send(call, f"http://127.0.0.1:{port}/v1/chat/completions", JSON, BODY)
    assert info.value.kind == "connect" and "ConnectError" in info.value.message and str(port) in info.value.message
    assert pool.open == 0
    await pool.aclose()


async def test_a_silent_connect_is_a_connect_timeout(policy: Policy) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepts: once the backlog holds one connection, further SYNs go unanswered
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1", connect_s=0.3)
        started = time.monotonic()
        with pytest.raises(UpstreamError) as info:
            await pool.send(call, f"http://127.0.0.1:{port}/v1/x", JSON, BODY)
        assert info.value.kind == "connect" and "ConnectTimeout" in info.value.message
        assert time.monotonic() - started < 1.5 and pool.open == 0
    finally:
        filler.close()
        listener.close()


def _silent_then(head: bytes) -> object:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        if head:
            conn.sendall(head)
        time.sleep(2)

    return handler


async def test_read_timeout_before_the_head_and_between_body_chunks(policy: Policy) -> None:
    with raw_server(_silent_then(b"")) as port:  # type: ignore[arg-type]
        pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1", read_s=0.3)
        started = time.monotonic()
        with pytest.raises(UpstreamError) as info:
            await pool.send(call, f"http://127.0.0.1:{port}/v1/x", JSON, BODY)
        assert info.value.kind == "timeout" and "ReadTimeout" in info.value.message
        assert time.monotonic() - started < 1.5 and pool.open == 0
    with raw_server(_silent_then(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234")) as port:  # type: ignore[arg-type]
        pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1", read_s=0.3)
        resp = await pool.send(call, f"http://127.0.0.1:{port}/v1/x", JSON, BODY)
        chunks = []
        with pytest.raises(httpx.ReadTimeout):
            async for chunk in resp.aiter_raw():
                chunks.append(chunk)
        assert chunks == [b"01234"]
        await resp.aclose()
        assert pool.open == 0


async def test_a_server_that_closes_mid_body_then_a_fresh_connection(policy: Policy) -> None:
    served = {"n": 0}

    def first_cut_then_ok(conn: socket.socket) -> None:
        while read_request(conn):
            served["n"] += 1
            if served["n"] == 1:
                conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"half":')
                conn.close()
                return
            conn.sendall(OK)

    with raw_server(first_cut_then_ok) as port:
        pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        resp = await pool.send(call, url, JSON, BODY)
        with pytest.raises(httpx.RemoteProtocolError):  # the providers' transport_error: stream_cut
            await resp.aread()
        await resp.aclose()
        assert pool.open == 0
        assert await post(pool, call, url) == (200, b"{}")
        await pool.aclose()


async def test_a_reset_delivers_what_came_first_then_a_read_error(policy: Policy) -> None:
    def half_then_reset(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        time.sleep(0.1)
        reset(conn)

    with raw_server(half_then_reset) as port:
        pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
        resp = await pool.send(call, f"http://127.0.0.1:{port}/v1/x", JSON, BODY)
        received = b""
        with pytest.raises(httpx.ReadError):
            async for chunk in resp.aiter_raw():
                received += chunk
        assert received == b"0123456789"
        await resp.aclose()
        assert pool.open == 0


async def test_a_kept_connection_the_upstream_closed_while_idle_is_not_reused(policy: Policy) -> None:
    def one_then_close(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(OK)
        time.sleep(0.1)
        conn.close()  # idle keep-alive connection closed by the server

    with raw_server(one_then_close) as port:
        pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
        url = f"http://127.0.0.1:{port}/v1/x"
        assert await post(pool, call, url) == (200, b"{}")
        await asyncio.sleep(0.3)
        assert await post(pool, call, url) == (200, b"{}")  # on a new connection, no error
        await pool.aclose()


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 2x0 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}", b"SSH-2.0-OpenSSH\r\n\r\n"],
    ids=["bad-status", "two-lengths", "not-http"],
)
async def test_a_malformed_response_is_a_protocol_error(policy: Policy, answer: bytes) -> None:
    def bad(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer)
        time.sleep(0.5)

    with raw_server(bad) as port:
        pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
        with pytest.raises(UpstreamError) as info:
            await pool.send(call, f"http://127.0.0.1:{port}/v1/x", JSON, BODY)
        assert info.value.kind == "stream_cut" and pool.open == 0
        await pool.aclose()


async def test_a_line_break_in_a_header_or_the_url_is_refused_before_sending(policy: Policy) -> None:
    seen: list[bytes] = []

    def answer(conn: socket.socket) -> None:  # a server that would take the forged request and answer it
        while data := conn.recv(65536):
            seen.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    with raw_server(answer) as port:
        base = f"http://127.0.0.1:{port}/v1"
        pool, call = pool_for(policy, base)
        for url, headers in [
            (base + "/x", [(b"authorization", b"Bearer k\r\nx-evil: 1")]),
            (base + "/x", [(b"x-a", b"k\nx-evil: 1")]),
            ("ftp://127.0.0.1:9/v1/x", []),
        ]:
            with pytest.raises(UpstreamError) as info:
                await pool.send(call, url, headers, BODY)
            assert "x-evil" not in info.value.message
        await asyncio.sleep(0.1)
        assert seen == [] and pool.open == 0  # refused before a connection was even opened


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"choices":',  # then the close
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nnope!",  # not JSON
        b"HTTP/1.1 9999 What\r\n\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",  # bad chunk
    ],
    ids=["cut", "not-json", "bad-status", "bad-chunk"],
)
def test_through_the_proxy_a_broken_upstream_answer_is_a_502(tmp_path: Path, environ: dict, answer: bytes) -> None:
    def broken(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(answer)
            conn.close()
            return

    with raw_server(broken) as port:
        policy_dir = nano_policy(tmp_path, f"http://127.0.0.1:{port}", [deployment("bad", f"http://127.0.0.1:{port}")])
        with proxy(environ, policy_dir) as (server, _, _):
            plain = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG}, timeout=20)
            assert plain.status_code == 502, plain.text
            assert {a["kind"] for a in plain.json()["error"]["attempts"]} <= {"stream_cut", "bad_response"}
            streamed = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG, "stream": True}, timeout=20)
            # the breaker opened on the first request's failures: 503 cooling down, still the API's error
            assert streamed.status_code in (502, 503) and streamed.json()["error"]["type"] == "upstream_error", streamed.text
