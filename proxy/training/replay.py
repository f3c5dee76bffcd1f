"""Replay: re-decide recorded decisions under another policy (weights, calibration, dial, prices).

Each decision record keeps the features selection read (`features`: category, per-tier
adequacy, token estimates, tools/vision, preference and quality target; never text). Replay
rebuilds that classification, selects under the new policy with every model available, and
compares with the recorded choice, per category: estimated cost (list prices, recorded token
estimates) and expected adequacy (the recorded P(adequate) of the chosen model's tier).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.policy import Policy
from proxy.routing.classify import Classification, level_for
from proxy.routing.options import RouteOptions
from proxy.routing.selection import select


@dataclass
class Delta:
    n: int = 0
    changed: int = 0
    cost_before: float = 0.0
    cost_after: float = 0.0
    adequacy_before: float = 0.0
    adequacy_after: float = 0.0


def _classification(f: Mapping[str, Any]) -> Classification:
    adequacy = f.get("adequacy")
    return Classification(
        category=f["category"],
        complexity=int(f.get("complexity") or 3),
        level=level_for(int(f.get("complexity") or 3)),
        estimated_input_tokens=int(f["input_tokens"]),
        estimated_output_tokens=int(f["output_tokens"]),
        needs_tools=bool(f.get("tools")),
        needs_vision=bool(f.get("vision")),
        needs_long_context=int(f["input_tokens"]) > 50_000,
        confidence=1.0,
        adequacy=tuple(float(x) for x in adequacy) if adequacy else None,  # type: ignore[arg-type]
        slack=float(f["slack"]) if f.get("slack") is not None else 1.0,  # records from before slack: the offset was in adequacy
    )


def replay(records: Iterable[Mapping[str, Any]], policy: Policy) -> dict[str, Delta]:
    available = frozenset(policy.models)
    out: dict[str, Delta] = defaultdict(Delta)
    for rec in records:
        f = rec.get("features")
        before_id = rec.get("chosen_model") or rec.get("model")
        if not isinstance(f, Mapping) or before_id not in policy.models:
            continue
        c = _classification(f)
        options = RouteOptions(preference=f.get("preference"), quality_target=f.get("quality_target"), quality_target_source="replay")
        after = policy.models[select(c, policy, options, available).primary]
        before = policy.models[before_id]
        d = out[c.category]
        d.n += 1
        d.changed += after.id != before.id
        d.cost_before += before.cost_usd(c.estimated_input_tokens, c.estimated_output_tokens)
        d.cost_after += after.cost_usd(c.estimated_input_tokens, c.estimated_output_tokens)
        if c.adequacy is not None:
            d.adequacy_before += c.adequacy[before.tier - 1]
            d.adequacy_after += c.adequacy[after.tier - 1]
    return dict(sorted(out.items()))


def format_deltas(deltas: Mapping[str, Delta], policy_hash: str) -> str:
    lines = [
        f"replay under policy {policy_hash}: category, decisions, changed, est. cost before -> after (delta), expected adequacy before -> after"
    ]
    for cat, d in deltas.items():
        lines.append(
            f"  {cat:18s} n={d.n:5d} changed={d.changed:5d}  ${d.cost_before:.6f} -> ${d.cost_after:.6f} ({d.cost_after - d.cost_before:+.6f})"
            f"  {d.adequacy_before / d.n:.3f} -> {d.adequacy_after / d.n:.3f} ({(d.adequacy_after - d.adequacy_before) / d.n:+.3f})"
        )
    return "\n".join(lines)
