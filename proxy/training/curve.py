"""The quality dial measured on labelled rows: category accuracy, adequacy and cost per target.

Adequate = the routed model's tier is at most the row's least adequate tier. Cost = routed over
always the tutorial's frontier default (Claude Sonnet 4), at list prices, with the classifier's
input-token estimate and OUTPUT_TOKENS output tokens for every request (the issue's measure).
Every model counts as available.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.policy import Policy
from proxy.routing.classify import Classification, classify
from proxy.routing.learned import router_for
from proxy.routing.options import RouteOptions
from proxy.routing.selection import select

FRONTIER = "anthropic/claude-sonnet-4"
OUTPUT_TOKENS = 400
TARGETS = (0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


@dataclass
class Point:
    target: float | None
    n: int
    accuracy: float
    adequacy: float
    cost_share: float
    oracle_share: float


def classified(policy: Policy, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Classification]]:
    router = router_for(policy)
    return [(row, classify(row["body"], router)) for row in rows]


def point(policy: Policy, data: Sequence[tuple[Mapping[str, Any], Classification]], target: float | None) -> Point:
    available = frozenset(policy.models)
    frontier = policy.models[FRONTIER]
    options = RouteOptions(quality_target=target, quality_target_source="calibrate")
    correct = adequate = 0
    routed = always = oracle = 0.0
    for row, c in data:
        plan = select(c, policy, options, available)
        spec = policy.models[plan.primary]
        inp = c.estimated_input_tokens
        correct += c.category == row["category"]
        adequate += spec.tier <= row["adequate_tier"]
        routed += spec.cost_usd(inp, OUTPUT_TOKENS)
        always += frontier.cost_usd(inp, OUTPUT_TOKENS)
        oracle += min(
            m.cost_usd(inp, OUTPUT_TOKENS)
            for m in policy.models.values()
            if m.tier <= row["adequate_tier"] and not m.local and m.context_window >= inp + OUTPUT_TOKENS
        )
    n = len(data) or 1
    return Point(target, len(data), correct / n, adequate / n, routed / always if always else 0.0, oracle / always if always else 0.0)


def curve(policy: Policy, data: Sequence[tuple[Mapping[str, Any], Classification]], targets: Sequence[float] = TARGETS) -> list[Point]:
    return [point(policy, data, t) for t in targets]


def reliability(data: Sequence[tuple[Mapping[str, Any], Classification]], bins: int = 5) -> list[tuple[int, float, float, float, int]]:
    """(tier, bin low, mean predicted P(adequate), observed adequate share, count) for tiers 2-4."""
    out = []
    for tier in (2, 3, 4):
        pairs = [(c.adequacy[tier - 1], row["adequate_tier"] >= tier) for row, c in data if c.adequacy is not None]
        for b in range(bins):
            lo, hi = b / bins, (b + 1) / bins
            inside = [(p, y) for p, y in pairs if lo <= p < hi or (b == bins - 1 and p == 1.0)]
            if inside:
                out.append((tier, lo, sum(p for p, _ in inside) / len(inside), sum(y for _, y in inside) / len(inside), len(inside)))
    return out


def format_curve(points: Sequence[Point], title: str) -> str:
    lines = [f"{title}: target -> category accuracy, adequate tier, cost vs always {FRONTIER} (oracle cost)"]
    for p in points:
        label = f"{p.target:.2f}" if p.target is not None else "policy"
        lines.append(
            f"  {label:>6s}  n={p.n:4d}  accuracy {p.accuracy:6.1%}  adequate {p.adequacy:6.1%}  cost {p.cost_share:6.1%}  ({p.oracle_share:.1%})"
        )
    return "\n".join(lines)


def format_reliability(rows: Sequence[tuple[int, float, float, float, int]]) -> str:
    lines = ["reliability: tier, predicted P(adequate) bin -> mean predicted vs observed (count)"]
    for tier, lo, pred, obs, n in rows:
        lines.append(f"  tier {tier}  [{lo:.1f}, {lo + 0.2:.1f})  predicted {pred:5.2f}  observed {obs:5.2f}  (n={n})")
    return "\n".join(lines)
