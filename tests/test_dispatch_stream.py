"""Streams under faults: fallback only before the first byte, time-to-first-token timeout,
a cut after the first byte reported in-band, and the accounting of each."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.support.dispatching import MSG, fast, proxy, sdk, wait_for
from tests.support.fake_upstream import FakeUpstream, Fault

TEXT = "Hello from the fake upstream."


def _text(chunks: list) -> str:  # type: ignore[type-arg]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("after_chunks", [0, 1])
def test_cut_before_the_first_content_is_retried_invisibly(
    environ: dict, upstream: FakeUpstream, tmp_path: Path, after_chunks: int
) -> None:
    # 0: nothing at all; 1: only the role chunk (no content yet): no byte has reached the client
    upstream.script("gpt-4.1", Fault.cut(after_chunks=after_chunks))
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        chunks = list(sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG, stream=True))
        wait_for(lambda: len(recorded) == 1)
    assert _text(chunks) == TEXT
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1  # no duplicated prelude
    assert len(upstream.requests_for("gpt-4.1")) == 2
    (ex,) = recorded
    assert ex.status == 200 and ex.outcome.retries == 1
    assert ex.outcome.attempts[0].error.kind == "stream_cut"
    assert ex.usage is not None and not ex.usage.counted and ex.usage.completion_tokens == 5
    model = state.policy.models["openai/gpt-4.1"]
    assert ex.cost_usd == pytest.approx(model.cost_usd(ex.usage.prompt_tokens, 5))
    assert state.health.in_flight("openai") == 0


def test_cut_after_the_first_byte_is_reported_in_band_and_accounted(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.cut(after_chunks=3))
    with proxy(environ, fast(tmp_path, dispatch={"last_resort": "openai/gpt-4.1-nano"})) as (server, recorded, state):
        stream = sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG, stream=True)
        got = []
        with pytest.raises(openai.APIError, match="mid-stream"):
            for chunk in stream:
                got.append(chunk)
        wait_for(lambda: len(recorded) == 1)
        snap = {d["id"]: d for d in state.health.snapshot()}
    assert _text(got) and TEXT.startswith(_text(got)) and _text(got) != TEXT
    assert len(upstream.requests_for("gpt-4.1")) == 1 and not upstream.requests_for("gpt-4.1-nano")  # too late
    (ex,) = recorded
    assert ex.status == 502 and ex.error_code == "stream_cut"
    assert ex.usage is not None and ex.usage.counted  # no usage chunk: counted from the text sent
    assert ex.usage.completion_tokens == (len(_text(got)) + 3) // 4
    assert ex.outcome.attempts[0].error.kind == "stream_cut"
    assert snap["openai"]["recent_failures"] == 1 and snap["openai"]["in_flight"] == 0


def test_slow_first_token_times_out_and_falls_back_before_the_first_byte(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.slow_first(3))
    policy = fast(tmp_path, deployments={"openai": {"timeouts": {"connect_s": 1, "read_s": 60, "first_token_s": 0.3}}})
    with proxy(environ, policy) as (server, recorded, _state):
        started = time.monotonic()
        chunks = list(sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG, stream=True))
        assert time.monotonic() - started < 1.5
        wait_for(lambda: len(recorded) == 1)
    assert _text(chunks) == TEXT
    slow, fine = upstream.requests_for("gpt-4.1")
    wait_for(lambda: slow.disconnected_at is not None)  # the slow stream was closed, not left running
    assert slow.disconnected_at - slow.at < 0.8 and not slow.completed and fine.completed
    (ex,) = recorded
    first = ex.outcome.attempts[0]
    assert first.error.kind == "first_token_timeout" and 0.25 < first.seconds < 0.8
    assert ex.outcome.attempts[1].ttft_s is not None and ex.outcome.attempts[1].ttft_s < 0.5


def test_slow_first_token_within_the_limit_streams_normally(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.slow_first(0.3))
    policy = fast(tmp_path, deployments={"openai": {"timeouts": {"connect_s": 1, "read_s": 60, "first_token_s": 1.0}}})
    with proxy(environ, policy) as (server, recorded, _state):
        chunks = list(sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG, stream=True))
        wait_for(lambda: len(recorded) == 1)
    assert _text(chunks) == TEXT and len(upstream.requests_for("gpt-4.1")) == 1
    assert recorded[0].outcome.attempts[0].ttft_s >= 0.3


def test_stream_503_then_success(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script("gpt-4.1", Fault.status(503))
    with proxy(environ, fast(tmp_path)) as (server, recorded, _state):
        resp = sdk(server.url).chat.completions.with_raw_response.create(model="openai/gpt-4.1", messages=MSG, stream=True)
        assert resp.headers["x-autoroute-attempts"] == "openai/gpt-4.1@openai,openai/gpt-4.1@openai"
        assert _text(list(resp.parse())) == TEXT
        wait_for(lambda: len(recorded) == 1)
    assert recorded[0].status == 200 and recorded[0].outcome.upstream_seconds > 0


def _requests_total(state, outcome: str, status: str) -> float:  # type: ignore[no-untyped-def]
    samples = [
        s.value
        for metric in state.metrics.registry.collect()
        if metric.name == "autoroute_requests"
        for s in metric.samples
        if s.name == "autoroute_requests_total" and s.labels.get("outcome") == outcome and s.labels.get("status") == status
    ]
    return sum(samples)


def test_a_stream_cut_mid_way_is_counted_as_an_error_outcome(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    # Regression (issue 10): relay.py set the exchange's fields by hand, so the cut stream was
    # counted autoroute_requests_total{outcome="ok",status="5xx"}. Fails on the old code.
    upstream.script("gpt-4.1", Fault.cut(after_chunks=3))
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        with pytest.raises(openai.APIError, match="mid-stream"):
            list(sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG, stream=True))
        wait_for(lambda: sum(_requests_total(state, o, "5xx") for o in ("ok", "upstream_error", "internal_error")) >= 1)
        assert _requests_total(state, "upstream_error", "5xx") == 1
        assert _requests_total(state, "ok", "5xx") == 0 and _requests_total(state, "ok", "2xx") == 0
    (ex,) = recorded
    assert ex.state == "done" and ex.status == 502 and ex.error_type == "upstream_error" and ex.error_code == "stream_cut"


def test_a_bad_response_is_counted_under_its_own_kind(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    # Regression (issue 10): dispatch renamed bad_response to `malformed`, which the metric
    # does not know, so it was counted kind="other". Fails on the old code.
    upstream.script("gpt-4.1", Fault.malformed())
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        sdk(server.url).chat.completions.create(model="openai/gpt-4.1", messages=MSG)
        registry = state.metrics.registry
        wait_for(lambda: sum(s.value for m in registry.collect() if m.name == "autoroute_upstream_errors" for s in m.samples) >= 1)
        assert registry.get_sample_value("autoroute_upstream_errors_total", {"provider": "openai", "kind": "bad_response"}) == 1
        assert not registry.get_sample_value("autoroute_upstream_errors_total", {"provider": "openai", "kind": "other"})
