"""autoroute's benchmark: `make bench` (full, ~10 min) or `make bench-smoke` (CI, seconds).

Starts the fake upstream and each proxy configuration as separate processes, pinned to
separate cores where the machine has two, drives load with wrk (else an asyncio client)
at concurrency 1, 16 and 64, and prints one table: requests/s, client latency p50/p99,
added latency vs the same request sent straight to the upstream, proxy CPU per request
(/proc utime+stime over requests served), RSS after the run, and start-to-ready time.
Writes the table as JSON to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import load, procs
from bench.scenarios import Scenario, scenarios

RESULTS = Path(__file__).resolve().parent / "results"
MASTER = "sk-bench-master-0123456789"
UPSTREAM_PORT, PROXY_PORT = 9401, 9402


def proxy_env(config: str, upstream: str) -> dict[str, str]:
    env = {
        "AUTOROUTE_MASTER_KEY": MASTER, "AUTOROUTE_LOG_LEVEL": "warning",
        # Only OpenAI-compatible providers have keys, so `auto` measures the direct path.
        "OPENAI_BASE_URL": f"{upstream}/v1", "OPENAI_API_KEY": "sk-bench-openai",
        "TOGETHER_BASE_URL": f"{upstream}/v1", "TOGETHER_API_KEY": "tg-bench", "OLLAMA_HOST": upstream,
        "ANTHROPIC_BASE_URL": upstream, "GEMINI_API_BASE": upstream,
    }
    if config in ("redis", "translate"):  # production set-up: the limits store is a real Redis
        env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    if config == "translate":
        env["ANTHROPIC_API_KEY"] = "sk-ant-bench"
    return env


def start_proxy(config: str, upstream: str, core: int | None, logdir: Path) -> procs.Proc:
    if config == "baseline":
        return procs.start("baseline", ["-m", "bench.baseline", "--port", str(PROXY_PORT), "--upstream", upstream],
                           PROXY_PORT, core=core, log=logdir / "baseline.log")
    if config in ("redis", "translate"):
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=15).flushdb()  # db 15 belongs to the benchmark
    return procs.start(f"autoroute-{config}", ["-m", "proxy", "serve", "--port", str(PROXY_PORT)], PROXY_PORT,
                       core=core, env=proxy_env(config, upstream), log=logdir / f"autoroute-{config}.log")


def create_key(proxy: procs.Proc) -> str | None:
    """A virtual key with generous limits, so the full admission path runs on every request."""
    resp = httpx.post(proxy.url + "/admin/keys", headers={"authorization": f"Bearer {MASTER}"}, timeout=10, json={
        "name": "bench", "rpm": 10_000_000, "tpm": 10_000_000_000, "budget_usd_day": 1e9, "budget_usd_month": 1e9})
    if resp.status_code >= 300:
        print(f"  (could not create a key: {resp.status_code}; running without one)", file=sys.stderr)
        return None
    return resp.json()["key"]


def measure(proxy: procs.Proc, scenario: Scenario, conc: int, seconds: float, core: int | None, bearer: str | None) -> dict:
    url = proxy.url + "/v1/chat/completions"
    load.run(url, scenario.body, concurrency=conc, seconds=min(1.0, seconds), core=core, bearer=bearer)  # warm up
    cpu0 = proxy.cpu_seconds()
    result = load.run(url, scenario.body, concurrency=conc, seconds=seconds, core=core, bearer=bearer)
    cpu1 = proxy.cpu_seconds()
    return {
        "scenario": scenario.name, "concurrency": conc, "requests": result.requests, "errors": result.errors,
        "rps": round(result.rps, 1), "p50_ms": round(result.p50_ms, 3), "p99_ms": round(result.p99_ms, 3),
        "cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / max(1, result.requests), 3),
        "rss_mb": round(proxy.rss_mb(), 1), "ready_s": round(proxy.ready_seconds, 3),
    }


def soak(proxy: procs.Proc, scenario: Scenario, total: int, core: int | None, bearer: str | None) -> dict:
    done, samples = 0, []
    while done < total:
        result = load.run(proxy.url + "/v1/chat/completions", scenario.body, concurrency=16, seconds=5, core=core, bearer=bearer)
        done += result.requests
        samples.append((done, round(proxy.rss_mb(), 1)))
    half = next(rss for n, rss in samples if n >= total / 2)
    return {"scenario": scenario.name, "requests": done, "rss_mb_at_half": half, "rss_mb_at_end": samples[-1][1],
            "growth_last_half_mb": round(samples[-1][1] - half, 1), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--soak", type=int, default=0, help="also run N requests of auto-redis and track RSS (e.g. 100000)")
    parser.add_argument("--smoke", action="store_true", help="CI: every scenario once, 1 s, concurrency 8; fails on errors")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    concs = [8] if args.smoke else [int(c) for c in args.concurrency.split(",")]
    seconds = 1.0 if args.smoke else args.seconds
    chosen = [s for s in scenarios() if not args.only or s.name in args.only.split(",")]

    available = procs.cores()
    proxy_core, other_core = (available[0], available[1]) if len(available) >= 2 else (None, None)
    logdir = Path(tempfile.mkdtemp(prefix="autoroute-bench-"))
    upstream = procs.start("fake-upstream", ["-m", "tests.support.fake_upstream", "--port", str(UPSTREAM_PORT), "--no-record"],
                           UPSTREAM_PORT, core=other_core, ready_path="/_control/reset", log=logdir / "upstream.log")
    rows, direct_cache, soak_result = [], {}, None
    try:
        for config in dict.fromkeys(s.config for s in chosen):
            proxy = start_proxy(config, upstream.url, proxy_core, logdir)
            try:
                bearer = create_key(proxy) if config != "baseline" else None
                for scenario in (s for s in chosen if s.config == config):
                    for conc in concs:
                        row = measure(proxy, scenario, conc, seconds, other_core, bearer)
                        key = (scenario.direct_path, scenario.direct_body, conc)
                        if key not in direct_cache:
                            direct = load.run(upstream.url + scenario.direct_path, scenario.direct_body,
                                              concurrency=conc, seconds=seconds, core=other_core)
                            direct_cache[key] = direct.p50_ms
                        row["added_p50_ms"] = round(row["p50_ms"] - direct_cache[key], 3)
                        rows.append(row)
                        print(_format_row(row), flush=True)
                if args.soak and config == "redis":
                    target = next(s for s in chosen if s.name == "auto-redis")
                    soak_result = soak(proxy, target, args.soak, other_core, bearer)
                    print(f"soak: {soak_result}", flush=True)
            finally:
                proxy.stop()
    finally:
        upstream.stop()

    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": _machine(), "load_generator": "wrk" if load.have_wrk() else "asyncio",
        "pinned": proxy_core is not None, "seconds_per_run": seconds, "rows": rows, "soak": soak_result,
    }
    print("\n" + table(rows))
    print("\n" + ratios(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten: {args.out}  (process logs: {logdir})")
    errors = sum(r["errors"] for r in rows)
    if args.smoke and (errors or any(r["requests"] == 0 for r in rows)):
        print(f"smoke FAILED: {errors} errors", file=sys.stderr)
        return 1
    return 0


def _format_row(r: dict) -> str:
    return (f"| {r['scenario']:<18} | {r['concurrency']:>4} | {r['rps']:>8.1f} | {r['p50_ms']:>7.2f} | {r['p99_ms']:>7.2f} | "
            f"{r.get('added_p50_ms', 0):>8.2f} | {r['cpu_ms_per_request']:>7.3f} | {r['rss_mb']:>6.1f} | {r['ready_s']:>6.2f} | {r['errors']:>5} |")


def table(rows: list[dict]) -> str:
    head = ("| scenario           | conc |    req/s | p50 ms  | p99 ms  | added ms | CPU ms  | RSS MB | ready s | errors |\n"
            "|--------------------|-----:|---------:|--------:|--------:|---------:|--------:|-------:|--------:|-------:|")
    return "\n".join([head, *(_format_row(r) for r in rows)])


def ratios(rows: list[dict]) -> str:
    def cpu(name: str) -> float | None:
        values = [r["cpu_ms_per_request"] for r in rows if r["scenario"] == name and r["concurrency"] >= 16]
        return min(values) if values else None

    base = cpu("baseline-forwarder")
    lines = ["CPU per request at saturation (lowest over concurrency >= 16):"]
    for name in ("named-openai", "auto-embedded", "auto-redis", "anthropic", "stream-usage", "auto-50k-prompt"):
        value = cpu(name)
        if value is not None:
            ratio = f" = {value / base:.2f}x the bare forwarder" if base else ""
            lines.append(f"  {name:<16} {value:.3f} ms{ratio}")
    return "\n".join(lines)


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {len(procs.cores())} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


if __name__ == "__main__":
    raise SystemExit(main())
