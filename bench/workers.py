"""`autoroute serve --workers N` against a real Redis: requests/s and CPU per request, 1 worker vs N.

    PYTHONPATH=. .venv/bin/python -m bench.workers [--workers 1,2] [--seconds 5] [--concurrency 64] [--repeats 2]

Starts its own redis-server on a free port (never 6379), the fake upstream, and one proxy per
worker count, none pinned (N workers need N cores); the load generator (wrk) shares the cores,
as it would on one host. CPU per request is utime+stime of the whole process tree (the uvicorn
supervisor and its workers) over the requests served. Runs are interleaved; the median is kept.
Writes bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench import load, procs
from bench.__main__ import create_key, proxy_env
from bench.scenarios import scenarios
from tests.support.servers import free_port

RESULTS = Path(__file__).resolve().parent / "results"


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` and every live descendant."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / procs.CLOCK_TICKS
        todo += children.get(p, [])
    return total


def wait_workers(pid: int, n: int, url: str) -> None:
    """Every worker answers: N distinct worker pids seen on /healthz is not observable, so wait
    until the supervisor has N children and the app answers."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        kids = [s for s in Path("/proc").glob("[0-9]*/stat") if _ppid(s) == pid]
        if (n == 1 or len(kids) >= n) and httpx.get(url + "/readyz", timeout=2).status_code == 200:
            time.sleep(2.0 if n > 1 else 0.0)  # the other workers finish their start-up
            return
        time.sleep(0.2)
    raise RuntimeError("workers did not start")


def _ppid(stat: Path) -> int:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    scenario = next(s for s in scenarios() if s.name == "auto-openai" and s.gateway == "autoroute")
    workdir = Path(tempfile.mkdtemp(prefix="autoroute-workers-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    upstream_port = free_port()
    upstream = procs.start("fake-upstream", ["-m", "tests.support.fake_upstream", "--port", str(upstream_port), "--no-record"],
                           upstream_port, core=None, ready_path="/_control/reset", log=workdir / "upstream.log")  # fmt: skip
    proxies: dict[int, procs.Proc] = {}
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    try:
        for db, n in enumerate(counts):
            env = {**proxy_env("openai", upstream.url), "REDIS_URL": f"redis://127.0.0.1:{redis_port}/{db}"}
            port = free_port()
            proxies[n] = procs.start(f"autoroute-w{n}", ["-m", "proxy", "serve", "--port", str(port), "--workers", str(n)], port,
                                     core=None, env=env, log=workdir / f"w{n}.log")  # fmt: skip
            wait_workers(proxies[n].pid, n, proxies[n].url)
        bearers = {n: create_key(p)[0] for n, p in proxies.items()}
        for _ in range(args.repeats):
            for n, proxy in proxies.items():
                url = proxy.url + "/v1/chat/completions"
                load.run(url, scenario.body, concurrency=args.concurrency, seconds=1.0, core=None, bearer=bearers[n])
                cpu0 = tree_cpu_seconds(proxy.pid)
                result = load.run(url, scenario.body, concurrency=args.concurrency, seconds=args.seconds, core=None, bearer=bearers[n])
                cpu1 = tree_cpu_seconds(proxy.pid)
                rows[n].append({"rps": result.rps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "errors": result.errors,
                                "cpu_ms_per_request": (cpu1 - cpu0) * 1000 / max(result.requests, 1)})  # fmt: skip
    finally:
        for proxy in proxies.values():
            proxy.stop()
        upstream.stop()
        redis.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    load1 = os.getloadavg()[0]
    table = []
    print(
        f"auto-openai, concurrency {args.concurrency}, {args.seconds:.0f}s x {args.repeats} (median), {os.cpu_count()} cores, load avg {load1:.1f}"
    )
    print("| workers | req/s | p50 ms | p99 ms | CPU ms/req | errors |\n|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        med = {k: statistics.median(r[k] for r in rows[n]) for k in rows[n][0]}
        table.append({"workers": n, **{k: round(v, 3) for k, v in med.items()}})
        print(
            f"| {n} | {med['rps']:.0f} | {med['p50_ms']:.1f} | {med['p99_ms']:.1f} | {med['cpu_ms_per_request']:.3f} | {med['errors']:.0f} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "workers.json").write_text(json.dumps({"load_avg_1m": load1, "concurrency": args.concurrency, "rows": table}, indent=2))


if __name__ == "__main__":
    main()
