"""The route step: which models a request goes to, and why.

A named model is used as named (the key must allow it). `auto` and its aliases are
classified (proxy/routing/classify.py, optionally refined by the LLM classifier) and routed
(proxy/routing/selection.py) among the models that have a usable deployment and that the key may
use, within the key's remaining budget (budget homeostasis: selection downgrades to a
cheaper capable model and says so, and refuses only when nothing capable fits).

Both kinds produce a `Plan`: the models in order, the estimates admission reserves against,
and the decision record (the `/v1/route` fields) that headers and logs are made from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxy.errors import ModelNotFound
from proxy.keys.store import KeyRecord
from proxy.policy.registry import ModelSpec
from proxy.routing.classify import Classification, classify
from proxy.routing.options import KeyRouteDefaults, is_auto, parse_route_options
from proxy.routing.selection import RoutePlan, decision_record, select
from proxy.routing.tokens import estimate_input_tokens

if TYPE_CHECKING:
    from proxy.request.appstate import AppState

#: Output tokens assumed for a named-model request that does not cap them (for admission
#: and cost estimates only; the real count settles the reservation).
NAMED_DEFAULT_OUTPUT_TOKENS = 1024


@dataclass
class Plan:
    models: list[ModelSpec]
    input_tokens: int
    output_tokens: int
    decision: dict[str, Any]
    routed: bool = False
    preference: str | None = None
    classification: Classification | None = None
    route: RoutePlan | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)

    @property
    def category(self) -> str | None:
        return self.classification.category if self.classification else None

    def estimated_cost_usd(self, model: ModelSpec) -> float:
        return model.cost_usd(self.input_tokens, self.output_tokens)


async def plan_request(
    state: AppState,
    decision_id: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    key: KeyRecord,
    *,
    budget_remaining_usd: float | None = None,
) -> Plan:
    name = body["model"]
    if is_auto(name):
        return await _routed(state, decision_id, body, headers, key, budget_remaining_usd)
    return _named(state, decision_id, body, key)


def _named(state: AppState, decision_id: str, body: Mapping[str, Any], key: KeyRecord) -> Plan:
    name = body["model"]
    model = state.policy.resolve_model(name)
    if model is None:
        raise ModelNotFound(
            f"The model '{name}' does not exist. GET /v1/models lists the valid ones; use model=\"auto\" to let autoroute choose.",
            param="model",
        )
    key.check_model(model)
    input_tokens = estimate_input_tokens(body)
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    output_tokens = cap if isinstance(cap, int) and cap > 0 else NAMED_DEFAULT_OUTPUT_TOKENS
    decision = {
        "decision_id": decision_id,
        "model": model.id,
        "provider": model.provider,
        "tier": model.tier,
        "fallbacks": [],
        "estimated_input_tokens": input_tokens,
        "estimated_output_tokens": output_tokens,
        "estimated_cost_usd": model.cost_usd(input_tokens, output_tokens),
        "reason": "model named by the caller",
        "policy_hash": state.policy.hash,
    }
    return Plan([model], input_tokens, output_tokens, decision)


async def _routed(
    state: AppState,
    decision_id: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    key: KeyRecord,
    budget_remaining_usd: float | None,
) -> Plan:
    options = parse_route_options(body["model"], body, headers, key_defaults(key, budget_remaining_usd))
    c = classify(body)
    if state.llm_classifier is not None:
        c = await state.llm_classifier.refine(body, c)
        _observe_llm(state, c)
    route = select(c, state.policy, options, state.health.available_models())
    decision = decision_record(decision_id, c, route, state.policy)
    overrides = overrides_of(route)
    state.metrics.observe_route(
        category=c.category, model=route.primary, preference=route.preference, confidence=c.confidence, overrides=overrides
    )
    models = [state.policy.models[m] for m in route.models]
    return Plan(
        models,
        c.estimated_input_tokens,
        route.output_tokens,
        decision,
        routed=True,
        preference=route.preference,
        classification=c,
        route=route,
        overrides=overrides,
    )


def key_defaults(key: KeyRecord, budget_remaining_usd: float | None) -> KeyRouteDefaults:
    return KeyRouteDefaults(
        preference=key.route_preference,
        self_hosted_only=key.self_hosted_only,
        allowed_model_patterns=tuple(key.allowed_models),
        budget_remaining_usd=budget_remaining_usd,
    )


# Selection's constraint codes -> the overrides metric's labels (proxy/observe/metrics.py OVERRIDES).
_OVERRIDE_LABELS = {
    "available": "unavailable",
    "allowed": "allowed_models",
    "self_hosted": "self_hosted_only",
    "local_only": "self_hosted_only",
    "context": "context_window",
    "max_output": "context_window",
    "tools": "tools",
    "vision": "vision",
    "cost_cap": "cost_cap",
    "latency": "latency",
    "budget": "budget",
    "prefer_local": "prefer_local",
}


def overrides_of(route: RoutePlan) -> tuple[str, ...]:
    """Which constraints moved the choice away from the matrix (for the overrides metric)."""
    return tuple(dict.fromkeys(_OVERRIDE_LABELS.get(code, code) for code in route.overrides))


def _observe_llm(state: AppState, c: Classification) -> None:
    llm = c.signals.get("llm") if isinstance(c.signals, Mapping) else None
    if not isinstance(llm, Mapping):
        return
    outcome = llm.get("error") or ("cache_hit" if llm.get("cached") else "ok")
    seconds = llm.get("seconds")
    state.metrics.observe_llm_classifier(str(outcome), seconds if isinstance(seconds, float) else None)
