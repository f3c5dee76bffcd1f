"""Proxy processes on a real store, and bursts of concurrent callers against them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.servers import free_port, provider_environ

REPO = Path(__file__).resolve().parents[2]
MASTER = "mk-burst-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {MASTER}"}

ASK = {"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@dataclass
class Burst:
    statuses: list[int] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)  # error codes of the refusals
    seconds: float = 0.0

    def count(self, status: int) -> int:
        return self.statuses.count(status)

    def __str__(self) -> str:
        return f"{len(self.statuses)} requests in {self.seconds:.1f}s: {dict(Counter(self.statuses))} {dict(self.codes)}"


async def _burst(urls: list[str], key: str, n: int, body: dict[str, object]) -> Burst:
    out = Burst()
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        gate = asyncio.Event()

        async def one(i: int) -> None:
            await gate.wait()
            resp = await client.post(urls[i % len(urls)] + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
            out.statuses.append(resp.status_code)
            if resp.status_code != 200:
                out.codes[str(resp.json().get("error", {}).get("code"))] += 1

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        gate.set()  # every caller starts at once
        await asyncio.gather(*tasks)
        out.seconds = time.monotonic() - started
    return out


def burst(urls: list[str], key: str, n: int, body: dict[str, object] | None = None) -> Burst:
    """`n` concurrent chat requests with `key`, spread over `urls` in turn."""
    return asyncio.run(_burst(urls, key, n, body or ASK))


@contextmanager
def proxy_process(redis_url: str | None, upstream_url: str, policy_dir: Path, *args: str, ready_s: float = 120.0) -> Iterator[str]:
    """`autoroute serve` in its own process on a free port (extra CLI `args`, e.g. --workers 2);
    yields its URL once /readyz is 200 (a loaded machine can take a while to import litellm).
    `redis_url` None: no REDIS_URL at all, the embedded store."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AUTOROUTE_REDIS_URL")},
        **provider_environ(upstream_url), "PYTHONPATH": str(REPO), **({"REDIS_URL": redis_url} if redis_url else {}),
        "AUTOROUTE_MASTER_KEY": MASTER, "AUTOROUTE_POLICY_DIR": str(policy_dir), "AUTOROUTE_LOG_LEVEL": "warning",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "proxy", "serve", "--port", str(port), *args]
    # The log goes to a file, never to a pipe nobody reads: a pipe's 64 KiB fill up with one
    # warning per refused request and the proxy then blocks writing its log (a hang, not a bug
    # of the proxy's). PROXY_LOGS=1 shows it on the terminal instead.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=None if os.environ.get("PROXY_LOGS") else log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(log.read().decode(errors="replace")[-2000:] or "exited")
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "proxy not ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def create_key(url: str, **fields: object) -> dict[str, object]:
    """A key made through the admin API: its record plus `key`, the secret."""
    resp = httpx.post(url + "/admin/keys", json={"name": "burst", **fields}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()
