"""The capacity model's measurements (deploy/SCALING.md): what one request costs Redis.

    PYTHONPATH=. .venv/bin/python scripts/capacity.py [-n 3000] [--hot 100000]

Starts its own redis-server on a free port (never 6379) and measures, with `INFO commandstats`
and `INFO cpu` of that server:

1. commands per request through a real proxy process (admission, settle, key lookup, decision
   record): a key with rpm, tpm and day/month budgets, a deployment with rpm/tpm/max_concurrent,
   an X-Task-Id and an agent, i.e. every section of the scripts;
2. Redis CPU per admission (reserve + settle) from a load run against the Lua scripts alone
   (64 concurrent callers from this process, many keys), and the per-shard ceiling it implies;
3. the hot key: the same with every call on one key whose 60 s window already holds `--hot`
   entries (one key at `--hot` requests per minute), so its cost per call at that size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis

from proxy.keys.store import EPOCH, KeyRecord
from proxy.limits.limiter import Limiter
from proxy.limits.store import connect_redis
from proxy.policy.limits import LimitsPolicy, TaskBudget
from proxy.policy.registry import Deployment
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import free_port, provider_environ, serving

DEP = Deployment(id="cap", provider="openai", api_base="http://127.0.0.1:9", rpm=10**9, tpm=10**12, max_concurrent=10**6)


def key(i: int, rpm: int = 10**9) -> KeyRecord:
    return KeyRecord(id=f"key_cap{i}", name="cap", rpm=rpm, tpm=10**12, budget_usd_day=10**6, budget_usd_month=10**6, created_at=EPOCH)


def stats(r: sync_redis.Redis) -> tuple[dict[str, int], float, dict[str, float]]:
    cmd = r.info("commandstats")
    cpu = r.info("cpu")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in cmd.items()}
    usec = {name.removeprefix("cmdstat_"): float(v["usec"]) for name, v in cmd.items()}
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), usec


def diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def through_the_proxy(url: str, r: sync_redis.Redis, n: int, workdir: Path) -> None:
    policies = policy_copy(workdir / "policies", deployments={"openai": {"rpm": 10**9, "tpm": 10**12, "max_concurrent": 10**6}})
    master = "mk-capacity-0123456789abcdef"
    port = free_port()
    with serving(FakeUpstream(record=False)) as up:
        env = {**provider_environ(up.url), "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "REDIS_URL": url,
               "AUTOROUTE_MASTER_KEY": master, "AUTOROUTE_POLICY_DIR": str(policies), "AUTOROUTE_LOG_LEVEL": "warning",
               "ANTHROPIC_API_KEY": "", "GEMINI_API_KEY": ""}  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], env={**os.environ, **env})
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            made = httpx.post(base + "/admin/keys", headers={"authorization": f"Bearer {master}"},
                              json={"name": "cap", "rpm": 10**9, "tpm": 10**12, "budget_usd_day": 10**6, "budget_usd_month": 10**6}).json()  # fmt: skip
            body = {"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
            headers = {"authorization": f"Bearer {made['key']}", "x-task-id": "cap-task", "x-agent-id": "cap-agent"}
            with httpx.Client(timeout=30) as client:
                for _ in range(20):
                    client.post(base + "/v1/chat/completions", json=body, headers=headers)
                time.sleep(1.0)
                calls0, cpu0, _ = stats(r)
                for i in range(n):
                    resp = client.post(base + "/v1/chat/completions", json=body, headers={**headers, "x-task-id": f"cap-{i % 20}"})
                    assert resp.status_code == 200, resp.text
                time.sleep(1.5)  # the decision writer's last batch
                calls1, cpu1, _ = stats(r)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    per = {k: round(v / n, 3) for k, v in sorted(diff(calls1, calls0).items())}
    print(f"1. through one proxy process, {n} sequential requests (key: rpm+tpm+budgets, deployment limits, task, agent):")
    print(f"   Redis commands per request: {per} = {sum(per.values()):.2f} in all")
    print(f"   Redis CPU per request (whole path): {(cpu1 - cpu0) / n * 1e6:.1f} us")


async def scripts_alone(url: str, r: sync_redis.Redis, n: int, hot: int) -> None:
    client = connect_redis(url, timeout_s=2.0)
    policy = LimitsPolicy(task=TaskBudget(max_cost_usd=10**6, max_tokens=10**12))
    lim = Limiter(client, policy, prefix=f"cap{uuid.uuid4().hex[:6]}")
    await lim.register_scripts()

    async def pairs(keys: list[KeyRecord], count: int) -> float:
        async def worker(w: int) -> None:
            for i in range(count // 64):
                k = keys[(w * 7919 + i) % len(keys)]
                res = await lim.reserve(k, DEP, model="m", input_tokens=500, output_tokens=300, cost_usd=0.001,
                                        task_id=f"t{i % 50}", agent="bench")  # fmt: skip
                await lim.settle(res, input_tokens=480, output_tokens=120, cost_usd=0.0008)

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(64)))
        return time.perf_counter() - started

    many = [key(i) for i in range(1000)]
    await pairs(many, 640)  # warm up
    for label, keys in (("1000 keys", many), (f"one hot key, window pre-filled to {hot} entries", [key(10**6, rpm=10**9)])):
        if len(keys) == 1:  # one key at `hot` rpm: its window holds `hot` entries of the last minute
            window = lim.layout.key_keys(keys[0].id, None, "0", "0")[0]
            now_ms = int(r.time()[0]) * 1000
            pipe = r.pipeline(transaction=False)
            for i in range(hot):
                pipe.zadd(window, {f"pre{i}|800": now_ms - 50_000 + i * 50_000 // hot})
            pipe.execute()
            r.set(window.replace(":w", ":ws"), 800 * hot)
        calls0, cpu0, usec0 = stats(r)
        seconds = await pairs(keys, n)
        calls1, cpu1, usec1 = stats(r)
        done = n // 64 * 64
        d_calls, d_usec = diff(calls1, calls0), diff(usec1, usec0)
        evals = d_calls.get("evalsha", 0)
        print(
            f"2. scripts alone, {label}: {done} reserve+settle pairs, 64 concurrent, in {seconds:.1f}s ({done / seconds:.0f}/s from one client process)"
        )
        print(f"   EVALSHA per pair {evals / done:.2f}; Redis time in scripts {d_usec.get('evalsha', 0) / done:.1f} us/pair "
              f"(commandstats); Redis process CPU {(cpu1 - cpu0) / done * 1e6:.1f} us/pair (INFO cpu)")  # fmt: skip
        per_pair = (cpu1 - cpu0) / done
        print(f"   -> one Redis core (one shard) at 100%: {1 / per_pair:,.0f} admissions/s")
        if len(keys) == 1:
            window = lim.layout.key_keys(keys[0].id, None, "0", "0")[0]
            print(f"   the hot key's window: {r.zcard(window)} entries, {r.memory_usage(window) / 2**20:.1f} MiB (MEMORY USAGE)")
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--hot", type=int, default=100_000)
    parser.add_argument("--skip-proxy", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="autoroute-capacity-"))
    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    r = sync_redis.Redis(port=port, decode_responses=True)
    try:
        for _ in range(100):
            try:
                r.ping()
                break
            except sync_redis.ConnectionError:
                time.sleep(0.05)
        print(f"redis-server {r.info('server')['redis_version']} on :{port}; load average {Path('/proc/loadavg').read_text().split()[0]}")
        if not args.skip_proxy:
            through_the_proxy(url, r, min(args.n, 1000), workdir)
        asyncio.run(scripts_alone(url, r, args.n, args.hot))
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
