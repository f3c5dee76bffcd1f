"""The httpx fallback pool (`AUTOROUTE_UPSTREAM_CLIENT=httpx`, proxy/providers/httpx_pool.py):
sharded, least-busy first, slots always returned. The lean pool is tested in test_h1pool.py."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from proxy.policy import Policy
from proxy.providers.base import UpstreamCall, UpstreamError
from proxy.providers.http import HttpxPool, Upstreams
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import free_port

BODY = orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})


def pool_and_call(policy: Policy, environ: dict) -> tuple[HttpxPool, UpstreamCall]:
    dep = next(d for d in policy.deployments if d.id == "openai")
    pool = Upstreams(policy, {**environ, "AUTOROUTE_UPSTREAM_CLIENT": "httpx"}).pool(dep)
    assert isinstance(pool, HttpxPool)
    return pool, UpstreamCall(dep, policy.models["openai/gpt-4.1"], {}, None, pool)


async def test_sequential_requests_use_one_shard_and_slots_come_back(policy: Policy, environ: dict, upstream: FakeUpstream) -> None:
    pool, call = pool_and_call(policy, environ)
    url = call.deployment.api_base + "/chat/completions"
    for _ in range(5):
        resp = await pool.send(call, url, [(b"content-type", b"application/json")], BODY)
        await resp.aread()
        assert resp.status_code == 200
    assert pool.in_flight == [0] * len(pool.shards)
    assert len({r.client for r in upstream.received}) == 1  # one connection, kept alive
    await pool.aclose()


async def test_concurrent_requests_spread_over_shards(policy: Policy, environ: dict, upstream: FakeUpstream) -> None:
    pool, call = pool_and_call(policy, environ)
    url = call.deployment.api_base + "/chat/completions"
    upstream.script("*", *[Fault.slow_first(0.3)] * 8)
    body = orjson.dumps({"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    responses = await asyncio.gather(*(pool.send(call, url, [], body) for _ in range(8)))
    assert sorted(pool.in_flight) == [1] * len(pool.shards)  # each shard holds one open stream
    for resp in responses[:4]:
        await resp.aread()  # read to the end: closed, slot back
    for resp in responses[4:]:
        await resp.aclose()  # closed early (a client that left): slot back too
    assert pool.in_flight == [0] * len(pool.shards)
    await pool.aclose()


async def test_failed_connection_returns_its_slot(policy: Policy, environ: dict) -> None:
    pool, call = pool_and_call(policy, environ)
    with pytest.raises(UpstreamError) as info:
        await pool.send(call, f"http://127.0.0.1:{free_port()}/v1/chat/completions", [], BODY)
    assert info.value.kind == "connect"
    assert pool.in_flight == [0] * len(pool.shards)
    await pool.aclose()


def test_urls_are_parsed_once_and_bounded(policy: Policy, environ: dict) -> None:
    pool, _ = pool_and_call(policy, environ)
    first = pool.url("http://x/v1/chat/completions")
    assert pool.url("http://x/v1/chat/completions") is first and isinstance(first, httpx.URL)
    for i in range(200):
        pool.url(f"http://x/v1beta/models/m{i}:generateContent")
    assert len(pool._urls) <= 65
