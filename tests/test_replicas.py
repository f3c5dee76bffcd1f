"""Real proxy processes on a real Redis: two replicas enforce one limit, and a Redis that
goes away mid-run gives the configured failure mode, never a hang, then normal service."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import REPO
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import free_port, provider_environ, serving

pytestmark = pytest.mark.redis
MASTER = "mk-replicas-0123456789abcdef"
ASK = {"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@contextmanager
def proxy_process(redis_url: str, upstream_url: str, policy_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        **provider_environ(upstream_url),
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_url,
        "AUTOROUTE_MASTER_KEY": MASTER,
        "AUTOROUTE_POLICY_DIR": str(policy_dir),
        "AUTOROUTE_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # litellm loads in ~2 s, far longer on a loaded machine
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else "exited"
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "proxy not ready"
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def create_key(url: str, **fields: object) -> str:
    resp = httpx.post(url + "/admin/keys", json={"name": "replicas", **fields}, headers={"authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


@pytest.fixture
def redis_db13(redis_url: str) -> Iterator[str]:
    """db 13 of the tests' own redis-server (tests/conftest.py), emptied before and after."""
    url = redis_url.rsplit("/", 1)[0] + "/13"
    client = redis.Redis.from_url(url)
    client.ping()  # a missing Redis is a failure here, not a skip
    client.flushdb()
    yield url
    client.flushdb()


def test_two_proxy_processes_enforce_one_limit(redis_db13: str, tmp_path: Path) -> None:
    with (
        serving(FakeUpstream()) as up,
        proxy_process(redis_db13, up.url, policy_copy(tmp_path)) as a,
        proxy_process(redis_db13, up.url, policy_copy(tmp_path / "b")) as b,
    ):
        key = create_key(a, rpm=10)  # created on A, known to B at once (one store)

        def call(i: int) -> int:
            url = (a, b)[i % 2]
            return httpx.post(url + "/v1/chat/completions", json=ASK, headers={"authorization": f"Bearer {key}"}, timeout=30).status_code

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(call, range(40)))
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 30


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
def test_redis_outage_mid_run(mode: str, tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (scripts/ensure-redis.sh installs it)"
    port = free_port()
    server_cmd = [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    redis_proc = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    policies = policy_copy(tmp_path, files={"limits.yaml": {"on_store_error": mode, "store_timeout_s": 0.2}})
    try:
        _wait_redis(port)
        with serving(FakeUpstream()) as up, proxy_process(f"redis://127.0.0.1:{port}/0", up.url, policies) as url:
            key = create_key(url, rpm=1000)
            headers = {"authorization": f"Bearer {key}"}
            assert httpx.post(url + "/v1/chat/completions", json=ASK, headers=headers, timeout=10).status_code == 200
            redis_proc.kill()
            redis_proc.wait()
            started = time.monotonic()
            resp = httpx.post(url + "/v1/chat/completions", json=ASK, headers=headers, timeout=10)
            assert time.monotonic() - started < 3  # short timeouts: never a hang
            if mode == "fail_closed":
                assert resp.status_code == 503
                assert resp.json()["error"]["code"] == "limits_store_unavailable"
            else:
                assert resp.status_code == 200
            assert httpx.get(url + "/healthz").status_code == 200  # the process is alive
            redis_proc = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_redis(port)
            key = create_key(url, rpm=1000)  # the restarted Redis is empty (no persistence)
            deadline = time.monotonic() + 10
            while True:  # recovers by itself once Redis is back
                resp = httpx.post(url + "/v1/chat/completions", json=ASK, headers={"authorization": f"Bearer {key}"}, timeout=10)
                if resp.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert resp.status_code == 200
    finally:
        redis_proc.kill()


def _wait_redis(port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")
