"""The Redis client's connections (proxy/store/connection.py): a command costs no task, and a
write that does not drain within the socket timeout still fails as redis-py's TimeoutError."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.limits.store import connect_redis
from proxy.store.connection import LeanConnection
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_url():  # type: ignore[no-untyped-def]
    with RedisServer() as server:
        yield server.url


def test_commands_create_no_task(redis_url: str) -> None:
    async def scenario() -> tuple[int, Any]:
        client = connect_redis(redis_url, timeout_s=0.5)
        await client.ping()  # connected
        created = 0
        loop = asyncio.get_running_loop()

        def factory(loop_: Any, coro: Any, **kw: Any) -> asyncio.Task[Any]:
            nonlocal created
            created += 1
            return asyncio.Task(coro, loop=loop_, **kw)

        loop.set_task_factory(factory)
        for i in range(5):
            await client.set(f"k{i}", i)
        loop.set_task_factory(None)
        kind = client.connection_pool.connection_class
        await client.aclose()
        return created, kind

    created, kind = asyncio.run(scenario())
    assert kind is LeanConnection
    assert created == 0


def test_a_write_that_does_not_drain_times_out(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[type[BaseException] | None, bool]:
        client = connect_redis(redis_url, timeout_s=0.5)
        await client.ping()
        conn = await client.connection_pool.get_connection()
        conn.socket_timeout = 0.05

        async def stuck() -> None:
            await asyncio.sleep(5)

        monkeypatch.setattr(conn._writer, "drain", stuck)
        raised: type[BaseException] | None = None
        try:
            await conn.send_command("PING")
        except BaseException as exc:
            raised = type(exc)
        connected = conn.is_connected
        await client.connection_pool.release(conn)
        await client.aclose()
        return raised, connected

    raised, connected = asyncio.run(scenario())
    assert raised is RedisTimeoutError
    assert not connected
