"""proxy/routing/index.py: the per-policy tables selection keeps (rank, substitution order, model
rows, remembered fallbacks) give exactly what recomputing them per request gives."""

from __future__ import annotations

import itertools

from proxy.policy import Policy
from proxy.routing import index as index_mod
from proxy.routing.classify import classify
from proxy.routing.index import index_of, order_from, ranked
from proxy.routing.learned import router_for
from proxy.routing.options import RouteOptions
from proxy.routing.selection import select
from tests.support.selecting import policy  # noqa: F401  (fixture)

BODIES = [
    {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
    {"model": "auto", "messages": [{"role": "user", "content": "Write a Python function that merges two sorted lists."}]},
    {"model": "auto", "messages": [{"role": "user", "content": "Prove that there are infinitely many primes, step by step."}]},
]


def test_tables_equal_a_fresh_computation(policy: Policy) -> None:
    index = index_of(policy)
    assert index_of(policy) is index  # built once per policy object
    assert index.rank == ranked(policy)
    assert index.specs == tuple(policy.models.values())
    for row, spec in zip(index.rows, index.specs, strict=True):
        assert row == (spec, spec.id, spec.context_window, spec.max_output_tokens, spec.supports_tools, spec.supports_vision, spec.local)
    for spec in index.specs:
        assert index.order_from(spec) == tuple(order_from(spec, policy.models.values(), index.rank))
        assert index.order_from(spec) == tuple(order_from(spec, policy.models.values(), index.rank))  # the kept one


def test_remembered_fallbacks_equal_recomputed_ones_for_every_available_set(policy: Policy) -> None:
    """The fallbacks depend on the capable set: a plan made after others (remembered) equals one made cold."""
    router = router_for(policy)
    ids = sorted(policy.models)
    subsets = [frozenset(ids)] + [frozenset(ids) - set(drop) for drop in itertools.combinations(ids, 2)][:40]
    classified = [classify(body, router) for body in BODIES]
    warm = []
    for available in subsets:
        for c in classified:
            try:
                warm.append(select(c, policy, RouteOptions(), available))
            except Exception as exc:
                warm.append(type(exc).__name__)
    cold = []
    for available in subsets:
        for c in classified:
            index_of(policy).fallbacks.clear()
            try:
                cold.append(select(c, policy, RouteOptions(), available))
            except Exception as exc:
                cold.append(type(exc).__name__)
    assert warm == cold
    assert len({p.fallbacks for p in warm if not isinstance(p, str)}) > 1  # the subsets did move the fallbacks


def test_remembered_fallbacks_are_bounded(policy: Policy, monkeypatch) -> None:
    monkeypatch.setattr(index_mod, "MAX_REMEMBERED", 3)
    index = index_of(policy)
    index.fallbacks.clear()
    for i in range(10):
        index.remember(("key", i), ())
        assert len(index.fallbacks) <= 3
