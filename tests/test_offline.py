"""Importing and running the proxy makes no network call except to configured upstreams."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import POLICIES, REPO

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def test_no_connection_except_loopback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "HF_", "TIKTOKEN", "AUTOROUTE_"))}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.offline_probe", str(POLICIES)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "offline test:" not in output, output[-3000:]
    seen = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("SEEN "))[5:])
    assert "connect:127.0.0.1" in seen  # it did talk to the loopback upstream
    not_loopback = [s for s in seen if s != "unix:" and s.split(":", 1)[1] not in LOOPBACK]
    assert not_loopback == [], f"lookups or connections off loopback: {not_loopback}"


def test_hook_would_catch_a_real_download() -> None:
    """The probe's guard is real: a connection to a public address is refused."""
    code = (
        "import sys; sys.argv=['x']; import tests.support.offline_probe as p, socket\n"
        "for host in ('huggingface.co', '93.184.216.34'):\n"
        " try:\n  socket.create_connection((host, 443), timeout=1)\n except ConnectionRefusedError as e: print('refused', e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert "refused offline test: DNS lookup of huggingface.co" in proc.stdout
    assert "refused offline test: DNS lookup of 93.184.216.34" in proc.stdout
