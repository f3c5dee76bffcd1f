"""The httpx fallback client's asyncio network backend (proxy/providers/netio.py): TLS, every timeout
and failure as httpcore's exception, flow control, cancellation. Each test runs on the plain
asyncio loop and on uvloop (what `autoroute serve` runs)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpcore
import httpx
import orjson
import pytest
import uvloop

from proxy.policy import Policy
from proxy.policy.registry import Deployment, Timeouts
from proxy.providers.base import UpstreamCall, UpstreamError
from proxy.providers.http import HttpxPool as Pool
from proxy.providers.netio import AsyncioBackend
from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_tcp import raw_server, read_request, reset
from tests.support.servers import free_port, serving
from tests.support.tls_certs import make_ca

Run = Callable[[Coroutine[Any, Any, Any]], Any]
loops = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
BODY = orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
JSON = [(b"content-type", b"application/json")]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def pool_for(
    policy: Policy, base: str, tls: ssl.SSLContext | None = None, connect_s: float = 2.0, read_s: float = 5.0
) -> tuple[Pool, UpstreamCall]:
    dep = Deployment(id="t", provider="openai", api_base=base, timeouts=Timeouts(connect_s=connect_s, read_s=read_s))
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    pool = Pool(dep, limits, tls or httpx.create_ssl_context())
    return pool, UpstreamCall(dep, policy.models["openai/gpt-4.1"], {}, None, pool)


async def post(pool: Pool, call: UpstreamCall, url: str) -> tuple[int, bytes]:
    resp = await pool.send(call, url, JSON, BODY)
    try:
        return resp.status_code, await resp.aread()
    finally:
        await resp.aclose()


# --- TLS ---


@loops
def test_tls_with_a_test_ca_and_the_server_name_checked(run: Run, policy: Policy, tmp_path: Path) -> None:
    ca = make_ca(tmp_path, ("localhost",))
    app = FakeUpstream()
    with serving(app, ssl_certfile=str(ca.cert_file), ssl_keyfile=str(ca.key_file)) as server:
        trusted = httpx.create_ssl_context()
        trusted.load_verify_locations(cafile=ca.ca_file)

        async def body() -> None:
            pool, call = pool_for(policy, f"https://localhost:{server.port}/v1", trusted)
            url = f"https://localhost:{server.port}/v1/chat/completions"
            for _ in range(3):
                resp = await pool.send(call, url, JSON, BODY)
                assert resp.status_code == 200
                assert orjson.loads(await resp.aread())["choices"][0]["message"]["content"]
                tls_object = resp.extensions["network_stream"].get_extra_info("ssl_object")
                assert tls_object is not None and tls_object.version().startswith("TLS")
                await resp.aclose()
            assert len({r.client for r in app.received}) == 1  # one TLS connection, kept alive
            # the certificate names localhost only: the same server by IP address is refused
            with pytest.raises(UpstreamError) as wrong_name:
                await pool.send(call, f"https://127.0.0.1:{server.port}/v1/chat/completions", JSON, BODY)
            assert wrong_name.value.kind == "connect"
            await pool.aclose()
            # a pool that does not trust the test CA is refused too
            untrusting, call2 = pool_for(policy, f"https://localhost:{server.port}/v1")
            with pytest.raises(UpstreamError) as untrusted:
                await untrusting.send(call2, url, JSON, BODY)
            assert untrusted.value.kind == "connect" and "ConnectError" in untrusted.value.message
            await untrusting.aclose()

        run(body())


@loops
def test_a_silent_tls_handshake_is_a_connect_timeout(run: Run) -> None:
    with raw_server(lambda conn: time.sleep(2)) as port:

        async def body() -> None:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=1)
            started = time.monotonic()
            with pytest.raises(httpcore.ConnectTimeout):
                await stream.start_tls(httpx.create_ssl_context(), "localhost", timeout=0.3)
            assert time.monotonic() - started < 1.5

        run(body())


# --- each timeout and failure as httpcore's exception ---


@loops
def test_connect_timeout_and_connect_error(run: Run) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepts: once the backlog holds one connection, further SYNs go unanswered
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)

    async def body() -> None:
        started = time.monotonic()
        with pytest.raises(httpcore.ConnectTimeout):
            await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=0.3)
        assert time.monotonic() - started < 1.5
        with pytest.raises(httpcore.ConnectError):
            await AsyncioBackend().connect_tcp("127.0.0.1", free_port(), timeout=1)

    try:
        run(body())
    finally:
        filler.close()
        listener.close()


@loops
def test_read_timeout(run: Run) -> None:
    def silent(conn: socket.socket) -> None:
        read_request(conn)
        time.sleep(2)

    with raw_server(silent) as port:

        async def body() -> None:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=1)
            await stream.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", timeout=1)
            started = time.monotonic()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(65536, timeout=0.3)
            assert time.monotonic() - started < 1.5
            await stream.aclose()

        run(body())


@loops
def test_write_timeout_when_the_peer_stops_reading(run: Run) -> None:
    with raw_server(lambda conn: time.sleep(3)) as port:

        async def body() -> None:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=1)
            started = time.monotonic()
            with pytest.raises(httpcore.WriteTimeout):
                await stream.write(b"x" * (32 * 1024 * 1024), timeout=0.3)  # more than the socket buffers hold
            assert time.monotonic() - started < 1.5
            await stream.aclose()

        run(body())


@loops
def test_a_reset_connection_is_a_read_error_then_a_write_error(run: Run) -> None:
    def half_then_reset(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        time.sleep(0.1)
        reset(conn)

    with raw_server(half_then_reset) as port:

        async def body() -> None:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=1)
            await stream.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", timeout=1)
            received = b""
            with pytest.raises(httpcore.ReadError):
                while True:
                    received += await stream.read(65536, timeout=2)
            assert received.endswith(b"0123456789")  # what arrived before the reset is delivered first
            assert stream.get_extra_info("is_readable") is True  # a lost connection counts as stale
            with pytest.raises(httpcore.WriteError):
                await stream.write(b"more", timeout=1)
            await stream.aclose()

        run(body())


@loops
def test_a_server_that_closes_mid_body(run: Run, policy: Policy) -> None:
    """A clean close (FIN) halfway through a Content-Length body: a protocol error on the body
    read (the dispatcher's `stream_cut`); the pool's slot comes back and the next request,
    on a fresh connection, gets its answer."""
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

        async def body() -> None:
            pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            resp = await pool.send(call, url, JSON, BODY)
            with pytest.raises(httpx.RemoteProtocolError):
                await resp.aread()
            await resp.aclose()
            assert pool.in_flight == [0] * len(pool.shards)
            assert await post(pool, call, url) == (200, b"{}")
            await pool.aclose()

        run(body())


@loops
def test_a_large_response_is_read_whole_through_read_flow_control(run: Run, policy: Policy) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: more than the buffer's high-water mark

    def big(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload)
        time.sleep(0.5)

    with raw_server(big) as port:

        async def body() -> None:
            pool, call = pool_for(policy, f"http://127.0.0.1:{port}/v1")
            resp = await pool.send(call, f"http://127.0.0.1:{port}/v1/x", JSON, BODY)
            await asyncio.sleep(0.2)  # let the response pile up in the buffer: reading pauses
            assert await resp.aread() == payload
            await resp.aclose()
            await pool.aclose()

        run(body())


# --- cancellation ---


@loops
def test_a_cancelled_request_then_a_new_one_on_the_same_pool(run: Run, policy: Policy, upstream: FakeUpstream, environ: dict) -> None:
    from tests.support.fake_upstream import Fault

    base = environ["OPENAI_BASE_URL"]
    url = base + "/chat/completions"

    async def body() -> None:
        pool, call = pool_for(policy, base)
        # cancelled while waiting for the response head
        upstream.script("gpt-4.1", Fault.hang(2))
        waiting = asyncio.create_task(pool.send(call, url, JSON, BODY))
        await asyncio.sleep(0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool.in_flight == [0] * len(pool.shards)
        status, content = await post(pool, call, url)
        assert status == 200 and orjson.loads(content)["choices"]
        # cancelled halfway through a streamed body
        upstream.script("gpt-4.1", Fault.slow(0.3))
        stream_body = orjson.dumps({"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        resp = await pool.send(call, url, JSON, stream_body)
        chunks: list[bytes] = []

        async def read_all() -> None:
            async for chunk in resp.aiter_raw():
                chunks.append(chunk)

        reading = asyncio.create_task(read_all())
        await asyncio.sleep(0.45)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert chunks  # it was cancelled mid-body, not before
        await resp.aclose()
        assert pool.in_flight == [0] * len(pool.shards)
        before = len(upstream.received)
        for _ in range(2):
            status, content = await post(pool, call, url)
            assert status == 200 and orjson.loads(content)["choices"]
        after = upstream.received[before:]
        assert len(after) == 2 and after[0].client == after[1].client  # a sound connection, kept alive
        await pool.aclose()

    run(body())
