"""Deployments: precomputed table, strategies (unit and over real HTTP), circuit breakers,
the in-process capacity gate, and available_models()."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path

import pytest

from proxy.dispatch.attempts import Outcome
from proxy.dispatch.deployments import Balancer, DeploymentTable, available_models
from proxy.dispatch.gate import UNLIMITED, LocalGate
from proxy.dispatch.health import CLOSED, HALF_OPEN, OPEN, PASS, PROBE, DeploymentHealth
from proxy.policy import Policy
from proxy.policy.dispatch import Cooldown
from tests.support.dispatching import BODY, MODEL, deployment, load, make_dispatcher, nano_policy, upstream_name
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import ThreadedServer

DEPS = ("d1", "d2", "d3")


@pytest.fixture
def nano3(tmp_path: Path, environ: dict, upstream_server: ThreadedServer):  # type: ignore[no-untyped-def]
    """A policy where gpt-4.1-nano has three deployments d1, d2, d3 on the fake upstream."""
    counter = itertools.count()

    def build(strategy: str = "failover", weights=(1, 1, 1), priorities=(1, 2, 3), **dispatch) -> Policy:  # type: ignore[no-untyped-def]
        deps = [
            deployment(d, upstream_server.url, weight=w, priority=p, max_concurrent=10)
            for d, w, p in zip(DEPS, weights, priorities, strict=True)
        ]
        path = nano_policy(tmp_path / str(next(counter)), upstream_server.url, deps, strategy=strategy, **dispatch)
        return load(path, environ)

    return build


# ── table and balancer (pure) ─────────────────────────────────────────────────
def test_table_precomputes_usable_deployments_in_priority_order(nano3) -> None:  # type: ignore[no-untyped-def]
    policy = nano3(priorities=(3, 1, 2))
    table = DeploymentTable(policy, {"OPENAI_API_KEY": "k"})
    assert [d.id for d in table.for_model(MODEL)] == ["d2", "d3", "d1"]
    assert table.serves["d1"] == (MODEL,)
    assert MODEL not in table.serves["openai"]
    # no key for the providers: their models are unusable, ours (no key needed) stay
    assert "anthropic/claude-sonnet-4" not in table.usable_models
    assert MODEL in table.usable_models and "openai/gpt-4.1" in table.usable_models


def _firsts(policy: Policy, n: int = 1000, load=lambda _: 0) -> Counter[str]:  # type: ignore[no-untyped-def]
    balancer = Balancer(DeploymentTable(policy, {}))
    return Counter(balancer.order(MODEL, load)[0].id for _ in range(n))


def test_failover_always_first_by_priority(nano3) -> None:  # type: ignore[no-untyped-def]
    assert _firsts(nano3("failover", priorities=(2, 1, 3))) == {"d2": 1000}


def test_round_robin_is_even(nano3) -> None:  # type: ignore[no-untyped-def]
    counts = _firsts(nano3("round_robin"))
    assert all(abs(counts[d] / 1000 - 1 / 3) <= 0.01 for d in DEPS), counts
    # the fallbacks rotate too: every order is a rotation of the priority order
    balancer = Balancer(DeploymentTable(nano3("round_robin"), {}))
    assert [[d.id for d in balancer.order(MODEL)] for _ in range(3)] == [["d1", "d2", "d3"], ["d2", "d3", "d1"], ["d3", "d1", "d2"]]


def test_weighted_follows_weights_interleaved(nano3) -> None:  # type: ignore[no-untyped-def]
    policy = nano3("weighted", weights=(5, 3, 2))
    counts = _firsts(policy)
    for d, w in zip(DEPS, (0.5, 0.3, 0.2), strict=True):
        assert abs(counts[d] / 1000 - w) <= 0.05 * w, counts
    balancer = Balancer(DeploymentTable(policy, {}))
    seq = [balancer.order(MODEL)[0].id for _ in range(10)]
    assert max(len(list(g)) for _, g in itertools.groupby(seq)) <= 2, seq  # smooth, not bursts


def test_least_loaded_prefers_least_loaded(nano3) -> None:  # type: ignore[no-untyped-def]
    policy = nano3("least_loaded")
    balancer = Balancer(DeploymentTable(policy, {}))
    loads = {"d1": 5, "d2": 1, "d3": 3}
    assert [d.id for d in balancer.order(MODEL, loads.__getitem__)] == ["d2", "d3", "d1"]
    # idle deployments share the traffic (ties rotate) instead of piling onto the first
    assert _firsts(policy, 999) == {"d1": 333, "d2": 333, "d3": 333}


# ── circuit breaker ───────────────────────────────────────────────────────────
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _health(policy: Policy, clock: Clock, events: list | None = None, **cfg) -> DeploymentHealth:  # type: ignore[no-untyped-def]
    cooldown = Cooldown(**{"failures": 3, "window_s": 10, "cooldown_s": 5, **cfg})
    on_change = (lambda dep, state: events.append((dep, state))) if events is not None else None
    return DeploymentHealth(DeploymentTable(policy, {}), cooldown, clock=clock, on_change=on_change)


def test_breaker_opens_cools_down_probes_once_and_closes(nano3) -> None:  # type: ignore[no-untyped-def]
    clock, events = Clock(), []
    health = _health(nano3(), clock, events)
    for _ in range(2):
        health.failure("d1", MODEL, health.allow("d1", MODEL), "d1 answered 500")
    assert health.allow("d1", MODEL) is PASS  # two failures: still closed
    health.failure("d1", MODEL, PASS, "d1 answered 500")
    assert health.allow("d1", MODEL) is None and health.is_open("d1", MODEL)
    assert health.allow("d2", MODEL) is PASS  # other deployments are unaffected
    clock.now += 4.9
    assert health.allow("d1", MODEL) is None
    clock.now += 0.2  # cooldown over: exactly one probe
    assert health.allow("d1", MODEL) is PROBE
    assert health.allow("d1", MODEL) is None
    health.success("d1", MODEL, PROBE)
    assert health.allow("d1", MODEL) is PASS
    assert events == [("d1", OPEN), ("d1", HALF_OPEN), ("d1", CLOSED)]
    # the failures that opened it are forgotten: one more does not re-open it
    health.failure("d1", MODEL, PASS, "again")
    assert health.allow("d1", MODEL) is PASS


def test_failed_probe_reopens_and_neutral_probe_frees_the_slot(nano3) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    health = _health(nano3(), clock)
    for _ in range(3):
        health.failure("d1", MODEL, PASS, "refused")
    clock.now += 6
    assert health.allow("d1", MODEL) is PROBE
    health.neutral("d1", MODEL, PROBE)  # e.g. the probe request was a 400, or cancelled
    assert health.allow("d1", MODEL) is PROBE
    health.failure("d1", MODEL, PROBE, "refused")
    assert health.allow("d1", MODEL) is None  # re-opened for a fresh cooldown
    clock.now += 4
    assert health.allow("d1", MODEL) is None
    clock.now += 1.5
    assert health.allow("d1", MODEL) is PROBE
    snap = {d["id"]: d for d in health.snapshot()}["d1"]
    assert snap["state"] == HALF_OPEN and snap["models"][0]["times_opened"] == 2
    assert snap["models"][0]["last_error"] == "refused"


def test_breaker_window_and_failure_ratio(nano3) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    health = _health(nano3(), clock)
    for _ in range(3):  # failures spread wider than window_s never add up
        health.failure("d1", MODEL, PASS, "500")
        clock.now += 6
    assert health.allow("d1", MODEL) is PASS
    # a busy deployment with a few errors stays in use: 3 failures among 20 attempts
    for _ in range(17):
        health.success("d2", MODEL, PASS)
    for _ in range(3):
        health.failure("d2", MODEL, PASS, "500")
    assert health.allow("d2", MODEL) is PASS
    for _ in range(14):  # ... until failures are at least half of the window
        health.failure("d2", MODEL, PASS, "500")
    assert health.allow("d2", MODEL) is None


def test_available_models_drops_a_model_whose_deployments_are_all_open(nano3) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    policy = nano3()
    health = _health(policy, clock)
    everything = health.available_models()
    assert MODEL in everything and everything == available_models(policy, {})
    for dep in ("d1", "d2"):
        for _ in range(3):
            health.failure(dep, MODEL, PASS, "500")
    assert MODEL in health.available_models()  # d3 still serves it
    for _ in range(3):
        health.failure("d3", MODEL, PASS, "500")
    assert health.available_models() == everything - {MODEL}
    clock.now += 5  # cooled down: available again, so a request can probe it
    assert MODEL in health.available_models()


# ── capacity gate ─────────────────────────────────────────────────────────────
async def test_local_gate_max_concurrent_rpm_tpm(nano3) -> None:  # type: ignore[no-untyped-def]
    policy = nano3()
    model = policy.models[MODEL]
    d1 = policy.registry.deployments[-3].model_copy(update={"max_concurrent": 2, "rpm": None, "tpm": None})
    clock = Clock()
    gate = LocalGate(clock)
    a, b = await gate.acquire(d1, model, 0), await gate.acquire(d1, model, 0)
    assert a is not None and b is not None and await gate.acquire(d1, model, 0) is None
    await gate.release(a, None)
    assert await gate.acquire(d1, model, 0) is not None

    d2 = d1.model_copy(update={"id": "d2", "max_concurrent": None, "rpm": 3})
    leases = [await gate.acquire(d2, model, 0) for _ in range(4)]
    assert leases[3] is None and all(leases[:3])
    for lease in leases[:3]:
        await gate.release(lease, None)
    assert await gate.acquire(d2, model, 0) is None  # rpm counts admissions, not concurrency
    clock.now += 60.1
    assert await gate.acquire(d2, model, 0) is not None

    d3 = d1.model_copy(update={"id": "d3", "max_concurrent": None, "tpm": 100})
    first = await gate.acquire(d3, model, 60)
    assert first is not None and await gate.acquire(d3, model, 60) is None
    await gate.release(first, 10)  # it used 10 tokens, not 60
    assert await gate.acquire(d3, model, 60) is not None
    assert gate.usage("d3")["tokens_last_minute"] == 70
    clock.now += 61
    assert gate.usage("d3")["tokens_last_minute"] == 0
    big = await gate.acquire(d3, model, 500)  # bigger than the whole tpm: passes on an empty window
    assert big is not None

    unlimited = policy.registry.deployments[0]
    assert await gate.acquire(unlimited, model, 10**9) is UNLIMITED


# ── strategies over real HTTP (1,000 requests each) ───────────────────────────
async def _run(policy: Policy, environ: dict, n: int, concurrency: int = 1) -> None:
    dispatcher = make_dispatcher(policy, environ)
    model = policy.models[MODEL]
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await dispatcher.complete([model], dict(BODY), Outcome())

    try:
        await asyncio.gather(*(one() for _ in range(n)))
    finally:
        await dispatcher.upstreams.aclose()


def _shares(upstream: FakeUpstream) -> dict[str, float]:
    counts = {d: len(upstream.requests_for(upstream_name(d))) for d in DEPS}
    total = sum(counts.values())
    return {d: c / total for d, c in counts.items()}


@pytest.mark.parametrize(
    "strategy,weights,expected,tolerance",
    [
        ("failover", (1, 1, 1), (1.0, 0.0, 0.0), 0.0),
        ("round_robin", (1, 1, 1), (1 / 3, 1 / 3, 1 / 3), 0.01),
        ("weighted", (5, 3, 2), (0.5, 0.3, 0.2), 0.05),
    ],
)
async def test_strategy_distribution_over_http(
    nano3,
    environ: dict,
    upstream: FakeUpstream,
    strategy: str,  # type: ignore[no-untyped-def]
    weights: tuple,
    expected: tuple,
    tolerance: float,
) -> None:
    await _run(nano3(strategy, weights=weights), environ, 1000, concurrency=4)
    shares = _shares(upstream)
    print(f"\n{strategy} {weights}: " + ", ".join(f"{d} {shares[d]:.3f}" for d in DEPS))
    assert len(upstream.received) == 1000
    for d, want in zip(DEPS, expected, strict=True):
        assert abs(shares[d] - want) <= tolerance * max(want, 1e-9) + 1e-9, shares


async def test_least_loaded_steers_away_from_a_slow_deployment(nano3, environ: dict, upstream: FakeUpstream) -> None:
    upstream.script(upstream_name("d1"), *[Fault.hang(0.2)] * 400)  # d1 is slow: its requests pile up
    await _run(nano3("round_robin"), environ, 150, concurrency=6)
    rr = _shares(upstream)
    upstream.reset()
    upstream.script(upstream_name("d1"), *[Fault.hang(0.2)] * 400)
    await _run(nano3("least_loaded"), environ, 150, concurrency=6)
    ll = _shares(upstream)
    print(f"\nslow d1 share: round_robin {rr['d1']:.3f}, least_loaded {ll['d1']:.3f}")
    assert abs(rr["d1"] - 1 / 3) <= 0.01
    assert ll["d1"] < 0.15
