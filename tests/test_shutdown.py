"""Graceful shutdown: on SIGTERM the proxy stops accepting, lets in-flight streams finish
within AUTOROUTE_SHUTDOWN_GRACE_S, then cuts and accounts what is left, and exits.

The SIGTERM tests run the real thing: `python -m proxy serve` and the fake upstream as
subprocesses. The accounting of a cut stream is checked in-process (AppState.record spy)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.dispatching import MSG, fast, recording_app, wait_for
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import ThreadedServer, free_port

REPO = Path(__file__).resolve().parent.parent
# uvicorn finishes its shutdown, then re-raises the SIGTERM it captured: -15 is a clean exit
CLEAN_EXIT = (0, -signal.SIGTERM)
pytestmark = pytest.mark.slow


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def fake_upstream_process() -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOROUTE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = _spawn(["-m", "tests.support.fake_upstream", "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/_control/received", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _serve(upstream_url: str, tmp_path: Path, grace_s: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOROUTE_", "REDIS_")) and not k.endswith("_API_KEY")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "OPENAI_BASE_URL": f"{upstream_url}/v1",
            "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
            "AUTOROUTE_PORT": str(port),
            "AUTOROUTE_POLICY_DIR": str(fast(tmp_path)),
            "AUTOROUTE_ENV_FILE": str(tmp_path / "no.env"),
            "AUTOROUTE_SHUTDOWN_GRACE_S": str(grace_s),
        }
    )
    proc = _spawn(["-m", "proxy", "serve"], env)
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/healthz", proc)
    return proc, url


@dataclass
class StreamReader:
    """Reads one streamed completion in a thread, noting when each event arrived."""

    url: str
    events: list[str] = field(default_factory=list)
    error: Exception | None = None
    ended_at: float | None = None

    def start(self) -> StreamReader:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        body = {"model": "openai/gpt-4.1", "messages": MSG, "stream": True}
        try:
            with httpx.stream("POST", self.url + "/v1/chat/completions", json=body, timeout=30) as resp:
                for line in resp.iter_lines():
                    if line:
                        self.events.append(line)
        except httpx.HTTPError as exc:
            self.error = exc
        self.ended_at = time.monotonic()

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "data: [DONE]"


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _script(upstream_url: str, seconds_per_chunk: float) -> None:
    httpx.post(
        upstream_url + "/_control/script", timeout=5, json={"model": "gpt-4.1", "faults": [{"kind": "slow", "seconds": seconds_per_chunk}]}
    )


def test_sigterm_lets_an_in_flight_stream_finish_and_refuses_new_connections(fake_upstream_process: str, tmp_path: Path) -> None:
    _script(fake_upstream_process, 0.25)  # 12 events: ~3 s of streaming
    proc, url = _serve(fake_upstream_process, tmp_path, grace_s=15)
    try:
        reader = StreamReader(url).start()
        wait_for(lambda: len(reader.events) >= 1, timeout=10)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        port = int(url.rsplit(":", 1)[1])
        wait_for(lambda: _refused(port), timeout=2)  # the listener closed ...
        assert reader.ended_at is None  # ... while the stream was still going
        reader.thread.join(15)
        assert reader.done and reader.error is None, (reader.events[-2:], reader.error)
        assert proc.wait(10) in CLEAN_EXIT
        assert time.monotonic() - signalled < 10
        log = proc.stderr.read().decode() if proc.stderr else ""
        assert "Finished server process" in log and "timeout graceful shutdown exceeded" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
    received = httpx.get(fake_upstream_process + "/_control/received", timeout=5).json()
    assert len(received) == 1 and received[0]["completed"]


def test_short_grace_cuts_the_stream_and_exits_promptly(fake_upstream_process: str, tmp_path: Path) -> None:
    _script(fake_upstream_process, 0.5)  # 12 events: ~6 s of streaming
    proc, url = _serve(fake_upstream_process, tmp_path, grace_s=1)
    try:
        reader = StreamReader(url).start()
        wait_for(lambda: len(reader.events) >= 1, timeout=10)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert proc.wait(10) in CLEAN_EXIT
        exited = time.monotonic() - signalled
        reader.thread.join(5)
        log = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 0.9 < exited < 3.5, exited
    # the proxy cuts the stream itself at the grace (proxy/request/drain.py), before uvicorn's deadline
    assert "cutting 1 stream(s) still open" in log and "Finished server process" in log
    assert "timeout graceful shutdown exceeded" not in log
    assert not reader.done and reader.ended_at is not None  # cut, not finished
    assert "server_shutting_down" in reader.events[-1]  # with an error event the SDKs read
    received = httpx.get(fake_upstream_process + "/_control/received", timeout=5).json()
    assert received[0]["disconnected_at"] is not None and not received[0]["completed"]  # upstream call cancelled too


def test_a_stream_cut_at_the_end_of_the_grace_is_accounted(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    app, recorded = recording_app(environ, fast(tmp_path))
    state = app.state.autoroute
    upstream.script("gpt-4.1", Fault.slow(0.5))
    server = ThreadedServer(app, timeout_graceful_shutdown=1).start()
    reader = StreamReader(server.url).start()
    wait_for(lambda: len(reader.events) >= 1, timeout=10)
    started = time.monotonic()
    server.stop()  # what uvicorn's SIGTERM handler does: should_exit, then drain
    assert time.monotonic() - started < 4
    reader.thread.join(5)
    assert not reader.done
    assert len(recorded) == 1
    ex = recorded[0]
    assert ex.finished is not None and ex.status == 499  # cancelled, settled, recorded once
    assert ex.usage is not None and ex.usage.prompt_tokens > 0
    assert state.health.in_flight("openai") == 0
    rec = upstream.requests_for("gpt-4.1")[0]
    wait_for(lambda: rec.disconnected_at is not None)
