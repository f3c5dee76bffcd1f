"""Instructions per request, repeatable under load: autoroute under valgrind's callgrind.

    PYTHONPATH=. .venv/bin/python -m bench.instructions [-n 200] [-c 8] [--only named-openai,stream-openai]
    PYTHONPATH=. .venv/bin/python -m bench.instructions --profile DIR [-n 400]   # cProfile instead

Starts its own redis-server on a free port, the fake upstream, and per set-up one `autoroute
serve` (the bench's environment and virtual key, bench/__main__.py) under
`valgrind --tool=callgrind --instr-atstart=no`. Per scenario: instrumentation on, `--warmup`
requests, counters zeroed, `-n` requests at concurrency `-c` (a thread pool of httpx clients,
outside valgrind), dump; the figure is the dump's total instructions / n (every thread of the
server, background tasks included). Wall time under valgrind means nothing; the count does.
`--profile DIR` runs the servers without valgrind and writes a cProfile of the measured requests
(event-loop thread) to DIR/<scenario>.prof.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench import procs
from bench.__main__ import create_key, proxy_env
from bench.scenarios import Scenario, scenarios

DEFAULT = ["named-openai", "auto-gemini", "auto-anthropic", "stream-openai"]


def drive(url: str, body: bytes, bearer: str, n: int, conc: int) -> int:
    headers = {"content-type": "application/json", "authorization": f"Bearer {bearer}"}
    per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]

    def worker(count: int) -> int:
        bad = 0
        with httpx.Client(timeout=600) as client:
            for _ in range(count):
                resp = client.post(url, content=body, headers=headers)
                bad += resp.status_code != 200
        return bad

    with ThreadPoolExecutor(conc) as pool:
        return sum(pool.map(worker, per))


def callgrind(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True, timeout=600)


def total_ir(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def newest_dump(outdir: Path, pid: int, seen: set[Path]) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fresh = [p for p in outdir.glob(f"cg.{pid}*") if p not in seen and p.stat().st_size > 0]
        if fresh:
            time.sleep(0.5)  # let the write finish
            seen.update(fresh)
            return max(fresh, key=lambda p: p.stat().st_mtime)
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


PROFILED = """
import cProfile, sys
import proxy.app
from proxy.cli.main import main
prof, factory, out = cProfile.Profile(), proxy.app.create_app_from_env, sys.argv[1]
def create_app_from_env():
    app = factory()
    async def switch(scope, receive, send):  # POST /_prof/on|off, in the event loop's thread
        if scope["type"] == "http" and scope["path"].startswith("/_prof/"):
            if scope["path"].endswith("on"):
                prof.enable()
            else:
                prof.disable(); prof.dump_stats(out); prof.clear()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            return await send({"type": "http.response.body", "body": b""})
        return await app(scope, receive, send)
    return switch
proxy.app.create_app_from_env = create_app_from_env
sys.argv = ["autoroute", *sys.argv[2:]]
main()
"""


def start_proxy(config: str, upstream: str, redis_port: int, workdir: Path, mode: str, prof_path: Path | None) -> procs.Proc:
    port = procs.free_port()
    env = proxy_env(config, upstream, redis_port)
    args = ["serve", "--port", str(port)]
    if mode == "plain":
        return procs.start(f"ar-{config}", ["-m", "proxy", *args], port, core=None, env=env, log=workdir / f"{config}.log", timeout_s=600)
    if mode == "profile":
        return procs.start(f"ar-{config}", ["-c", PROFILED, str(prof_path), *args], port, core=None, env=env,
                           log=workdir / f"{config}.log", timeout_s=600)  # fmt: skip
    exe = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={workdir}/cg.%p", sys.executable]
    return procs.start(f"ar-{config}", ["-m", "proxy", *args], port, core=None, env=env, exe=exe,
                       log=workdir / f"{config}.log", timeout_s=900)  # fmt: skip


def measure(s: Scenario, proxy: procs.Proc, bearer: str, args: argparse.Namespace, workdir: Path, seen: set[Path]) -> str:
    url = proxy.url + s.path
    probe = httpx.post(url, content=s.body, headers={"authorization": f"Bearer {bearer}", "content-type": "application/json"}, timeout=600)
    model = probe.headers.get("x-autoroute-model", "")
    if probe.status_code != 200 or (s.routed_to and not model.startswith(s.routed_to)):
        raise RuntimeError(f"{s.name}: probe {probe.status_code} {model!r} {probe.text[:200]}")
    if args.syscalls:
        drive(url, s.body, bearer, args.warmup, args.concurrency)
        out = workdir / f"{s.name}.strace"
        tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proxy.pid), "-o", str(out)], stderr=subprocess.DEVNULL)
        time.sleep(2.0)  # attached to every thread
        bad = drive(url, s.body, bearer, args.n, args.concurrency)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
        calls = {
            ln.split()[-1]: int(ln.split()[-2] if len(ln.split()) == 5 else ln.split()[-3])
            for ln in out.read_text().splitlines()[2:]
            if ln and not ln.startswith("-")
        }
        top = ", ".join(f"{k} {v / args.n:.1f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if k != "total")
        return f"{s.name:16s} {calls.get('total', 0) / args.n:6.1f} syscalls/request: {top}  (n={args.n}, errors={bad})"
    if args.profile:
        drive(url, s.body, bearer, args.warmup, args.concurrency)
        httpx.post(proxy.url + "/_prof/on")
        bad = drive(url, s.body, bearer, args.n, args.concurrency)
        httpx.post(proxy.url + "/_prof/off", timeout=60)
        shutil.copy(workdir / f"{s.config}.prof", Path(args.profile) / f"{s.name}.prof")
        return f"{s.name}: profile in {args.profile}/{s.name}.prof ({bad} errors)"
    callgrind(proxy.pid, "-i", "on")
    drive(url, s.body, bearer, args.warmup, args.concurrency)
    callgrind(proxy.pid, "-z")
    bad = drive(url, s.body, bearer, args.n, args.concurrency)
    callgrind(proxy.pid, "-d")
    ir = total_ir(newest_dump(workdir, proxy.pid, seen))
    callgrind(proxy.pid, "-i", "off")
    return f"{s.name:16s} {ir / args.n / 1e6:8.3f} M instructions/request  (n={args.n}, c={args.concurrency}, errors={bad})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="measured requests per scenario")
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--only", default=",".join(DEFAULT))
    parser.add_argument("--profile", help="write cProfile stats to this directory instead of counting")
    parser.add_argument("--syscalls", action="store_true", help="count syscalls per request (strace -c, no valgrind) instead")
    args = parser.parse_args()
    wanted = args.only.split(",")
    chosen = [s for s in scenarios() if s.gateway == "autoroute" and s.name in wanted]
    workdir = Path(tempfile.mkdtemp(prefix="autoroute-instr-"))
    redis = procs.start_redis(None, workdir)
    upstream_port = procs.free_port()
    upstream = procs.start("fake-upstream", ["-m", "tests.support.fake_upstream", "--port", str(upstream_port), "--no-record"],
                           upstream_port, core=None, ready_path="/_control/reset", log=workdir / "upstream.log")  # fmt: skip
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    seen: set[Path] = set()
    try:
        for config in dict.fromkeys(s.config for s in chosen):
            mode = "profile" if args.profile else "plain" if args.syscalls else "callgrind"
            proxy = start_proxy(config, upstream.url, redis.port, workdir, mode, workdir / f"{config}.prof")
            try:
                bearer = create_key(proxy)[0]
                for s in (s for s in chosen if s.config == config):
                    print(measure(s, proxy, bearer, args, workdir, seen), flush=True)
            finally:
                proxy.stop()
    finally:
        upstream.stop()
        redis.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
