"""make chaos: issue 11's acceptance scenarios, on a real Redis with two proxy replicas.

    .venv/bin/python scripts/chaos.py [--burst 800] [--rpm 50] [--streams 20] [--idle 2000]

Starts its own redis-server on a free port (never :6379), the fake upstream, and two
`autoroute serve` replicas per scenario, then prints:

  burst      in each fail mode: N concurrent requests over both replicas against a key with
             `rpm` -> admitted (exactly rpm expected), 429s, false 503s, other statuses, requests
             settled (the key's day usage) vs served, reservations left 5 s later
  sigterm    S long streams on one replica, SIGTERM with a 1 s grace -> error events the
             clients got, decision lines logged, reservations left
  idle       I idle connections to one replica -> how many the server closed within the
             header timeout (AUTOROUTE_HEADER_TIMEOUT_S, 3 s here)

Exit status 1 if a figure misses its target. Everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.redis_server import RedisServer, free_port  # noqa: E402

MASTER = "mk-chaos-0123456789abcdef"
ASK = {"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
HEADER_TIMEOUT_S = 3.0


def env_base() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOROUTE_", "REDIS_", "OLLAMA")) and not k.endswith("_API_KEY")}
    return env | {"PYTHONPATH": str(REPO)}


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


@contextmanager
def process(args: list[str], env: dict[str, str], ready_url: str, log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    err = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_http(ready_url, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if log:
            err.close()  # type: ignore[union-attr]


def policy_dir(root: Path, fail_mode: str) -> Path:
    dest = root / f"policies-{fail_mode}"
    dest.mkdir(parents=True, exist_ok=True)
    for path in (REPO / "policies").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if path.name == "limits.yaml":
            data["on_store_error"] = fail_mode
        if path.name == "dispatch.yaml":
            data.update(retry_base_delay=0.01, retry_max_delay=0.05)
        (dest / path.name).write_text(yaml.safe_dump(data))
    return dest


@contextmanager
def replica(upstream: str, redis_url: str, policies: Path, log: Path, grace_s: float = 5) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = env_base() | {
        "OPENAI_BASE_URL": f"{upstream}/v1",
        "OPENAI_API_KEY": "sk-chaos-openai-0123456789abcdef",
        "REDIS_URL": redis_url,
        "AUTOROUTE_MASTER_KEY": MASTER,
        "AUTOROUTE_PORT": str(port),
        "AUTOROUTE_POLICY_DIR": str(policies),
        "AUTOROUTE_ENV_FILE": str(log.parent / "no.env"),
        "AUTOROUTE_SHUTDOWN_GRACE_S": str(grace_s),
        "AUTOROUTE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "AUTOROUTE_LOG_LEVEL": "info",
    }
    url = f"http://127.0.0.1:{port}"
    with process(["-m", "proxy", "serve"], env, url + "/readyz", log) as proc:
        yield url, proc


def reservations(r: redis.Redis) -> int:
    return sum(r.zcard(k) for pattern in ("*:pz", "*:inflight") for k in r.scan_iter(match=pattern))


def settled(r: redis.Redis, key_id: str) -> int:
    return sum(int(r.hget(k, "req") or 0) for k in r.scan_iter(match=f"ar:{{{key_id}}}:u:d:*"))


def create_key(url: str, **fields: Any) -> dict[str, Any]:
    resp = httpx.post(url + "/admin/keys", json={"name": "chaos", **fields}, headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
    resp.raise_for_status()
    return resp.json()


# ── burst ────────────────────────────────────────────────────────────────────────────────
async def fire(urls: list[str], key: str, n: int) -> Counter[int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        gate = asyncio.Event()

        async def one(i: int) -> int:
            await gate.wait()
            try:
                r = await client.post(urls[i % len(urls)] + "/v1/chat/completions", json=ASK, headers={"authorization": f"Bearer {key}"})
                return r.status_code
            except httpx.HTTPError:
                return 0

        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        await asyncio.sleep(0.2)
        gate.set()
        return Counter(await asyncio.gather(*tasks))


def burst(root: Path, upstream: str, store: RedisServer, mode: str, db: int, n: int, rpm: int) -> dict[str, Any]:
    url = store.url.rsplit("/", 1)[0] + f"/{db}"
    r = redis.Redis.from_url(url)
    r.flushdb()  # our own server, our own db
    policies = policy_dir(root, mode)
    logs = Path(os.environ.get("CHAOS_LOGS") or root)
    with (
        replica(upstream, url, policies, logs / f"burst-{mode}-a.log") as (a, _),
        replica(upstream, url, policies, logs / f"burst-{mode}-b.log") as (b, _),
    ):
        key = create_key(a, rpm=rpm, budget_usd_day=100)
        statuses = asyncio.run(fire([a, b], key["key"], n))
        time.sleep(5)
        left = reservations(r)
        done = settled(r, key["id"])
    r.close()
    return {
        "scenario": f"burst {n} vs rpm {rpm} ({mode})",
        "admitted": statuses[200],
        "rate_limited_429": statuses[429],
        "false_503": statuses[503],
        "other": {s: c for s, c in statuses.items() if s not in (200, 429, 503)},
        "settled": done,
        "reservations_left_after_5s": left,
        "ok": statuses[200] == rpm and statuses[503] == 0 and done == statuses[200] and left == 0,
    }


# ── SIGTERM with long streams ────────────────────────────────────────────────────────────
def sigterm(root: Path, upstream: str, store: RedisServer, db: int, streams: int) -> dict[str, Any]:
    url = store.url.rsplit("/", 1)[0] + f"/{db}"
    r = redis.Redis.from_url(url)
    r.flushdb()
    httpx.post(upstream + "/_control/script", json={"model": "gpt-4.1", "faults": [{"kind": "slow", "seconds": 1.0}] * streams})
    log = root / "sigterm.log"
    events: list[str] = []
    with replica(upstream, url, policy_dir(root, "fail_closed"), log, grace_s=1) as (proxy_url, proc):
        key = create_key(proxy_url, budget_usd_day=100)["key"]

        async def one() -> str:
            body = {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            last = ""
            try:
                async with httpx.AsyncClient(timeout=60) as client:
                    async with client.stream(
                        "POST", proxy_url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                    ) as resp:
                        async for line in resp.aiter_lines():
                            if line:
                                last = line
            except httpx.HTTPError as exc:
                return f"transport error {type(exc).__name__}"
            return last

        async def run() -> list[str]:
            tasks = [asyncio.ensure_future(one()) for _ in range(streams)]
            deadline = time.monotonic() + 30
            while reservations(r) < streams and time.monotonic() < deadline:  # every stream admitted and under way
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)
            in_flight = reservations(r)
            proc.send_signal(signal.SIGTERM)
            out = await asyncio.gather(*tasks)
            return [f"in_flight={in_flight}", *out]

        events = asyncio.run(run())
        proc.wait(30)
    in_flight = events.pop(0)
    time.sleep(0.5)
    text = log.read_text()
    decisions = [json.loads(line)["decision"] for line in text.splitlines() if '"autoroute.decision"' in line]
    cut = sum(1 for e in events if "server_shutting_down" in e)
    left = reservations(r)
    r.close()
    return {
        "scenario": f"SIGTERM, {streams} long streams, 1 s grace",
        "reservations_before": in_flight,
        "error_events": cut,
        "decision_lines": len(decisions),
        "decision_statuses": dict(Counter(d["status"] for d in decisions)),
        "reservations_left": left,
        "ok": cut == streams and len(decisions) == streams and left == 0,
    }


# ── idle connections ─────────────────────────────────────────────────────────────────────
def idle(root: Path, upstream: str, store: RedisServer, db: int, n: int) -> dict[str, Any]:
    url = store.url.rsplit("/", 1)[0] + f"/{db}"
    with replica(upstream, url, policy_dir(root, "fail_closed"), root / "idle.log") as (proxy_url, _):
        port = int(proxy_url.rsplit(":", 1)[1])
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            socks.append(s)
        opened = time.monotonic()
        closed_at: dict[int, float] = {}
        while len(closed_at) < n and time.monotonic() - opened < HEADER_TIMEOUT_S + 10:
            for i, s in enumerate(socks):
                if i in closed_at:
                    continue
                try:
                    if s.recv(1) == b"":
                        closed_at[i] = time.monotonic() - opened
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[i] = time.monotonic() - opened
            time.sleep(0.1)
        for s in socks:
            s.close()
        healthy = httpx.get(proxy_url + "/healthz").status_code
    within = sum(1 for t in closed_at.values() if t <= HEADER_TIMEOUT_S + 1.0)
    return {
        "scenario": f"{n} idle connections, header timeout {HEADER_TIMEOUT_S:g} s",
        "closed_within_timeout_plus_1s": within,
        "slowest_close_s": round(max(closed_at.values()), 2) if closed_at else None,
        "still_open": n - len(closed_at),
        "healthz_after": healthy,
        "ok": within == n and healthy == 200,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=800)
    parser.add_argument("--rpm", type=int, default=50)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--only", choices=["burst", "sigterm", "idle"], action="append")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.idle + 1024, 4 * args.burst + 1024)), hard))
    only = set(args.only or ["burst", "sigterm", "idle"])
    results = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="autoroute-chaos-") as tmp:
        root = Path(tmp)
        store = stack.enter_context(RedisServer())
        up_port = free_port()
        upstream = f"http://127.0.0.1:{up_port}"
        stack.enter_context(
            process(
                ["-m", "tests.support.fake_upstream", "--port", str(up_port), "--no-record"], env_base(), upstream + "/_control/received"
            )
        )
        print(f"redis-server on :{store.port} (private), fake upstream on :{up_port}", flush=True)
        if "burst" in only:
            for db, mode in ((1, "fail_closed"), (2, "fail_open")):
                results.append(burst(root, upstream, store, mode, db, args.burst, args.rpm))
                print(json.dumps(results[-1]), flush=True)
        if "sigterm" in only:
            results.append(sigterm(root, upstream, store, 3, args.streams))
            print(json.dumps(results[-1]), flush=True)
        if "idle" in only:
            results.append(idle(root, upstream, store, 4, args.idle))
            print(json.dumps(results[-1]), flush=True)
    print("\nchaos summary")
    for res in results:
        figures = ", ".join(f"{k} {v}" for k, v in res.items() if k not in ("scenario", "ok"))
        print(f"  {'PASS' if res['ok'] else 'FAIL'}  {res['scenario']}: {figures}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
