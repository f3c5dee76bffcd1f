"""Per-category offsets of the quality target (build time): the same adequacy for less money.

One global quality target spends the same probability margin on every request, but an
adequacy point costs very different amounts by category: a long document sent to a frontier
model costs tens of times a short question. Given out-of-fold adequacy probabilities of the
training rows (their calibrated P(tier t adequate), from models that never saw the row), this
chooses one threshold per predicted category that keeps the training rows' adequate share at
least what the global target `target` gives, for the least cost (a Lagrangian sweep: each
category takes the threshold minimising cost - lambda * adequate rows, lambda the smallest that
keeps the adequacy), and no category's adequate share drops below FLOOR (or its share at the
global target when that is lower): moving money between categories must not leave one kind of
request, long documents above all, often below the tier it needs. The artifact stores each threshold as an offset from `target` (and `target`
as `meta.offsets_at_target`); the router turns it into the category's slack, its share of the
allowed inadequacy 1 - target, so the dial (`quality_target`) still moves every category together
and every category's threshold reaches 1 as the target does (`learned.slack_of`, `dial.threshold`).

Costs come from the real selection (`proxy.routing.selection.select`) on each row with only
tiers 1..k adequate, k = 1..4, so the registry, the prices and every hard constraint count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

GRID = tuple(round(0.40 + 0.01 * i, 2) for i in range(60))  # thresholds tried per category: 0.40 .. 0.99
LAMBDAS = 400
FLOOR = 0.90  # no category's adequate share may fall below this (or below its share at the global target, if lower)


def tier_costs(rows: Sequence[Mapping[str, Any]], heuristics: Sequence[Any], policy: Any) -> tuple[Any, Any]:
    """(cost, tier): arrays n x 5; column k = the routed model's cost (USD) and tier when tiers 1..k are adequate."""
    import numpy as np

    from proxy.routing.options import RouteOptions
    from proxy.routing.selection import select
    from proxy.training.curve import OUTPUT_TOKENS

    available = frozenset(policy.models)
    options = RouteOptions(quality_target=0.5, quality_target_source="calibrate")
    cost = np.zeros((len(rows), 5))
    tier = np.ones((len(rows), 5), dtype=int)
    for i, c in enumerate(heuristics):
        for k in range(1, 5):
            plan = select(replace(c, adequacy=(1.0,) * k + (0.0,) * (4 - k)), policy, options, available)
            spec = policy.models[plan.primary]
            cost[i, k] = spec.cost_usd(c.estimated_input_tokens, OUTPUT_TOKENS)
            tier[i, k] = spec.tier
    return cost, tier


def _routed(probs: Any, threshold: Any, cost: Any, tier: Any, labels: Any) -> tuple[Any, Any]:
    """(cost, adequate 0/1) per row when each row's threshold is `threshold` (scalar or array)."""
    import numpy as np

    meets = probs >= np.reshape(threshold, (-1, 1))
    meets[:, 0] = True
    k = meets.sum(axis=1)
    rows = np.arange(len(probs))
    return cost[rows, k], (tier[rows, k] <= labels).astype(float)


def choose_offsets(probs: Any, predicted: Sequence[str], labels: Any, cost: Any, tier: Any, target: float) -> dict[str, float]:
    """{category: threshold - target} keeping sum(adequate) >= that of `target` for all, at the least cost."""
    import numpy as np

    base_cost, base_ok = _routed(probs, target, cost, tier, labels)
    need = float(base_ok.sum())
    pc = np.asarray(predicted)
    cats = sorted(set(predicted))
    table: dict[str, list[tuple[float, float, float]]] = {c: [] for c in cats}
    floor = {c: min(FLOOR * float((pc == c).sum()), float(base_ok[pc == c].sum())) for c in cats}
    for g in GRID:
        c_cost, c_ok = _routed(probs, g, cost, tier, labels)
        for c in cats:
            m = pc == c
            ok = float(c_ok[m].sum())
            if ok >= floor[c] - 1e-9:
                table[c].append((g, float(c_cost[m].sum()), ok))
    best: tuple[float, dict[str, float]] | None = None
    scale = float(base_cost.sum()) / max(need, 1.0)  # lambda: money per adequate row, around the mean cost of a row
    for lam in (0.0, *(scale * np.geomspace(1e-4, 1e4, LAMBDAS))):
        choice = {c: min(table[c], key=lambda r: (r[1] - lam * r[2], -r[0])) for c in cats}
        total_cost = sum(r[1] for r in choice.values())
        if sum(r[2] for r in choice.values()) >= need - 1e-9 and (best is None or total_cost < best[0]):
            best = (total_cost, {c: round(r[0] - target, 3) for c, r in choice.items()})
    if best is None or best[0] >= float(base_cost.sum()):
        return {}
    return {c: off for c, off in best[1].items() if off != 0.0}
