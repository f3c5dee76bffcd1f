"""`autoroute serve --workers N` (issue 14): one port, N processes, one Redis, one /metrics, one
SIGTERM for all; and the embedded store refuses several workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.burst import REPO, burst, create_key, proxy_process
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.redis_cluster import redis_server
from tests.support.servers import serving

pytestmark = pytest.mark.redis


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_the_embedded_store_refuses_several_workers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",) and not k.startswith("AUTOROUTE_")}
    env.update(PYTHONPATH=str(REPO), AUTOROUTE_POLICY_DIR=str(policy_copy(tmp_path)))
    proc = subprocess.run([sys.executable, "-m", "proxy", "serve", "--workers", "2", "--port", "1"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "several workers need a shared limits store: set REDIS_URL" in proc.stderr


def test_two_workers_share_one_limit_one_metrics_endpoint_and_one_shutdown(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis, serving(FakeUpstream()) as up:
        with proxy_process(redis.url, up.url, policy_copy(tmp_path / "p"), "--workers", "2") as url:
            made = create_key(url, rpm=40)
            result = burst([url], str(made["key"]), 200)
            print(f"\n--workers 2, rpm 40, 200 concurrent: {result}")
            assert result.count(200) == 40 and result.count(429) == 160, result
            text = httpx.get(url + "/metrics", timeout=10).text
            served = sum(float(v) for v in re.findall(r'^autoroute_requests_total\{[^}]*status="2xx"[^}]*\} (\S+)$', text, re.M))
            assert served == 40, "one /metrics sums both workers"
            supervisor = _supervisor(url)
            workers = _children(supervisor)
            assert len(workers) >= 2
        # proxy_process sent SIGTERM to the supervisor and waited for it: every worker is gone too
        time.sleep(0.5)
        assert all(_gone(pid) for pid in (supervisor, *workers))


def _supervisor(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and port.encode() in args and b"--workers" in args:
            return int(cmdline.parent.name)
    raise AssertionError("supervisor not found")


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped
    except OSError:
        return True
