"""The limiter on a real Redis: concurrency, several processes, budgets under load, outages.

Runs on the tests' own redis-server (tests/conftest.py `redis_url`: a free port, started and
stopped by the session); its absence is a failure, not a skip.
Every test uses its own key prefix and deletes only its own keys. The outage test starts its
own redis-server on a free port (6390+) and kills/restarts that one only.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.errors import StoreUnavailable
from proxy.keys.store import EPOCH, KeyFields, KeyRecord, KeyStore
from proxy.limits.format import DeploymentBusy, KeyBudgetExceeded, KeyRateLimited
from proxy.limits.limiter import Limiter, Reservation
from proxy.limits.store import connect_redis, ping
from proxy.policy.limits import LimitsPolicy
from proxy.policy.registry import Deployment

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def prefix() -> str:
    return f"artest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(prefix: str, redis_url: str) -> AsyncIterator[Any]:
    r = connect_redis(redis_url, timeout_s=5.0)
    assert await ping(r, 2.0), f"no Redis answers at {redis_url}; these tests never skip"
    yield r
    async for name in r.scan_iter(match=f"{prefix}:*", count=1000):
        await r.delete(name)
    await r.aclose()


def key(**fields: Any) -> KeyRecord:
    return KeyRecord(id=fields.pop("id", "key_load"), name="load", created_at=EPOCH, **fields)


def dep(**limits: Any) -> Deployment:
    return Deployment(id=limits.pop("id", "dep-load"), provider="openai", api_base="http://127.0.0.1:9", **limits)


async def attempt(lim: Limiter, k: KeyRecord, d: Deployment | None = None, cost: float = 0.0) -> Any:
    try:
        return await lim.reserve(k, d, model="m", input_tokens=50, output_tokens=50, cost_usd=cost)
    except (KeyRateLimited, DeploymentBusy, KeyBudgetExceeded) as exc:
        return exc


@pytest.mark.parametrize("per_slot", [False, True])
async def test_500_concurrent_admissions_against_rpm_100_admit_exactly_100(redis: Any, prefix: str,
                                                                           per_slot: bool) -> None:  # fmt: skip
    lim = Limiter(redis, LimitsPolicy(), prefix=prefix, per_slot=per_slot)
    results = await asyncio.gather(*(attempt(lim, key(rpm=100), dep(max_concurrent=10_000)) for _ in range(500)))
    admitted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, KeyRateLimited)]
    assert (len(admitted), len(refused)) == (100, 400)
    assert all(r.limit == "requests_per_minute" for r in refused)
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted) == list(range(100))


@pytest.mark.parametrize("per_slot", [False, True])
async def test_deployment_limits_hold_under_concurrency(redis: Any, prefix: str, per_slot: bool) -> None:
    lim = Limiter(redis, LimitsPolicy(), prefix=prefix, per_slot=per_slot)
    k = key(rpm=1000)
    results = await asyncio.gather(*(attempt(lim, k, dep(rpm=60, max_concurrent=1000)) for _ in range(300)))
    assert sum(isinstance(r, Reservation) for r in results) == 60
    assert sum(isinstance(r, DeploymentBusy) for r in results) == 240
    # refused requests hold nothing on the key (per_slot: compensated): 60 of 1000 used
    res = await lim.reserve(k, None, model="m", input_tokens=1, output_tokens=1, cost_usd=0)
    assert res.headers["x-ratelimit-remaining-requests"] == str(1000 - 61)
    busy = await asyncio.gather(*(attempt(lim, key(id=f"key_{i}"), dep(id="d2", max_concurrent=10)) for i in range(100)))
    assert sum(isinstance(r, Reservation) for r in busy) == 10


_WORKER = """
import asyncio, json, sys, time
from proxy.keys.store import EPOCH, KeyRecord
from proxy.limits.limiter import Limiter, Reservation
from proxy.limits.format import KeyRateLimited
from proxy.policy.limits import LimitsPolicy
from proxy.limits.store import connect_redis

async def main(url, prefix, start_at, n):
    redis = connect_redis(url, timeout_s=5.0)
    limiter = Limiter(redis, LimitsPolicy(), prefix=prefix)
    key = KeyRecord(id="key_shared", name="shared", rpm=100, created_at=EPOCH)
    await redis.ping()
    await asyncio.sleep(max(0.0, start_at - time.time()))

    async def one():
        try:
            return await limiter.reserve(key, None, model="m", input_tokens=10, output_tokens=10, cost_usd=0)
        except KeyRateLimited as exc:
            return exc

    results = await asyncio.gather(*(one() for _ in range(n)))
    print(json.dumps({"admitted": sum(isinstance(r, Reservation) for r in results),
                      "refused": sum(isinstance(r, KeyRateLimited) for r in results), "pid": __import__("os").getpid()}))
    await redis.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


async def test_two_processes_share_one_limit(redis: Any, prefix: str, tmp_path: Path, redis_url: str) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start_at = time.time() + 4.0
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            redis_url,
            prefix,
            str(start_at),
            "150",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
        reports.append(json.loads(out))
    assert reports[0]["pid"] != reports[1]["pid"]
    # each process alone would admit 100 of its 150 with per-process limits (200 in all)
    assert sum(r["admitted"] for r in reports) == 100
    assert sum(r["refused"] for r in reports) == 200


@pytest.mark.parametrize(("low", "high", "seed"), [(1.0, 1.0, 1), (0.3, 1.0, 2), (0.5, 1.0, 3), (0.8, 1.2, 4), (0.9, 1.5, 5)])
async def test_200_concurrent_requests_never_overspend_a_budget_for_50(redis: Any, prefix: str, low: float,
                                                                      high: float, seed: int) -> None:  # fmt: skip
    """Budget $0.50, estimate $0.01: exactly 50 fit. Actual cost = estimate x U(low, high).

    Bound: spend <= budget + sum of (actual - estimate) over admitted requests where positive;
    with actual <= estimate (low..1.0) that is spend <= budget, exactly.
    """
    rng = random.Random(seed)
    lim = Limiter(redis, LimitsPolicy(), prefix=prefix)
    k = key(budget_usd_total=0.50)
    estimate = 0.01
    actuals = [round(estimate * rng.uniform(low, high), 9) for _ in range(200)]
    delays = [(rng.uniform(0, 0.02), rng.uniform(0, 0.01)) for _ in range(200)]
    admitted_actuals: list[float] = []

    async def one(i: int) -> None:
        await asyncio.sleep(delays[i][0])
        res = await attempt(lim, k, cost=estimate)
        if isinstance(res, Reservation):
            admitted_actuals.append(actuals[i])
            await asyncio.sleep(delays[i][1])
            await lim.settle(res, input_tokens=50, output_tokens=50, cost_usd=actuals[i])

    await asyncio.gather(*(one(i) for i in range(200)))
    usage = await lim.usage.key_usage(k.id)
    spend = usage["total_cost_usd"]
    over_estimate = sum(max(a - estimate, 0.0) for a in admitted_actuals)
    assert spend == pytest.approx(sum(admitted_actuals), abs=1e-8)
    assert spend <= 0.50 + over_estimate + 1e-9
    if high <= 1.0:
        assert spend <= 0.50 + 1e-9
        assert len(admitted_actuals) >= 50  # settling below the estimate frees budget for more
    if low == high == 1.0:
        assert len(admitted_actuals) == 50 and int(await redis.get(f"{prefix}:{{{k.id}}}:spend")) == 500_000_000
    assert usage["reserved_cost_usd"] == 0


async def test_keys_on_real_redis(redis: Any, prefix: str) -> None:
    a = KeyStore(redis, "master-key-real-redis", prefix=prefix)
    b = KeyStore(redis, "master-key-real-redis", prefix=prefix, cache_ttl_s=0.0)
    rec, secret = await a.create(KeyFields(name="real", rpm=3))
    assert (await b.authenticate(secret)).rpm == 3
    await asyncio.gather(*(a.update(rec.id, {"rpm": n}) for n in range(10, 20)))  # WATCH/MULTI retries
    assert (await b.authenticate(secret)).rpm in range(10, 20)
    await a.revoke(rec.id)
    assert [r.id for r in await b.list()] == []


# ---------------------------------------------------------------------------- outage


class OwnRedis:
    """A private redis-server on a free port >= 6390, which this test may kill and restart."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (make redis installs it); this test never skips"
        self.binary, self.workdir = binary, workdir
        self.port = _free_port(6390)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "own redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)


def _free_port(start: int) -> int:
    for port in range(start, start + 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port for a private redis-server")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGCONT)
        server.kill()


async def test_redis_outage_follows_the_failure_mode_and_recovers(own_redis: OwnRedis, prefix: str) -> None:
    client = connect_redis(own_redis.url, timeout_s=0.2)
    errors: list[str] = []
    open_lim = Limiter(client, LimitsPolicy(on_store_error="fail_open", store_timeout_s=0.2), prefix=prefix,
                       retry_interval_s=0.2, on_store_error=lambda op, exc: errors.append(op))  # fmt: skip
    closed_lim = Limiter(client, LimitsPolicy(on_store_error="fail_closed", store_timeout_s=0.2), prefix=prefix,
                         retry_interval_s=0.2)  # fmt: skip
    k = key(rpm=5)

    async def bounded(coro: Any) -> Any:
        return await asyncio.wait_for(coro, 5.0)  # a hang fails the test

    assert not (await bounded(attempt(open_lim, k))).degraded
    assert not (await bounded(attempt(closed_lim, k))).degraded

    for outage in ("killed", "hung"):
        if outage == "killed":
            own_redis.kill()
        else:
            own_redis.signal(signal.SIGSTOP)
        for _ in range(3):
            res = await bounded(attempt(open_lim, k))
            assert isinstance(res, Reservation) and res.degraded
            await bounded(open_lim.settle(res, input_tokens=1, output_tokens=1, cost_usd=0))
            with pytest.raises(StoreUnavailable):
                await bounded(attempt(closed_lim, k))
            await asyncio.sleep(0.25)  # past the retry interval: the store is tried again
        if outage == "killed":
            own_redis.start()  # empty: nothing persisted
        else:
            own_redis.signal(signal.SIGCONT)
        await asyncio.sleep(0.25)
        results = [await bounded(attempt(open_lim, k)) for _ in range(5)]
        assert all(isinstance(r, Reservation) and not r.degraded for r in results[:-1])
        assert all(isinstance(r, (Reservation, KeyRateLimited)) for r in results)
        with pytest.raises(KeyRateLimited):
            await bounded(closed_lim.reserve(k, None, model="m", input_tokens=1, output_tokens=1, cost_usd=0))
        assert await ping(client)
        async for name in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(name)

    assert open_lim.stats.fail_open_admissions == 6 and open_lim.stats.store_errors >= 6
    assert closed_lim.stats.fail_closed_rejections == 6
    assert errors and set(errors) <= {"reserve", "settle"}
    await client.aclose()
