"""Admission cost: microseconds per reserve + settle, on a real Redis, on the embedded store (the
admission contract in-process) and on fakeredis + Lua (the embedded store before issue 15).

    PYTHONPATH=. .venv/bin/python scripts/bench_limits.py [--url redis://127.0.0.1:6379/0] [-n 2000]

Prints, for each store: sequential latency (p50/p99 of reserve, of settle, and of the pair) for a
key with every limit set (RPM, TPM, day/month/total budgets, a task budget, a deployment with
RPM/TPM/max_concurrent, an agent), then the throughput of 64 concurrent callers. Uses its own key
prefix and deletes only its own keys.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from proxy.keys.store import EPOCH, KeyRecord
from proxy.limits.limiter import Limiter
from proxy.limits.store import connect_redis, embedded_redis, embedded_store
from proxy.policy.limits import LimitsPolicy, TaskBudget
from proxy.policy.registry import Deployment

KEY = KeyRecord(
    id="key_bench", name="bench", rpm=10**9, tpm=10**12, budget_usd_day=10**6, budget_usd_month=10**6,
    budget_usd_total=10**6, created_at=EPOCH,
)  # fmt: skip
DEP = Deployment(id="bench", provider="openai", api_base="http://127.0.0.1:9", rpm=10**9, tpm=10**12, max_concurrent=10**6)


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(int(len(values) * q), len(values) - 1)]


async def _pair(lim: Limiter, i: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    res = await lim.reserve(KEY, DEP, model="bench/m", input_tokens=500, output_tokens=300, cost_usd=0.001,
                            task_id=f"task-{i % 50}", agent="bench-agent")  # fmt: skip
    t1 = time.perf_counter()
    await lim.settle(res, input_tokens=480, output_tokens=120, cost_usd=0.0008)
    return (t1 - t0) * 1e6, (time.perf_counter() - t1) * 1e6


async def bench(name: str, redis: Any, n: int, prefix: str) -> None:
    policy = LimitsPolicy(task=TaskBudget(max_cost_usd=10**6, max_tokens=10**12))
    lim = Limiter(redis, policy, prefix=prefix)
    await lim.register_scripts()
    for i in range(200):  # warm up connections and the script cache
        await _pair(lim, i)
    reserve, settle = [], []
    for i in range(n):
        r, s = await _pair(lim, i)
        reserve.append(r)
        settle.append(s)
    pairs = [r + s for r, s in zip(reserve, settle, strict=True)]
    print(f"{name}: sequential, {n} requests, every limit set")
    for label, values in (("reserve", reserve), ("settle", settle), ("reserve+settle", pairs)):
        print(f"  {label:15} p50 {statistics.median(values):7.0f} us   p99 {_pct(values, 0.99):7.0f} us"
              f"   mean {statistics.fmean(values):7.0f} us")  # fmt: skip
    workers, per = 64, max(n // 64, 10)
    t0 = time.perf_counter()

    async def worker(w: int) -> None:
        for i in range(per):
            await _pair(lim, w * per + i)

    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.perf_counter() - t0
    total = workers * per
    print(f"  {workers} concurrent callers: {total / elapsed:7.0f} reserve+settle pairs/s "
          f"({elapsed / total * 1e6:.0f} us of wall time per pair)")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    prefix = f"arbench-{uuid.uuid4().hex[:8]}"
    real = connect_redis(args.url, timeout_s=1.0)
    try:
        await bench(f"Redis at {args.url}", real, args.n, prefix)
    finally:
        async for name in real.scan_iter(match=f"{prefix}:*", count=1000):
            await real.delete(name)
        await real.aclose()
    await bench("embedded store (in-process)", embedded_store(), args.n, prefix)
    await bench("fakeredis + Lua (lupa)", embedded_redis(), max(args.n // 4, 200), prefix)


if __name__ == "__main__":
    asyncio.run(main())
