"""Drive load: wrk when the system has it (a separate C process), else an asyncio client.

Both report requests, errors, and latency p50/p99 in microseconds for one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{auth}
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format('\\nRESULT {{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    seconds: float,
    core: int | None,
    bearer: str | None = None,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    extra = dict(headers or {})
    if bearer:
        extra["Authorization"] = f"Bearer {bearer}"
    if have_wrk():
        return _run_wrk(url, body, concurrency, seconds, core, extra)
    return asyncio.run(_run_asyncio(url, body, concurrency, seconds, extra))


def _run_wrk(url: str, body: bytes, concurrency: int, seconds: float, core: int | None, extra: dict[str, str]) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        auth = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in extra.items())
        script.write_text(WRK_SCRIPT.format(body=body_path, auth=auth))
        cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(script), url]
        pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, preexec_fn=pin).stdout
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk produced no result:\n{out}")
    data = json.loads(line[7:])
    return LoadResult(
        data["requests"], data["duration_us"] / 1e6, data["errors"] + data["status_errors"], data["p50_us"] / 1000, data["p99_us"] / 1000
    )


async def _run_asyncio(url: str, body: bytes, concurrency: int, seconds: float, extra: dict[str, str]) -> LoadResult:
    headers = {"content-type": "application/json", **extra}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency), timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    resp = await client.post(url, content=body, headers=headers)
                    await resp.aread()
                    if resp.status_code >= 300:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0  # noqa: E731
    return LoadResult(len(latencies), elapsed, errors, pick(0.50), pick(0.99))
