"""autoroute's benchmark beside its peers: `make bench` (full) or `make bench-smoke` (CI, < 60 s).

Starts the fake upstream (OpenAI, Anthropic and Gemini formats), the bare Python forwarder,
Portkey's gateway and LiteLLM's proxy (installed on first use under bench/peers/) and autoroute
in several set-ups, every gateway pinned to core 0 and the upstream and wrk to core 1. The runs
are interleaved, so every gateway sees the same machine; each figure is the median of
`--repeats`. Per gateway and scenario: CPU ms per request and req/s at c=16 (/proc
utime+stime over the load phase), p50 and added p50 at c=1, RSS. After every autoroute run the
bench checks that each request was counted, settled and recorded (bench/verify.py).
Writes bench/results/latest.json (smoke: smoke.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench import load, peers, procs, verify
from bench.report import ratios, table
from bench.scenarios import Scenario, scenarios

RESULTS = Path(__file__).resolve().parent / "results"
MASTER = "sk-bench-master-0123456789"
REDIS_DBS = {"all": 1, "anthropic": 2, "openai": 3, "long": 4, "soak": 5, "gemini": 6}  # on the bench's own redis-server


def sid(s: Scenario) -> str:
    return f"{s.gateway}/{s.name}"


def proxy_env(config: str, upstream: str, redis_port: int = 6379) -> dict[str, str]:
    env = {
        "AUTOROUTE_LOG_LEVEL": "warning",
        "OPENAI_BASE_URL": f"{upstream}/v1",
        "TOGETHER_BASE_URL": f"{upstream}/v1",
        "OLLAMA_HOST": upstream,
        "ANTHROPIC_BASE_URL": upstream,
        "GEMINI_API_BASE": upstream,
    }
    keys = {
        "OPENAI_API_KEY": "sk-bench-openai",
        "ANTHROPIC_API_KEY": "sk-ant-bench",
        "GEMINI_API_KEY": "gm-bench",
        "TOGETHER_API_KEY": "tg",
    }
    if config == "openai":
        keys = {"OPENAI_API_KEY": keys["OPENAI_API_KEY"]}
    elif config == "anthropic":
        keys = {"ANTHROPIC_API_KEY": keys["ANTHROPIC_API_KEY"]}
    elif config in ("gemini", "embedded"):  # embedded: compared with auto-gemini, so the same route
        keys = {"GEMINI_API_KEY": keys["GEMINI_API_KEY"]}
    env.update(keys)
    if config != "embedded":  # production set-up: master key, virtual keys, limits on a real Redis
        env["AUTOROUTE_MASTER_KEY"] = MASTER
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/{REDIS_DBS[config]}"
    return env


def start(config: str, upstream: str, core: int | None, logdir: Path, port: int, redis_port: int) -> procs.Proc:
    if config == "baseline":
        args = ["-m", "bench.baseline", "--port", str(port), "--upstream", upstream]
        return procs.start("baseline", args, port, core=core, log=logdir / "baseline.log")
    if config == "portkey":
        return peers.start_portkey(port, core, logdir)
    if config == "litellm":
        return peers.start_litellm(port, core, logdir, upstream, MASTER)
    env = proxy_env(config, upstream, redis_port)
    return procs.start(
        f"autoroute-{config}",
        ["-m", "proxy", "serve", "--port", str(port)],
        port,
        core=core,
        env=env,
        log=logdir / f"{config}.log",
        timeout_s=600,
    )


def create_key(proxy: procs.Proc) -> tuple[str, str]:
    """A virtual key with generous limits, so the full admission path runs on every request."""
    resp = httpx.post(
        proxy.url + "/admin/keys",
        headers={"authorization": f"Bearer {MASTER}"},
        timeout=10,
        json={"name": "bench", "rpm": 10_000_000, "tpm": 10_000_000_000, "budget_usd_day": 1e9, "budget_usd_month": 1e9},
    )
    resp.raise_for_status()
    data = resp.json()
    return data["key"], data["id"]


class Target:
    """One scenario on its running process: headers, key, and the per-request cost it settles."""

    def __init__(self, scenario: Scenario, proxy: procs.Proc, upstream: str, key: tuple[str, str] | None) -> None:
        self.s, self.proxy = scenario, proxy
        self.url = proxy.url + scenario.path
        self.headers = {k: v.format(upstream=upstream, litellm_master=MASTER) for k, v in scenario.headers.items()}
        self.bearer, self.key_id = key if key else (None, None)
        self.unit_cost = 0.0
        self.routed_model = ""

    @property
    def checked(self) -> bool:
        return self.s.gateway == "autoroute"

    def probe(self) -> None:
        """One request: it must succeed, go where the scenario says, and tells the unit cost."""
        headers = {"content-type": "application/json", **self.headers}
        if self.bearer:
            headers["authorization"] = f"Bearer {self.bearer}"
        before = verify.settled(self.proxy.url, self.key_id, MASTER) if self.checked else None
        resp = httpx.post(self.url, content=self.s.body, headers=headers, timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"{sid(self.s)}: probe got {resp.status_code}: {resp.text[:300]}")
        model = resp.headers.get("x-autoroute-model", "")
        self.routed_model = model
        if self.s.routed_to and not model.startswith(self.s.routed_to):
            raise RuntimeError(f"{sid(self.s)}: routed to {model!r}, expected {self.s.routed_to}*")
        if before is not None:
            after = verify.settled(self.proxy.url, self.key_id, MASTER)
            self.unit_cost = after.cost_usd - before.cost_usd

    def load(self, conc: int, seconds: float, core: int | None) -> load.LoadResult:
        return load.run(self.url, self.s.body, concurrency=conc, seconds=seconds, core=core, bearer=self.bearer, headers=self.headers)

    def measure(self, conc: int, seconds: float, core: int | None, warm_up: bool) -> dict:
        if warm_up:
            self.load(conc, min(1.0, seconds), core)
        before = verify.settled(self.proxy.url, self.key_id, MASTER) if self.checked else None
        cpu0 = self.proxy.cpu_seconds()
        result = self.load(conc, seconds, core)
        cpu1 = self.proxy.cpu_seconds()
        problems: list[str] = []
        if before is not None:
            after = verify.settled(self.proxy.url, self.key_id, MASTER)
            problems = verify.check(before, after, result.requests, conc, self.unit_cost)
            for p in problems:
                print(f"  VERIFY {sid(self.s)} c={conc}: {p}", file=sys.stderr, flush=True)
        return {
            "gateway": self.s.gateway,
            "scenario": self.s.name,
            "concurrency": conc,
            "requests": result.requests,
            "errors": result.errors,
            "rps": round(result.rps, 1),
            "p50_ms": round(result.p50_ms, 3),
            "p99_ms": round(result.p99_ms, 3),
            "cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / max(1, result.requests), 3),
            "rss_mb": round(self.proxy.rss_mb(), 1),
            "verified": (not [p for p in problems if not p.startswith("warning: ")]) if self.checked else None,
            "problems": problems,
        }


def soak(target: Target, total: int, core: int | None) -> dict:
    done, samples = 0, []
    while done < total:
        done += target.load(16, 5, core).requests
        samples.append((done, round(target.proxy.rss_mb(), 1)))
    half = next(rss for n, rss in samples if n >= total / 2)
    return {
        "scenario": sid(target.s),
        "requests": done,
        "rss_mb_at_start": samples[0][1],
        "rss_mb_at_half": half,
        "rss_mb_at_end": samples[-1][1],
        "growth_last_half_mb": round(samples[-1][1] - half, 1),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per figure; the median is reported")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--only", help="comma-separated scenarios, as gateway/name or name")
    parser.add_argument("--no-peers", action="store_true", help="skip Portkey and LiteLLM")
    parser.add_argument("--soak", type=int, default=0, help="also run N `auto` requests (every provider keyed) and track RSS")
    parser.add_argument("--smoke", action="store_true", help="CI: autoroute scenarios once for 1 s at c=4, no peers; fails on errors")
    parser.add_argument("--out", type=Path, help="default: bench/results/latest.json (smoke: smoke.json)")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / ("smoke.json" if args.smoke else "latest.json")
    concs = [4] if args.smoke else [int(c) for c in args.concurrency.split(",")]
    seconds, repeats = (1.0, 1) if args.smoke else (args.seconds, args.repeats)
    only = set(args.only.split(",")) if args.only else None
    chosen = [
        s
        for s in scenarios()
        if (s.name in only or sid(s) in only if only else s.default)
        and not (args.smoke and not s.smoke)
        and not (args.no_peers and s.gateway in ("portkey", "litellm"))
    ]
    if not args.smoke:
        peers.ensure_wrk()

    available = procs.cores()
    proxy_core, other_core = (available[0], available[1]) if len(available) >= 2 else (None, None)
    logdir = Path(tempfile.mkdtemp(prefix="autoroute-bench-"))
    redis_server = procs.start_redis(other_core, logdir)
    upstream_port = procs.free_port()
    upstream = procs.start(
        "fake-upstream",
        ["-m", "tests.support.fake_upstream", "--port", str(upstream_port), "--no-record"],
        upstream_port,
        core=other_core,
        ready_path="/_control/reset",
        log=logdir / "upstream.log",
    )
    running: dict[str, procs.Proc] = {}
    targets: dict[str, Target] = {}
    runs: dict[tuple[str, int], list[dict]] = {}
    direct: dict[tuple[bytes, str, int], list[float]] = {}
    soak_result = None
    try:
        # Every process runs at once, pinned to the same core (an idle one costs nothing), and the
        # runs are interleaved: peers, forwarder and autoroute see the same machine conditions.
        configs = list(dict.fromkeys(s.config for s in chosen))
        with ThreadPoolExecutor(len(configs)) as pool:  # start together: litellm's import dominates start-up
            futures = {c: pool.submit(start, c, upstream.url, proxy_core, logdir, procs.free_port(), redis_server.port) for c in configs}
            failed = None
            for config, future in futures.items():
                try:
                    running[config] = future.result()
                    print(f"  started {config} in {running[config].ready_seconds:.2f} s", file=sys.stderr, flush=True)
                except Exception as exc:  # the others still get stopped below
                    failed = failed or exc
            if failed:
                raise failed
        for s in chosen:
            proc = running[s.config]
            keyed = s.gateway == "autoroute" and s.config != "embedded"
            if keyed and not any(t.proxy is proc and t.key_id for t in targets.values()):
                key = create_key(proc)
            else:
                key = next(((t.bearer, t.key_id) for t in targets.values() if t.proxy is proc and t.key_id), None)
            targets[sid(s)] = Target(s, proc, upstream.url, key)  # type: ignore[arg-type]
            targets[sid(s)].probe()
        for conc in concs:
            for _ in range(repeats):
                for s in chosen:
                    row = targets[sid(s)].measure(conc, seconds, other_core, warm_up=not args.smoke)
                    runs.setdefault((sid(s), conc), []).append(row)
                    key = (s.direct_body, s.direct_path, conc)
                    if args.smoke:
                        direct.setdefault(key, [0.0])
                    elif len(direct.get(key, [])) < repeats:
                        result = load.run(upstream.url + s.direct_path, s.direct_body, concurrency=conc, seconds=seconds, core=other_core)
                        direct.setdefault(key, []).append(result.p50_ms)
            for s in chosen:
                row = _median_row(runs[(sid(s), conc)])
                row["added_p50_ms"] = round(row["p50_ms"] - statistics.median(direct[(s.direct_body, s.direct_path, conc)]), 3)
                runs[(sid(s), conc)] = [row]
                print(_line(row), flush=True)
        for s in chosen:  # memory after everything the process served
            for conc in concs:
                runs[(sid(s), conc)][0]["rss_mb"] = round(targets[sid(s)].proxy.rss_mb(), 1)
        if args.soak:  # a fresh process, so its memory is the soak's alone
            fresh = start("soak", upstream.url, proxy_core, logdir, procs.free_port(), redis_server.port)
            running["soak-proc"] = fresh
            # every provider keyed: `auto` goes where the router sends it (not necessarily Gemini)
            s = dataclasses.replace(next(x for x in scenarios() if x.name == "auto-gemini"), routed_to=None)
            target = Target(s, fresh, upstream.url, create_key(fresh))
            target.probe()
            soak_result = soak(target, args.soak, other_core)
            soak_result["routed_to"] = target.routed_model
            print(f"soak: { ({k: v for k, v in soak_result.items() if k != 'samples'}) }", flush=True)
    finally:
        for proc in running.values():
            proc.stop()
        upstream.stop()
        redis_server.stop()

    rows = [runs[(sid(s), c)][0] for c in concs for s in chosen]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": _machine(),
        "load_generator": "wrk" if load.have_wrk() else "asyncio",
        "pinned": proxy_core is not None,
        "peers": {"portkey": peers.PORTKEY_VERSION, "litellm": peers.LITELLM_VERSION},
        "seconds_per_run": seconds,
        "repeats": repeats,
        "rows": rows,
        "soak": soak_result,
    }
    print("\n" + table(rows))
    print("\n" + ratios(rows, soak_result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten: {args.out}  (process logs: {logdir})")
    errors = sum(r["errors"] for r in rows)
    unverified = [f"{r['gateway']}/{r['scenario']}" for r in rows if r["verified"] is False]
    if unverified:
        print(f"VERIFY FAILED: {', '.join(unverified)}", file=sys.stderr)
        return 1
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
    row["problems"] = [p for r in rows for p in r["problems"]]
    row["verified"] = None if rows[0]["verified"] is None else not [p for p in row["problems"] if not p.startswith("warning: ")]
    return row


def _line(r: dict) -> str:
    return (
        f"  {r['gateway'] + '/' + r['scenario']:<28} c={r['concurrency']:<3} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:.2f} ms"
        f"  added {r['added_p50_ms']:.2f} ms  CPU {r['cpu_ms_per_request']:.3f} ms  RSS {r['rss_mb']:.0f} MB  errors {r['errors']}"
        + ("" if r["verified"] is None else f"  verified {r['verified']}")
    )


def _machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return f"{model}, {len(procs.cores())} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


if __name__ == "__main__":
    raise SystemExit(main())
