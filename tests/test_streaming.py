"""Streams: cancellation reaches the upstream, and the request is accounted once."""

from __future__ import annotations

import time

import httpx

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import serving


def test_client_disconnect_cancels_upstream(environ: dict, upstream: FakeUpstream) -> None:
    app = create_app(make_settings(), environ=environ)
    recorded = []
    state = app.state.autoroute
    original = state.record

    async def spy(ex):  # type: ignore[no-untyped-def]
        recorded.append(ex)
        await original(ex)

    state.record = spy
    upstream.script("gpt-4.1", Fault.slow(0.5))  # 0.5 s between chunks: a long stream
    with serving(app) as server:
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            timeout=10,
            json={"model": "openai/gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        ) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
            closed_at = time.monotonic()
        # the client is gone; the upstream must see its connection closed within 1 s
        deadline = closed_at + 3
        rec = upstream.requests_for("gpt-4.1")[-1]
        while rec.disconnected_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rec.disconnected_at is not None, "upstream never saw the disconnect"
        assert rec.disconnected_at - closed_at < 1.0
        assert not rec.completed
        while not recorded and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(recorded) == 1
    ex = recorded[0]
    assert ex.status == 499 and ex.error_code == "client_disconnected"
    assert ex.usage is not None and ex.usage.counted  # the provider never sent usage: counted
    assert ex.usage.prompt_tokens > 0


def test_slow_first_token_still_streams(client, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    upstream.script("gpt-4.1", Fault.slow_first(0.3))
    started = time.monotonic()
    chunks = list(client.chat.completions.create(model="openai/gpt-4.1", messages=[{"role": "user", "content": "x"}], stream=True))
    assert time.monotonic() - started >= 0.3
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the fake upstream."
