"""prometheus-client multiprocess mode, for real: separate writer processes and uvicorn workers summed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from proxy.observe.export import mark_worker_dead, prepare_multiprocess_dir, render
from tests.support.deploy_paths import ROOT
from tests.support.servers import free_port as _free_port
from tests.test_metrics_exposition import families

# ── multiprocess mode, for real ──────────────────────────────────────────────────────
WRITER = textwrap.dedent("""
    import json, os, sys
    from prometheus_client import CollectorRegistry
    from proxy.observe.metrics import Metrics
    from proxy.observe.export import multiprocess_dir
    n, state, store_ok = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    m = Metrics(CollectorRegistry(), models=["openai/gpt-4.1"], deployments=["openai"])
    for _ in range(n):
        m.request_started()
        m.observe_usage(model="openai/gpt-4.1", input_tokens=100, output_tokens=10, cost_usd=0.25)
        m.observe_request(outcome="ok", status=200, total_s=1.5, upstream_s=1.4, category="qa_retrieval",
                          model="openai/gpt-4.1", preference="balanced")
    m.request_started()  # one request still in flight when the process is rendered
    m.set_cooldown("openai", state)
    m.set_store_up(store_ok)
    print(json.dumps({"pid": os.getpid(), "dir": multiprocess_dir()}))
""")


def _run_writer(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", WRITER, *args], env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_multiprocess_two_processes_are_summed(tmp_path: Path) -> None:
    mp_dir = tmp_path / "mp"
    (mp_dir).mkdir()
    (mp_dir / "counter_999999.db").write_bytes(b"stale")  # from an earlier run: must be cleared
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    assert prepare_multiprocess_dir(1, env) is None  # one worker, nothing set: single-process mode
    fresh = prepare_multiprocess_dir(2, env)  # several workers: a fresh directory
    assert fresh and Path(fresh).is_dir() and env["PROMETHEUS_MULTIPROC_DIR"] == fresh
    shutil.rmtree(fresh)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)
    assert prepare_multiprocess_dir(2, env) == str(mp_dir)
    assert not list(mp_dir.glob("*.db"))

    a = _run_writer(env, "3", "open", "1")
    b = _run_writer(env, "2", "closed", "0")
    assert a["dir"] == b["dir"] == str(mp_dir), "the writers did not run in multiprocess mode"
    assert a["pid"] != b["pid"]

    fam = families(render(CollectorRegistry(), multiproc_dir=str(mp_dir))[0])
    sample = lambda fname, sname, **labels: next(  # noqa: E731
        s.value for s in fam[fname].samples if s.name == sname and all(s.labels.get(k) == v for k, v in labels.items())
    )
    assert sample("autoroute_requests", "autoroute_requests_total", category="qa_retrieval", outcome="ok") == 5
    assert sample("autoroute_tokens", "autoroute_tokens_total", direction="input") == 500
    assert sample("autoroute_cost_usd", "autoroute_cost_usd_total") == pytest.approx(1.25)
    assert sample("autoroute_request_duration_seconds", "autoroute_request_duration_seconds_count", stream="false") == 5
    assert sample("autoroute_request_duration_seconds", "autoroute_request_duration_seconds_bucket", stream="false", le="2.0") == 5
    assert sample("autoroute_requests_in_flight", "autoroute_requests_in_flight") == 2  # livesum
    assert sample("autoroute_deployment_cooldown_state", "autoroute_deployment_cooldown_state", deployment="openai") == 2  # livemax
    assert sample("autoroute_limiter_store_up", "autoroute_limiter_store_up") == 0  # livemin

    mark_worker_dead(a["pid"], str(mp_dir))  # worker a exits: its live gauges go, its counters stay
    fam = families(render(CollectorRegistry(), multiproc_dir=str(mp_dir))[0])
    assert sample("autoroute_requests_in_flight", "autoroute_requests_in_flight") == 1
    assert sample("autoroute_deployment_cooldown_state", "autoroute_deployment_cooldown_state", deployment="openai") == 0
    assert sample("autoroute_requests", "autoroute_requests_total", category="qa_retrieval", outcome="ok") == 5


MP_APP = textwrap.dedent("""
    import os
    from contextlib import asynccontextmanager
    from types import SimpleNamespace
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from proxy.observe.metrics import Metrics
    from proxy.observe.export import mark_worker_dead, metrics_route, multiprocess_dir

    async def hit(request):
        m = request.app.state.autoroute.metrics
        m.request_started()
        m.observe_request(outcome="ok", status=200, total_s=0.01, model="none")
        return PlainTextResponse(f"{os.getpid()} {multiprocess_dir()}", headers={"connection": "close"})

    @asynccontextmanager
    async def lifespan(app):
        app.state.autoroute = SimpleNamespace(metrics=Metrics(CollectorRegistry()))
        yield
        mark_worker_dead()

    app = Starlette(routes=[Route("/hit", hit), metrics_route()], lifespan=lifespan)
""")


@pytest.mark.slow
def test_uvicorn_two_workers_metrics_sum_both(tmp_path: Path) -> None:
    (tmp_path / "mp_app.py").write_text(MP_APP)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    mp_dir = prepare_multiprocess_dir(2, env)  # what `autoroute serve --workers 2` does
    assert mp_dir and env["PROMETHEUS_MULTIPROC_DIR"] == mp_dir
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "mp_app:app",
            "--app-dir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        pids: dict[str, int] = {}
        hits = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(pids) < 2 or hits < 40):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/hit", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            pid, seen_dir = r.text.split()
            assert seen_dir == mp_dir
            pids[pid] = pids.get(pid, 0) + 1
            hits += 1
        assert len(pids) == 2, f"only one worker answered in {hits} requests: {pids}"
        for _ in range(3):  # any worker's /metrics is the sum over both
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            fam = families(body.encode())
            total = sum(s.value for s in fam["autoroute_requests"].samples if s.name == "autoroute_requests_total")
            assert total == hits
            in_flight = sum(s.value for s in fam["autoroute_requests_in_flight"].samples)
            assert in_flight == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(mp_dir, ignore_errors=True)
