"""RoutePlan -> decision record (owns: the `POST /v1/route` fields and what replay needs; pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.policy import Policy
    from proxy.routing.classify import Classification
    from proxy.routing.selection import RoutePlan


def decision_record(decision_id: str, c: Classification, plan: RoutePlan, policy: Policy) -> dict[str, Any]:
    """The routing decision with exactly the fields of `POST /v1/route`."""
    spec = policy.models[plan.primary]
    return {
        "decision_id": decision_id,
        "category": c.category,
        "complexity": c.complexity,
        "level": c.level,
        "confidence": c.confidence,
        "model": plan.primary,
        "provider": spec.provider,
        "tier": spec.tier,
        "fallbacks": list(plan.fallbacks),
        "estimated_input_tokens": c.estimated_input_tokens,
        "estimated_output_tokens": plan.output_tokens,
        "estimated_cost_usd": plan.estimated_cost_usd,
        "reason": plan.reason,
        "policy_hash": plan.policy_hash,
        "signals": {k: dict(v) if isinstance(v, dict) else v for k, v in c.signals.items()},
        "features": replay_features(c, plan),
    }


def replay_features(c: Classification, plan: RoutePlan) -> dict[str, Any]:
    """What selection read (no prompt text): enough for `autoroute replay` to re-decide under another policy."""
    return {
        "category": c.category,
        "complexity": c.complexity,
        "adequacy": list(c.adequacy) if c.adequacy is not None else None,
        "slack": c.slack,
        "input_tokens": c.estimated_input_tokens,
        "output_tokens": plan.output_tokens,
        "tools": c.needs_tools,
        "vision": c.needs_vision,
        "preference": plan.preference,
        "quality_target": plan.quality_target,
    }
