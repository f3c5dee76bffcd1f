"""A client that disconnects cancels its upstream call at once, whatever dispatch is doing:
waiting on a non-streamed answer, sleeping before a retry, or waiting for a stream's first
token. The request is still accounted (499) and its capacity comes back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.request import accounting
from tests.support.dispatching import MODEL, MSG, deployment, fast, nano_policy, proxy, upstream_name, wait_for
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import ThreadedServer


def _give_up_after(url: str, seconds: float, body: dict) -> float:
    """POST and drop the connection after `seconds`; returns when it was dropped."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=seconds))
    return time.monotonic()


@pytest.mark.parametrize("protocol", ["autoroute", "uvicorn"])
def test_disconnect_during_a_non_streamed_call_closes_the_upstream(
    environ: dict, upstream: FakeUpstream, upstream_server: ThreadedServer, tmp_path: Path, protocol: str
) -> None:
    upstream.script(upstream_name("d1"), Fault.hang(5))
    policy = nano_policy(tmp_path, upstream_server.url, [deployment("d1", upstream_server.url, max_concurrent=1)])
    with proxy(environ, policy, protocol) as (server, recorded, state):
        closed_at = _give_up_after(server.url, 0.3, {"model": MODEL, "messages": MSG})
        rec = upstream.requests_for(upstream_name("d1"))[0]
        wait_for(lambda: rec.disconnected_at is not None)
        assert rec.disconnected_at - closed_at < 1.0 and not rec.completed
        wait_for(lambda: len(recorded) == 1)
        assert state.health.in_flight("d1") == 0
        # the max_concurrent=1 slot came back: the next request gets d1, not "at capacity"
        ok = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG}, timeout=5)
        assert ok.status_code == 200 and ok.headers["x-autoroute-attempts"] == f"{MODEL}@d1"
    ex = recorded[0]
    assert ex.status == 499 and ex.error_code == "client_disconnected"
    assert ex.outcome.attempts[0].error is None and ex.outcome.attempts[0].seconds > 0.2  # cancelled, not failed
    assert ex.outcome.upstream_seconds > 0.2
    assert state.health.snapshot()[-1]["recent_failures"] == 0  # a cancel is not the deployment's fault


@pytest.mark.parametrize("protocol", ["autoroute", "uvicorn"])
def test_disconnect_during_backoff_stops_the_retries(environ: dict, upstream: FakeUpstream, tmp_path: Path, protocol: str) -> None:
    upstream.script("gpt-4.1", Fault.status(503, retry_after=1.5))
    with proxy(environ, fast(tmp_path), protocol) as (server, recorded, _state):
        _give_up_after(server.url, 0.3, {"model": "openai/gpt-4.1", "messages": MSG})
        wait_for(lambda: len(recorded) == 1, timeout=1.0)  # accounted at once, not after the wait
        time.sleep(1.6)  # past the Retry-After: a retry would have been sent by now
    assert len(upstream.requests_for("gpt-4.1")) == 1
    ex = recorded[0]
    assert ex.status == 499 and ex.outcome.retries == 0 and ex.outcome.backoff_seconds == 0


@pytest.mark.parametrize("protocol", ["autoroute", "uvicorn"])
def test_disconnect_while_a_stream_waits_for_its_first_token(environ: dict, upstream: FakeUpstream, tmp_path: Path, protocol: str) -> None:
    upstream.script("gpt-4.1", Fault.slow_first(5))
    with proxy(environ, fast(tmp_path), protocol) as (server, recorded, state):
        closed_at = _give_up_after(server.url, 0.3, {"model": "openai/gpt-4.1", "messages": MSG, "stream": True})
        rec = upstream.requests_for("gpt-4.1")[0]
        wait_for(lambda: rec.disconnected_at is not None)
        assert rec.disconnected_at - closed_at < 1.0
        wait_for(lambda: len(recorded) == 1)
        assert state.health.in_flight("openai") == 0
    assert recorded[0].status == 499 and len(upstream.requests_for("gpt-4.1")) == 1


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_leaving_while_its_request_is_accounted_does_not_cut_the_accounting(
    environ: dict, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """The last event (or the whole body) is out, accounting runs (a settle's round trip), and the
    client leaves right then: the disconnect watcher cancels the task, and the accounting must
    still reach its end (metrics, decision record), not stop after the key's settle."""
    finished: list[int] = []
    original = accounting.record

    async def slow_record(state: Any, ex: Any) -> None:
        await asyncio.sleep(0.4)  # the settle's round trip, during which the client leaves
        await original(state, ex)
        finished.append(ex.status)

    monkeypatch.setattr(accounting, "record", slow_record)
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        before = _requests_counted(state)
        with httpx.Client(timeout=5) as client:
            body = {"model": "openai/gpt-4.1", "messages": MSG, "stream": stream}
            with client.stream("POST", server.url + "/v1/chat/completions", json=body) as resp:
                assert resp.status_code == 200
                if stream:
                    for line in resp.iter_lines():
                        if line == "data: [DONE]":
                            break  # leave before the response's end (it comes after the accounting)
        wait_for(lambda: len(recorded) == 1)
        wait_for(lambda: finished != [], timeout=3.0)
        after = _requests_counted(state)
    assert finished == [200]
    assert after - before == 1


def _requests_counted(state: Any) -> float:
    """autoroute_requests_total over every label set."""
    return sum(
        s.value
        for fam in state.metrics.registry.collect()
        if fam.name == "autoroute_requests"
        for s in fam.samples
        if s.name.endswith("_total")
    )
