"""The limiter's script calls skip redis-py's pool machinery (proxy/limits/direct.py): one
connection per call in flight, reused only when its whole reply was read, so a later call never
reads an earlier call's reply; a dropped connection is retried once on a fresh one; closing the
client closes them."""

from __future__ import annotations

import asyncio

import pytest
import redis as sync_redis
from redis.exceptions import NoScriptError

from proxy.limits.direct import DirectRedis
from proxy.limits.store import connect_redis

ECHO = "return ARGV[1]"
SPIN = "local t = redis.call('TIME'); local stop = t[1] * 1000000 + t[2] + ARGV[2]; repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop; return ARGV[1]"


def _clients(url: str) -> int:
    with sync_redis.Redis.from_url(url) as admin:
        return sum(1 for c in admin.client_list() if c.get("name") == "direct-test")


async def _named(url: str) -> DirectRedis:
    client = connect_redis(url + "?client_name=direct-test", timeout_s=0.25)
    assert isinstance(client, DirectRedis)
    return client


async def test_calls_reuse_one_connection_and_error_replies_keep_it(redis_url: str) -> None:
    client = await _named(redis_url)
    try:
        for i in range(30):
            assert await client.eval(ECHO, 0, f"call {i}") == f"call {i}"
        with pytest.raises(NoScriptError):
            await client.evalsha("0" * 40, 0)
        assert len(client.direct._idle) == 1 and _clients(redis_url) == 1
        results = await asyncio.gather(*(client.eval(ECHO, 0, str(i)) for i in range(8)))
        assert results == [str(i) for i in range(8)]  # each reply reaches its own caller
        assert len(client.direct._idle) == 8  # one connection per call in flight, kept for the next burst
    finally:
        await client.aclose()
    assert _clients(redis_url) == 0  # closing the client closed the direct connections


async def test_a_call_cut_mid_reply_never_hands_its_reply_to_the_next_call(redis_url: str) -> None:
    client = await _named(redis_url)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await client.eval(SPIN, 0, "stale", 150_000)  # answers after 150 ms
        assert client.direct._idle == []  # the interrupted connection was closed, not kept
        assert await client.eval(ECHO, 0, "fresh") == "fresh"
        await asyncio.sleep(0.2)
        assert await client.eval(ECHO, 0, "later") == "later"
    finally:
        await client.aclose()


async def test_a_dropped_connection_is_retried_once_on_a_new_one(redis_url: str) -> None:
    client = await _named(redis_url)
    try:
        assert await asyncio.gather(*(client.eval(ECHO, 0, "before") for _ in range(3))) == ["before"] * 3
        assert len(client.direct._idle) == 3
        with sync_redis.Redis.from_url(redis_url) as admin:
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 1  # the server drops every client
        assert await client.eval(ECHO, 0, "after") == "after"  # no error reaches the limiter
        assert len(client.direct._idle) == 1  # the stale ones were closed, not retried on
    finally:
        await client.aclose()
