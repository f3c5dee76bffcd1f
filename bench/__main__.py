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
import statistics
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
REDIS_DBS = {"redis": 11, "translate": 12, "redis-long": 10}  # a process each: RSS per workload


def proxy_env(config: str, upstream: str) -> dict[str, str]:
    env = {
        "AUTOROUTE_MASTER_KEY": MASTER,
        "AUTOROUTE_LOG_LEVEL": "warning",
        # Only OpenAI-compatible providers have keys, so `auto` measures the direct path.
        "OPENAI_BASE_URL": f"{upstream}/v1",
        "OPENAI_API_KEY": "sk-bench-openai",
        "TOGETHER_BASE_URL": f"{upstream}/v1",
        "TOGETHER_API_KEY": "tg-bench",
        "OLLAMA_HOST": upstream,
        "ANTHROPIC_BASE_URL": upstream,
        "GEMINI_API_BASE": upstream,
    }
    if config in REDIS_DBS:  # production set-up: the limits store is a real Redis
        env["REDIS_URL"] = f"redis://127.0.0.1:6379/{REDIS_DBS[config]}"
    if config == "translate":
        env["ANTHROPIC_API_KEY"] = "sk-ant-bench"
    return env


def start_proxy(config: str, upstream: str, core: int | None, logdir: Path, port: int) -> procs.Proc:
    if config == "baseline":
        return procs.start(
            "baseline", ["-m", "bench.baseline", "--port", str(port), "--upstream", upstream], port, core=core, log=logdir / "baseline.log"
        )
    if config in REDIS_DBS:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DBS[config]).flushdb()  # dbs 10-12 belong to the benchmark
    return procs.start(
        f"autoroute-{config}",
        ["-m", "proxy", "serve", "--port", str(port)],
        port,
        core=core,
        env=proxy_env(config, upstream),
        log=logdir / f"autoroute-{config}.log",
    )


def create_key(proxy: procs.Proc) -> str | None:
    """A virtual key with generous limits, so the full admission path runs on every request."""
    resp = httpx.post(
        proxy.url + "/admin/keys",
        headers={"authorization": f"Bearer {MASTER}"},
        timeout=10,
        json={"name": "bench", "rpm": 10_000_000, "tpm": 10_000_000_000, "budget_usd_day": 1e9, "budget_usd_month": 1e9},
    )
    if resp.status_code >= 300:
        print(f"  (could not create a key: {resp.status_code}; running without one)", file=sys.stderr)
        return None
    return resp.json()["key"]


def measure(
    proxy: procs.Proc, scenario: Scenario, conc: int, seconds: float, core: int | None, bearer: str | None, warm_up: bool = True
) -> dict:
    url = proxy.url + scenario.path
    if warm_up:
        load.run(url, scenario.body, concurrency=conc, seconds=min(1.0, seconds), core=core, bearer=bearer)
    cpu0 = proxy.cpu_seconds()
    result = load.run(url, scenario.body, concurrency=conc, seconds=seconds, core=core, bearer=bearer)
    cpu1 = proxy.cpu_seconds()
    return {
        "scenario": scenario.name,
        "concurrency": conc,
        "requests": result.requests,
        "errors": result.errors,
        "rps": round(result.rps, 1),
        "p50_ms": round(result.p50_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / max(1, result.requests), 3),
        "rss_mb": round(proxy.rss_mb(), 1),
        "ready_s": round(proxy.ready_seconds, 3),
    }


def soak(proxy: procs.Proc, scenario: Scenario, total: int, core: int | None, bearer: str | None) -> dict:
    done, samples = 0, []
    while done < total:
        result = load.run(proxy.url + "/v1/chat/completions", scenario.body, concurrency=16, seconds=5, core=core, bearer=bearer)
        done += result.requests
        samples.append((done, round(proxy.rss_mb(), 1)))
    half = next(rss for n, rss in samples if n >= total / 2)
    return {
        "scenario": scenario.name,
        "requests": done,
        "rss_mb_at_half": half,
        "rss_mb_at_end": samples[-1][1],
        "growth_last_half_mb": round(samples[-1][1] - half, 1),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per figure; the median is reported")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--soak", type=int, default=0, help="also run N requests of auto-redis and track RSS (e.g. 100000)")
    parser.add_argument(
        "--smoke", action="store_true", help="CI: every scenario once for 1 s at concurrency 8, no warm-up, no direct runs; fails on errors"
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/latest.json (smoke: smoke.json)")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / ("smoke.json" if args.smoke else "latest.json")
    concs = [8] if args.smoke else [int(c) for c in args.concurrency.split(",")]
    seconds, repeats = (1.0, 1) if args.smoke else (args.seconds, args.repeats)
    chosen = [s for s in scenarios() if not args.only or s.name in args.only.split(",")]

    available = procs.cores()
    proxy_core, other_core = (available[0], available[1]) if len(available) >= 2 else (None, None)
    logdir = Path(tempfile.mkdtemp(prefix="autoroute-bench-"))
    upstream = procs.start(
        "fake-upstream",
        ["-m", "tests.support.fake_upstream", "--port", str(UPSTREAM_PORT), "--no-record"],
        UPSTREAM_PORT,
        core=other_core,
        ready_path="/_control/reset",
        log=logdir / "upstream.log",
    )
    proxies: dict[str, procs.Proc] = {}
    bearers: dict[str, str | None] = {}
    runs: dict[tuple[str, int], list[dict]] = {}
    direct: dict[tuple[bytes, str, int], list[float]] = {}
    soak_result = None
    try:
        # Every configuration runs at once, pinned to the same core (an idle one costs nothing),
        # and the runs are interleaved: forwarder and proxy see the same machine conditions.
        for config in dict.fromkeys(s.config for s in chosen):
            port = PROXY_PORT + len(proxies)
            proxies[config] = start_proxy(config, upstream.url, proxy_core, logdir, port)
            bearers[config] = create_key(proxies[config]) if config != "baseline" else None
        for conc in concs:
            for _ in range(repeats):
                for scenario in chosen:
                    proxy = proxies[scenario.config]
                    row = measure(proxy, scenario, conc, seconds, other_core, bearers[scenario.config], warm_up=not args.smoke)
                    runs.setdefault((scenario.name, conc), []).append(row)
                    key = (scenario.direct_body, scenario.direct_path, conc)
                    if args.smoke:
                        direct.setdefault(key, [0.0])
                    elif len(direct.get(key, [])) < repeats:
                        result = load.run(
                            upstream.url + scenario.direct_path, scenario.direct_body, concurrency=conc, seconds=seconds, core=other_core
                        )
                        direct.setdefault(key, []).append(result.p50_ms)
            for scenario in chosen:
                row = _median_row(runs[(scenario.name, conc)])
                row["added_p50_ms"] = round(
                    row["p50_ms"] - statistics.median(direct[(scenario.direct_body, scenario.direct_path, conc)]), 3
                )
                runs[(scenario.name, conc)] = [row]
                print(_format_row(row), flush=True)
        for config, proxy in proxies.items():  # memory after everything it served
            for (name, _), rows in runs.items():
                if next(s for s in chosen if s.name == name).config == config:
                    rows[0]["rss_mb"] = round(proxy.rss_mb(), 1)
        if args.soak:  # a fresh process, so its memory is the soak's alone
            fresh = start_proxy("redis", upstream.url, proxy_core, logdir, PROXY_PORT + 50)
            proxies["soak"] = fresh
            target = next(s for s in scenarios() if s.name == "auto-redis")
            soak_result = soak(fresh, target, args.soak, other_core, create_key(fresh))
            print(f"soak: {soak_result}", flush=True)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        upstream.stop()

    rows = [runs[(s.name, c)][0] for c in concs for s in chosen]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
        "load_generator": "wrk" if load.have_wrk() else "asyncio",
        "pinned": proxy_core is not None,
        "seconds_per_run": seconds,
        "repeats": repeats,
        "rows": rows,
        "soak": soak_result,
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


def _median_row(rows: list[dict]) -> dict:
    """The run with the median CPU per request; its other figures travel with it."""
    ordered = sorted(rows, key=lambda r: r["cpu_ms_per_request"])
    row = dict(ordered[len(ordered) // 2])
    row["cpu_ms_runs"] = [r["cpu_ms_per_request"] for r in rows]
    row["errors"] = sum(r["errors"] for r in rows)
    return row


def _format_row(r: dict) -> str:
    return (
        f"| {r['scenario']:<18} | {r['concurrency']:>4} | {r['rps']:>8.1f} | {r['p50_ms']:>7.2f} | {r['p99_ms']:>7.2f} | "
        f"{r.get('added_p50_ms', 0):>8.2f} | {r['cpu_ms_per_request']:>7.3f} | {r['rss_mb']:>6.1f} | {r['ready_s']:>6.2f} | {r['errors']:>5} |"
    )


def table(rows: list[dict]) -> str:
    head = (
        "| scenario           | conc |    req/s | p50 ms  | p99 ms  | added ms | CPU ms  | RSS MB | ready s | errors |\n"
        "|--------------------|-----:|---------:|--------:|--------:|---------:|--------:|-------:|--------:|-------:|"
    )
    return "\n".join([head, *(_format_row(r) for r in rows)])


def ratios(rows: list[dict]) -> str:
    cpu = {(r["scenario"], r["concurrency"]): r["cpu_ms_per_request"] for r in rows}
    concs = sorted({r["concurrency"] for r in rows})
    lines = ["CPU per request, and as a multiple of the bare forwarder's at the same concurrency:"]
    for name in ("named-openai", "auto-embedded", "auto-redis", "anthropic", "stream-usage", "auto-50k-prompt"):
        parts = []
        for c in concs:
            value, base = cpu.get((name, c)), cpu.get(("baseline-forwarder", c))
            if value is not None:
                parts.append(f"c={c}: {value:.3f} ms" + (f" ({value / base:.2f}x)" if base else ""))
        if parts:
            lines.append(f"  {name:<16} " + ", ".join(parts))
    lines.append("Responses and Messages as a multiple of chat completions (named-openai, same model and upstream):")
    for name in ("responses-openai", "responses-nostore", "messages-openai"):
        parts = [
            f"c={c}: {cpu[(name, c)] / cpu[('named-openai', c)]:.2f}x" for c in concs if (name, c) in cpu and cpu.get(("named-openai", c))
        ]
        if parts:
            lines.append(f"  {name:<16} " + ", ".join(parts))
    return "\n".join(lines)


def _machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return f"{model}, {len(procs.cores())} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


if __name__ == "__main__":
    raise SystemExit(main())
