"""The request's deadline, per-deployment capacity and the attempt cap, on a Dispatcher
built directly on a policy (real HTTP to the fake upstream)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from proxy.dispatch.attempts import Outcome
from proxy.dispatch.dispatcher import Dispatcher
from proxy.errors import UpstreamFailed, UpstreamTimeout
from proxy.policy import Policy
from tests.support.dispatching import BODY, MODEL, deployment, load, make_dispatcher, nano_policy, upstream_name
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import ThreadedServer


@pytest.fixture
def two_deps(tmp_path: Path, environ: dict, upstream_server: ThreadedServer):  # type: ignore[no-untyped-def]
    def build(d1: dict | None = None, d2: dict | None = None, max_latency_s: float | None = None, **dispatch) -> Policy:  # type: ignore[no-untyped-def]
        deps = [
            deployment("d1", upstream_server.url, priority=1, **(d1 or {})),
            deployment("d2", upstream_server.url, priority=2, **(d2 or {})),
        ]
        policy = load(nano_policy(tmp_path, upstream_server.url, deps, **dispatch), environ)
        if max_latency_s is not None:
            policy = dataclasses.replace(policy, routing=policy.routing.model_copy(update={"max_latency_s": max_latency_s}))
        return policy

    return build


async def _complete(d: Dispatcher, policy: Policy, outcome: Outcome, **kw) -> object:  # type: ignore[no-untyped-def]
    return await d.complete([policy.models[MODEL]], dict(BODY), outcome, **kw)


async def test_max_latency_bounds_a_hanging_attempt(two_deps, environ: dict, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    upstream.script(upstream_name("d1"), Fault.hang(5))
    policy = two_deps(max_latency_s=0.5)
    d = make_dispatcher(policy, environ)
    outcome = Outcome()
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout, match="deadline"):
            await _complete(d, policy, outcome)
    finally:
        await d.upstreams.aclose()
    assert 0.45 < time.monotonic() - started < 0.9
    assert outcome.deadline_hit and len(outcome.attempts) == 1  # no time left for d2
    rec = upstream.requests_for(upstream_name("d1"))[0]
    for _ in range(100):
        if rec.disconnected_at is not None:
            break
        await asyncio.sleep(0.01)
    assert rec.disconnected_at is not None  # the cut attempt's connection was closed
    assert not d.health.is_open("d1", MODEL) and d.health.snapshot()[-2]["recent_failures"] == 0


async def test_deadline_bounds_backoff_then_moves_on(two_deps, environ: dict, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    # d1 asks for a 5 s wait; the deadline has 1 s: no sleeping past it, d2 answers at once
    upstream.script(upstream_name("d1"), Fault.status(429, retry_after=5))
    policy = two_deps(max_latency_s=1.0)
    d = make_dispatcher(policy, environ)
    outcome = Outcome()
    started = time.monotonic()
    try:
        await _complete(d, policy, outcome)
    finally:
        await d.upstreams.aclose()
    assert time.monotonic() - started < 0.5
    assert [a.deployment for a in outcome.attempts] == ["d1", "d2"] and outcome.backoff_seconds == 0
    # an explicit deadline argument wins over max_latency_s
    upstream.script(upstream_name("d1"), Fault.hang(5))
    d = make_dispatcher(two_deps(max_latency_s=30), environ)
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await _complete(d, policy, Outcome(), deadline=time.monotonic() + 0.3)
        assert time.monotonic() - started < 0.7
    finally:
        await d.upstreams.aclose()


async def test_full_deployment_is_skipped_as_capacity(two_deps, environ: dict, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    upstream.script(upstream_name("d1"), Fault.hang(0.5))
    policy = two_deps(d1={"max_concurrent": 1})
    d = make_dispatcher(policy, environ)
    try:
        slow = asyncio.create_task(_complete(d, policy, Outcome()))
        while d.health.in_flight("d1") == 0:
            await asyncio.sleep(0.005)
        outcome = Outcome()
        await _complete(d, policy, outcome)
        assert [(a.deployment, a.error.kind if a.error else None) for a in outcome.attempts] == [("d1", "capacity"), ("d2", None)]
        assert outcome.attempts[0].seconds == 0 and "max_concurrent 1" in outcome.attempts[0].error.message
        await slow
        assert d.health.in_flight("d1") == 0
        outcome = Outcome()
        await _complete(d, policy, outcome)  # the lease came back: d1 is usable again
        assert [a.deployment for a in outcome.attempts] == ["d1"]
    finally:
        await d.upstreams.aclose()
    assert len(upstream.requests_for(upstream_name("d1"))) == 2


async def test_everything_at_capacity_is_503(two_deps, environ: dict, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    policy = two_deps(d1={"rpm": 1}, d2={"rpm": 1})
    d = make_dispatcher(policy, environ)
    try:
        await _complete(d, policy, Outcome())
        await _complete(d, policy, Outcome())
        with pytest.raises(UpstreamFailed) as info:
            await _complete(d, policy, Outcome())
    finally:
        await d.upstreams.aclose()
    assert info.value.status == 503 and info.value.code == "deployments_at_capacity"
    assert info.value.headers["retry-after"] == "1"
    assert [a["kind"] for a in info.value.attempts] == ["capacity", "capacity"]
    assert len(upstream.received) == 2


async def test_max_attempts_caps_the_whole_request(two_deps, environ: dict, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    for dep in ("d1", "d2"):
        upstream.script(upstream_name(dep), *[Fault.status(500)] * 10)
    policy = two_deps(max_attempts=4, retries=5)
    d = make_dispatcher(policy, environ)
    outcome = Outcome()
    try:
        with pytest.raises(UpstreamFailed):
            await _complete(d, policy, outcome)
    finally:
        await d.upstreams.aclose()
    assert len(upstream.received) == 4 and len(outcome.attempts) == 4


async def test_observer_hooks(two_deps, environ: dict, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    calls: list[tuple] = []

    class Spy:
        def observe_upstream_attempt(self, **kw) -> None:  # type: ignore[no-untyped-def]
            calls.append(("attempt", kw["deployment"], kw["error"]))

        def retried(self, provider: str) -> None:
            calls.append(("retried", provider))

        def fell_back(self, from_model: str, to_model: str) -> None:
            calls.append(("fell_back", from_model, to_model))

        def set_cooldown(self, deployment: str, state: str) -> None:
            calls.append(("cooldown", deployment, state))

    for dep in ("d1", "d2"):
        upstream.script(upstream_name(dep), *[Fault.status(500)] * 3)
    policy = two_deps(retries=2, last_resort="openai/gpt-4.1")
    d = make_dispatcher(policy, environ, observer=Spy())
    try:
        # the plan carries the fallback (the planning step appends dispatch.last_resort)
        await d.complete([policy.models[MODEL], policy.models["openai/gpt-4.1"]], dict(BODY), Outcome())
    finally:
        await d.upstreams.aclose()
    per_deployment = [
        ("attempt", "{d}", "server_error"),
        ("retried", "openai_compatible"),
        ("attempt", "{d}", "server_error"),
        ("retried", "openai_compatible"),
        ("cooldown", "{d}", "open"),  # the third failure opens its breaker
        ("attempt", "{d}", "server_error"),
    ]
    expected = [tuple(x.format(d=d) for x in call) for d in ("d1", "d2") for call in per_deployment]
    assert calls == expected + [("fell_back", MODEL, "openai/gpt-4.1"), ("attempt", "openai", None)]
