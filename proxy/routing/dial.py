"""The quality dial (owns: which capable model is the cheapest adequate one; pure).

The trained router gives, per request, P(a model of tier t is adequate) for t = 1..4. The
policy's calibration (feedback, `calibration.json`) multiplies those per (category, tier). The
dial then takes, among the models that meet every hard constraint, the cheapest one whose
tier's probability meets the quality target; when none does, the most likely adequate one
(the cheapest among equals). Because it only ever looks at capable models, a provider without
a key simply drops out and the dial's next choice is the next cheapest adequate model, not a
sibling of the same tier (no reasoning model for "Capital of France?", no frontier model for an
image question a workhorse can answer).

Cost is the request's estimate at list prices; reasoning models' output counts
`reasoning_output_factor` times (their hidden reasoning tokens are billed as output).
Targets: `route.quality_target` > an explicit preference (cheapest / balanced / best_quality,
named points on the dial: routing.yaml `quality_points`) > the key's target > the policy's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from proxy.policy import Policy
from proxy.policy.registry import ModelSpec


def target_for(policy: Policy, preference: str, explicit: float | None) -> float:
    """The quality target of a request: its own, else its preference's point on the dial."""
    routing = policy.routing
    if explicit is not None:
        return explicit
    if preference == "cheapest":
        return routing.quality_points.cheapest
    if preference == "best_quality":
        return routing.quality_points.best_quality
    return routing.quality_target if routing.quality_target is not None else 0.9


def adequacy(category: str, raw: tuple[float, ...], calibration: Mapping[str, Mapping[int, float]]) -> tuple[float, ...]:
    """The router's per-tier probabilities after the feedback factors, still non-increasing in tier."""
    factors = calibration.get(category)
    if not factors and len(raw) == 4 and 1.0 >= raw[0] >= raw[1] >= raw[2] >= raw[3] >= 0.0:
        return tuple(raw)  # the trained router's probabilities as they come: already what the loop below would make
    factors = factors or {}
    out: list[float] = []
    prev = 1.0
    for tier, p in enumerate(raw, start=1):
        p = max(0.0, min(1.0, p * factors.get(tier, 1.0)))
        prev = min(prev, p)
        out.append(prev)
    return tuple(out)


def threshold(target: float, slack: float) -> float:
    """The P(adequate) a tier needs at `target` in a category with `slack` (learned.py): 1 - (1 - target) * slack."""
    return target if slack == 1.0 else min(1.0, 1.0 - (1.0 - target) * slack)


def dial_cost(m: ModelSpec, input_tokens: int, output_tokens: int, reasoning_factor: float) -> float:
    out = output_tokens * reasoning_factor if m.reasoning_model else output_tokens
    return m.cost_usd(input_tokens, int(out))


def pick(
    candidates: Iterable[ModelSpec],
    probs: tuple[float, ...],
    target: float,
    input_tokens: int,
    output_tokens: int,
    reasoning_factor: float,
    rank: Mapping[str, int],
    slack: float = 1.0,
) -> tuple[ModelSpec, str]:
    """(model, rule) — the cheapest candidate whose tier meets `target` (in a category with `slack`), else the most adequate."""
    models = list(candidates)
    need = threshold(target, slack)
    shown = f"{need:.2f}" if slack == 1.0 else f"{need:.3f} (target {target:.2f}, category slack {slack:.2f})"
    reasoning_output = int(output_tokens * reasoning_factor)  # dial_cost's, computed once
    best: ModelSpec | None = None
    best_key = (0.0, 0)
    for m in models:  # one pass: each meeting candidate's cost once (dial_cost's, the factor applied once above); ties keep the first
        if probs[m.tier - 1] >= need:
            key = (m.cost_usd(input_tokens, reasoning_output if m.reasoning_model else output_tokens), rank.get(m.id, 1 << 30))
            if best is None or key < best_key:
                best, best_key = m, key
    if best is not None:
        return best, f"cheapest model with P(adequate) >= {shown}: tier {best.tier} (p={probs[best.tier - 1]:.2f})"
    best = min(
        models, key=lambda m: (-probs[m.tier - 1], dial_cost(m, input_tokens, output_tokens, reasoning_factor), rank.get(m.id, 1 << 30))
    )
    return best, f"no capable model reaches {shown}; the most likely adequate: tier {best.tier} (p={probs[best.tier - 1]:.2f})"


def describe(probs: tuple[float, ...]) -> str:
    if len(probs) == 4:  # the router's four tiers: one format
        t1, t2, t3, t4 = probs
        return f"P(adequate) t1={t1:.2f} t2={t2:.2f} t3={t3:.2f} t4={t4:.2f}"
    return "P(adequate) " + " ".join(f"t{t}={p:.2f}" for t, p in enumerate(probs, start=1))
