"""Per-policy routing tables (owns: what selection derives from a policy alone, computed once per policy object).

A `Policy` is immutable, so the capability rank of its models and, per model, the substitution
order (same tier, then more capable tiers nearest first, then less capable; ties by rank) depend
on the policy only, and a plan's fallbacks on the policy, the primary, the explicit fallbacks and
the set of capable models (selection keeps up to MAX_REMEMBERED of those). `index_of(policy)` builds them on the first request that needs them and keeps
them while the policy object lives (a weak reference drops them with it); the substitution order
of a model is filled in the first time a request needs it. Pure: no I/O, same policy, same tables.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from proxy.policy import Policy
from proxy.policy.registry import ModelSpec

MAX_REMEMBERED = 4096


class ModelRow(NamedTuple):
    """A model's fields that selection reads per request, as a plain tuple (pydantic attribute
    access goes through BaseModel.__getattr__'s slow slot; a tuple unpacks in one step)."""

    spec: ModelSpec
    id: str
    context_window: int
    max_output_tokens: int | None
    supports_tools: bool
    supports_vision: bool
    local: bool


class PolicyIndex(NamedTuple):
    rank: dict[str, int]  # model id -> capability rank (read-only)
    specs: tuple[ModelSpec, ...]  # policy.models.values(), in order
    rows: tuple[ModelRow, ...]  # the same models, as ModelRows
    cloud: tuple[ModelSpec, ...]  # the models that are not local, in order (the dial's pool when every model is capable)
    substitutes: dict[str, tuple[ModelSpec, ...]]  # model id -> its substitution order (filled on demand)
    # selection's fallbacks by (primary, cloud fallback, matrix fallback, local only, capable set); bounded
    fallbacks: dict[tuple[object, ...], tuple[str, ...]]

    def remember(self, key: tuple[object, ...], fallbacks: tuple[str, ...]) -> None:
        if len(self.fallbacks) >= MAX_REMEMBERED:  # more distinct capable sets than any policy has: start over
            self.fallbacks.clear()
        self.fallbacks[key] = fallbacks

    def order_from(self, pick: ModelSpec) -> tuple[ModelSpec, ...]:
        """Substitutes for `pick` among the policy's models (see `order_from`)."""
        order = self.substitutes.get(pick.id)
        if order is None or order[0] is not pick:  # [0]: pick itself, so a spec of another policy never matches
            order = (pick, *order_from(pick, self.specs, self.rank))
            self.substitutes[pick.id] = order
        return order[1:]


_INDEXES: dict[int, tuple[weakref.ref[Policy], PolicyIndex]] = {}  # id(policy) -> (the policy, its index)


def index_of(policy: Policy) -> PolicyIndex:
    """The policy's tables, built once per policy object."""
    hit = _INDEXES.get(id(policy))
    if hit is not None and hit[0]() is policy:
        return hit[1]
    specs = tuple(policy.models.values())
    rows = tuple(ModelRow(m, m.id, m.context_window, m.max_output_tokens, m.supports_tools, m.supports_vision, m.local) for m in specs)
    index = PolicyIndex(ranked(policy), specs, rows, tuple(m for m in specs if not m.local), {}, {})
    key = id(policy)
    _INDEXES[key] = (weakref.ref(policy, lambda _: _INDEXES.pop(key, None)), index)
    return index


def ranked(policy: Policy) -> dict[str, int]:
    """Model id -> capability rank (the policy's capability_order, then the rest)."""
    order = policy.routing.capability_order
    rank = {m: i for i, m in enumerate(order)}
    if len(rank) >= len(policy.models) and all(m in rank for m in policy.models):
        return rank
    rest = sorted((m for m in policy.models.values() if m.id not in rank), key=lambda m: (m.tier, -m.quality_index, m.id))
    for i, m in enumerate(rest):
        rank[m.id] = len(order) + i
    return rank


def order_from(pick: ModelSpec, models: Iterable[ModelSpec], rank: Mapping[str, int]) -> list[ModelSpec]:
    """Substitutes for `pick`: same tier, then more capable tiers (nearest first), then less capable."""
    tier = pick.tier
    keyed = [
        (0 if m.tier == tier else 1 if m.tier < tier else 2, abs(m.tier - tier), rank[m.id], m.id, m) for m in models if m.id != pick.id
    ]
    keyed.sort()  # ids are unique, so the ModelSpec in the last place is never compared
    return [k[4] for k in keyed]
