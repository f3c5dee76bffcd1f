"""The lean upstream client (proxy/providers/h1pool.py, h1.py): keep-alive, the body framings,
the pool's bound, large and streamed bodies with back-pressure, cancellation, TLS. Its failures
are in test_h1pool_faults.py. Each test runs on the plain asyncio loop and on uvloop (what
`autoroute serve` runs)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvloop

from proxy.policy import Policy
from proxy.policy.registry import Deployment, Timeouts
from proxy.providers.base import UpstreamCall, UpstreamError
from proxy.providers.h1pool import Pool
from proxy.providers.http import Upstreams
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.raw_tcp import raw_server, read_request
from tests.support.servers import serving
from tests.support.tls_certs import make_ca

Run = Callable[[Coroutine[Any, Any, Any]], Any]
loops = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
BODY = orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
STREAM = orjson.dumps({"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
JSON = [(b"content-type", b"application/json")]


def pool_for(
    policy: Policy, base: str, tls: ssl.SSLContext | None = None, connect_s: float = 2.0, read_s: float = 5.0, max_connections: int = 64
) -> tuple[Pool, UpstreamCall]:
    dep = Deployment(id="t", provider="openai", api_base=base, timeouts=Timeouts(connect_s=connect_s, read_s=read_s))
    pool = Pool(dep, tls or httpx.create_ssl_context(), max_connections)
    return pool, UpstreamCall(dep, policy.models["openai/gpt-4.1"], {}, None, pool)


async def post(pool: Pool, call: UpstreamCall, url: str, body: bytes = BODY) -> tuple[int, bytes]:
    resp = await pool.send(call, url, JSON, body)
    try:
        return resp.status_code, await resp.aread()
    finally:
        await resp.aclose()


def test_the_lean_pool_is_the_default_and_httpx_the_fallback(policy: Policy, environ: dict) -> None:
    dep = next(d for d in policy.deployments if d.id == "openai")
    assert isinstance(Upstreams(policy, environ).pool(dep), Pool)
    assert not isinstance(Upstreams(policy, {**environ, "AUTOROUTE_UPSTREAM_CLIENT": "httpx"}).pool(dep), Pool)


@loops
def test_keep_alive_one_connection_for_sequential_requests(run: Run, policy: Policy, upstream: FakeUpstream, environ: dict) -> None:
    base = environ["OPENAI_BASE_URL"]

    async def body() -> None:
        pool, call = pool_for(policy, base)
        for _ in range(5):
            status, content = await post(pool, call, base + "/chat/completions")
            assert status == 200 and orjson.loads(content)["choices"][0]["message"]["content"]
        assert pool.open == 1 and sum(len(v) for v in pool.idle.values()) == 1
        sent = upstream.requests_for("gpt-4.1")
        assert len(sent) == 5 and len({r.client for r in sent}) == 1
        assert sent[0].headers["content-type"] == "application/json"
        await pool.aclose()
        assert pool.open == 0

    run(body())


def _framings(conn: socket.socket) -> None:
    """Chunked (in pieces, with an extension and a trailer), then Content-Length, then chunked,
    on one connection."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n")
    time.sleep(0.05)
    conn.sendall(b"6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n")
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello again")
    read_request(conn)
    conn.sendall(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n3\r\nend\r\n0\r\n\r\n")
    time.sleep(0.5)


@loops
def test_chunked_and_content_length_bodies_on_one_kept_alive_connection(run: Run, policy: Policy) -> None:
    with raw_server(_framings) as port:

        async def body() -> None:
            pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            assert await post(pool, call, url) == (200, b"hello world")
            assert await post(pool, call, url) == (200, b"hello again")
            resp = await pool.send(call, url, JSON, BODY)
            assert resp.status_code == 201 and resp.headers.get("Retry-After") == "3"
            assert [c async for c in resp.aiter_raw()] == [b"end"]
            await resp.aclose()
            assert pool.open == 1  # all three on one connection
            await pool.aclose()

        run(body())


@loops
def test_a_body_delimited_by_the_close(run: Run, policy: Policy) -> None:
    def until_close(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
        time.sleep(0.05)
        conn.sendall(b"1}")
        conn.close()

    with raw_server(until_close) as port:

        async def body() -> None:
            pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
            assert await post(pool, call, f"http://127.0.0.1:{port}/v1/x") == (200, b'{"a":1}')
            assert pool.open == 0  # not kept: the close ended the body
            await pool.aclose()

        run(body())


@loops
def test_the_pool_bound_holds_and_a_full_pool_times_out(run: Run, policy: Policy, upstream: FakeUpstream, environ: dict) -> None:
    base = environ["OPENAI_BASE_URL"]
    url = base + "/chat/completions"

    async def body() -> None:
        pool, call = pool_for(policy, base, max_connections=2, connect_s=0.3)
        upstream.script("gpt-4.1", *[Fault.slow_first(0.1)] * 6)
        results = await asyncio.gather(*(post(pool, call, url) for _ in range(6)))  # 6 requests, 2 connections
        assert [status for status, _ in results] == [200] * 6
        assert len({r.client for r in upstream.requests_for("gpt-4.1")}) == 2 and pool.open == 2
        held = [await pool.send(call, url, JSON, STREAM) for _ in range(2)]  # both connections busy
        started = time.monotonic()
        with pytest.raises(UpstreamError) as info:
            await pool.send(call, url, JSON, BODY)
        assert info.value.kind == "timeout" and "PoolTimeout" in info.value.message
        assert 0.25 < time.monotonic() - started < 1.5
        waiting = asyncio.create_task(post(pool, call, url))  # waits for a connection...
        await asyncio.sleep(0.05)
        await held[0].aclose()  # ... and gets the room this one leaves (closed: not read to its end)
        assert (await waiting)[0] == 200
        await held[1].aread()
        await held[1].aclose()
        assert pool.open <= 2 and not pool.waiters
        await pool.aclose()

    run(body())


@loops
def test_a_response_larger_than_the_buffer_pauses_reading_and_arrives_whole(run: Run, policy: Policy) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: eight times the high-water mark

    def big(conn: socket.socket) -> None:
        for _ in range(2):
            read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload)
        time.sleep(0.5)

    with raw_server(big) as port:

        async def body() -> None:
            pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
            url = f"http://127.0.0.1:{port}/v1/x"
            resp = await pool.send(call, url, JSON, BODY)
            await asyncio.sleep(0.2)  # the body piles up: reading pauses at the high-water mark
            conn = next(iter(c for c in [resp._conn] if c is not None))
            assert conn.read_paused and conn.size < len(payload)
            assert await resp.aread() == payload
            await resp.aclose()
            received = b""
            resp = await pool.send(call, url, JSON, BODY)  # the same connection, read as a stream
            async for chunk in resp.aiter_raw():
                received += chunk
            await resp.aclose()
            assert received == payload and pool.open == 1
            await pool.aclose()

        run(body())


@loops
def test_cancelled_mid_stream_closes_the_connection_and_frees_its_place(
    run: Run, policy: Policy, upstream: FakeUpstream, environ: dict
) -> None:
    base = environ["OPENAI_BASE_URL"]
    url = base + "/chat/completions"

    async def body() -> None:
        pool, call = pool_for(policy, base, max_connections=1)
        upstream.script("gpt-4.1", Fault.hang(2))  # cancelled while waiting for the head
        waiting = asyncio.create_task(pool.send(call, url, JSON, BODY))
        await asyncio.sleep(0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool.open == 0
        upstream.script("gpt-4.1", Fault.slow(0.3))  # cancelled halfway through a streamed body
        resp = await pool.send(call, url, JSON, STREAM)
        chunks: list[bytes] = []

        async def read_all() -> None:
            async for chunk in resp.aiter_raw():
                chunks.append(chunk)

        reading = asyncio.create_task(read_all())
        await asyncio.sleep(0.45)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert chunks and pool.open == 1  # cancelled mid-body; the response still holds its place
        await resp.aclose()
        assert pool.open == 0 and not any(pool.idle.values())  # closed, not handed to the next request
        before = len(upstream.received)
        for _ in range(2):
            status, content = await post(pool, call, url)
            assert status == 200 and orjson.loads(content)["choices"]
        after = upstream.received[before:]
        assert len(after) == 2 and after[0].client == after[1].client  # a fresh, sound connection, kept
        await pool.aclose()

    run(body())


@loops
def test_tls_with_a_test_ca_and_the_server_name_checked(run: Run, policy: Policy, tmp_path: Path) -> None:
    ca = make_ca(tmp_path, ("localhost",))
    app = FakeUpstream()
    with serving(app, ssl_certfile=str(ca.cert_file), ssl_keyfile=str(ca.key_file)) as server:
        trusted = httpx.create_ssl_context()
        trusted.load_verify_locations(cafile=ca.ca_file)
        url = f"https://localhost:{server.port}/v1/chat/completions"

        async def body() -> None:
            pool, call = pool_for(policy, f"https://localhost:{server.port}/v1", trusted)
            for _ in range(3):
                resp = await pool.send(call, url, JSON, BODY)
                assert resp.status_code == 200 and resp._conn is not None
                tls_object = resp._conn.transport.get_extra_info("ssl_object")
                assert tls_object is not None and tls_object.version().startswith("TLS")
                assert orjson.loads(await resp.aread())["choices"][0]["message"]["content"]
                await resp.aclose()
            assert len({r.client for r in app.received}) == 1  # one TLS connection, kept alive
            with pytest.raises(UpstreamError) as wrong_name:  # the certificate names localhost only
                await pool.send(call, f"https://127.0.0.1:{server.port}/v1/chat/completions", JSON, BODY)
            assert wrong_name.value.kind == "connect"
            await pool.aclose()
            untrusting, call2 = pool_for(policy, f"https://localhost:{server.port}/v1")
            with pytest.raises(UpstreamError) as untrusted:
                await untrusting.send(call2, url, JSON, BODY)
            assert untrusted.value.kind == "connect" and "ConnectError" in untrusted.value.message
            assert untrusting.open == 0
            await untrusting.aclose()

        run(body())
