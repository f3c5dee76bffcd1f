"""Fault injection with real processes (issue 11 items 2, 13, 14): `python -m proxy serve` on
the tests' own Redis, SIGTERM while streams run past the grace; a first run with no provider
key and no Ollama; the CLI outside the repository and into a closed pipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.dispatching import fast
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parent.parent
MASTER = "mk-faults-process-0123456789"
pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOROUTE_", "REDIS_", "OLLAMA")) and not k.endswith("_API_KEY")}
    env["PYTHONPATH"] = str(REPO)
    return env


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else "exited"
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not get ready")


@pytest.fixture
def upstream_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.fake_upstream", "--port", str(port)], cwd=REPO, env=_clean_env())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/_control/received", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def pending_reservations(r: redis.Redis) -> int:
    """Reservations not settled: key and task pending sets, deployment in-flight sets."""
    return sum(r.zcard(k) for pattern in ("*:pz", "*:inflight") for k in r.scan_iter(match=pattern))


def test_sigterm_cuts_long_streams_with_an_error_event_and_accounts_them(upstream_process: str, redis_url: str, tmp_path: Path) -> None:
    """Item 2. Old code: every stream cut with no error event (the client saw a protocol error),
    no decision line, nothing settled, reservations left for 900 s."""
    streams = 6
    db = redis_url.rsplit("/", 1)[0] + "/7"
    store = redis.Redis.from_url(db)
    store.flushdb()  # our own server (tests/conftest.py), our own db
    httpx.post(upstream_process + "/_control/script", json={"model": "gpt-4.1", "faults": [{"kind": "slow", "seconds": 1.0}] * streams})
    port = free_port()
    env = _clean_env() | {
        "OPENAI_BASE_URL": f"{upstream_process}/v1",
        "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
        "REDIS_URL": db,
        "AUTOROUTE_MASTER_KEY": MASTER,
        "AUTOROUTE_PORT": str(port),
        "AUTOROUTE_POLICY_DIR": str(fast(tmp_path)),
        "AUTOROUTE_ENV_FILE": str(tmp_path / "no.env"),
        "AUTOROUTE_SHUTDOWN_GRACE_S": "1",
    }
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        key = httpx.post(
            url + "/admin/keys", json={"name": "s", "budget_usd_day": 5}, headers={"authorization": f"Bearer {MASTER}"}
        ).json()["key"]
        results: list[list[str]] = [[] for _ in range(streams)]

        def read(i: int) -> None:
            body = {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            try:
                with httpx.stream(
                    "POST", url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
                ) as r:
                    results[i].extend(line for line in r.iter_lines() if line)
            except httpx.HTTPError as exc:
                results[i].append(f"transport error: {exc!r}")

        threads = [threading.Thread(target=read, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while sum(1 for r in results if r) < streams:  # every stream has its first chunk
            assert time.monotonic() < deadline, results
            time.sleep(0.05)
        assert pending_reservations(store) == streams
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        proc.wait(30)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    for lines in results:
        event = json.loads(lines[-1].removeprefix("data: "))
        assert event["error"]["code"] == "server_shutting_down", lines[-3:]
    decisions = [json.loads(line)["decision"] for line in stderr.splitlines() if '"autoroute.decision"' in line]
    assert len(decisions) == streams and all(d["status"] == 503 for d in decisions), stderr[-3000:]
    assert all(d["output_tokens"] > 0 for d in decisions)  # settled to what was streamed
    assert pending_reservations(store) == 0
    assert "object object at 0x" not in stderr
    store.flushdb()
    store.close()


def test_first_run_without_keys_or_ollama_says_what_is_missing(tmp_path: Path) -> None:
    """Item 13. Old: a 502 'could not connect to ollama', then a 422 about credentials; no start-up word."""
    port, ollama = free_port(), free_port()  # nothing listens on `ollama`
    env = _clean_env() | {
        "AUTOROUTE_PORT": str(port),
        "OLLAMA_HOST": f"http://127.0.0.1:{ollama}",
        "AUTOROUTE_ENV_FILE": str(tmp_path / "no.env"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        body = {"model": "auto", "messages": [{"role": "user", "content": "Capital of France?"}]}
        first = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
        second = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    start = stderr[: stderr.index("autoroute ready")]
    where = f"http://127.0.0.1:{ollama}/v1"
    assert "No provider key is set" in start and "OPENAI_API_KEY" in start and f"Nothing answers at {where}" in start
    assert first.status_code == 502 and f"at {where}/chat/completions" in first.text and "No provider key is set" in first.text
    assert second.status_code == 503 and "No provider key is set" in second.text
    assert second.headers["retry-after"] == "1"  # a set-up problem: an SDK honouring Retry-After must not wait out the breaker
    assert "object object at 0x" not in stderr


def test_cli_outside_the_repository_and_into_a_closed_pipe(tmp_path: Path) -> None:
    """Item 14. Old: `autoroute policy check` outside the repo found no policies; a closed pipe printed a traceback."""
    env = _clean_env() | {"AUTOROUTE_ENV_FILE": str(tmp_path / "no.env")}
    env.pop("PYTHONPATH")
    cli = str(Path(sys.executable).with_name("autoroute"))
    check = subprocess.run([cli, "policy", "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "policy OK" in check.stdout, check.stderr
    route = subprocess.Popen(
        [cli, "route", "--all-available", "Capital of France?"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert route.stdout is not None
    route.stdout.read(1)
    route.stdout.close()  # like `| head -c 1`
    _, err = route.communicate(timeout=60)
    assert b"BrokenPipeError" not in err and b"Traceback" not in err
    short = subprocess.run(
        [cli, "serve"], cwd=tmp_path, env=env | {"AUTOROUTE_MASTER_KEY": "short"}, capture_output=True, text=True, timeout=60
    )
    assert short.returncode == 2 and "AUTOROUTE_MASTER_KEY" in short.stderr and "Traceback" not in short.stderr


def test_readme_keys_lines_parse(tmp_path: Path) -> None:
    from proxy.cli.main import main

    readme = (REPO / "README.md").read_text()
    lines = [line.split("#")[0].split() for line in readme.splitlines() if line.startswith("autoroute keys ")]
    assert len(lines) >= 4
    for words in lines:
        with pytest.raises(SystemExit) as exc:  # --help: parsed, not run
            main([*[w.strip("'") for w in words[1:]], "--help"])
        assert exc.value.code == 0, words


def test_license_is_the_one_pyproject_names() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()


def test_the_test_redis_is_private(redis_server) -> None:  # type: ignore[no-untyped-def]
    assert redis_server.port != 6379 and redis_server.proc.poll() is None
    makefile = (REPO / "Makefile").read_text()
    test_target = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "redis-binary" in test_target and " redis " not in f" {test_target} "
