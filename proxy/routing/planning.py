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

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxy.errors import InvalidRequest, ModelNotFound, NoCapableModel, PermissionDenied, ProxyError, ServiceUnavailable
from proxy.keys import access
from proxy.keys.store import KeyRecord
from proxy.policy import Policy
from proxy.policy.passthrough import REASONS as PRICE_REASONS
from proxy.policy.registry import ModelSpec
from proxy.routing.classify import Classification, classify
from proxy.routing.learned import router_for
from proxy.routing.options import KeyRouteDefaults, RouteOptions, is_auto, parse_route_options
from proxy.routing.selection import RoutePlan, decision_record, select

if TYPE_CHECKING:
    from proxy.request.appstate import AppState
    from proxy.request.canonical import CanonicalRequest


@dataclass
class Plan:
    models: list[ModelSpec]
    input_tokens: int
    output_tokens: int  # per choice: the request's cap, else the expected output
    decision: dict[str, Any]
    routed: bool = False
    preference: str | None = None
    classification: Classification | None = None
    route: RoutePlan | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)
    request: CanonicalRequest | None = None  # what is sent (unsupported parameters dropped, if the policy says so)
    capped: bool = True  # output_tokens is the request's own cap
    n: int = 1
    default_output_tokens: int = 0  # the policy's per-choice reservation when uncapped

    @property
    def category(self) -> str | None:
        return self.classification.category if self.classification else None

    def output_tokens_for(self, model: ModelSpec) -> int:
        """Output tokens reserved on `model`: the cap (hidden reasoning included: providers count
        it against the cap) or, without one, the expected output (a named model: at least the
        policy's default_max_output_tokens) x the model's hidden-reasoning factor; times `n`."""
        if self.capped:
            per_choice = self.output_tokens
        else:
            per_choice = math.ceil(max(self.output_tokens, self.default_output_tokens) * model.hidden_reasoning_factor)
        return per_choice * self.n

    def estimated_cost_usd(self, model: ModelSpec) -> float:
        return model.cost_usd(self.input_tokens, self.output_tokens_for(model))


async def plan_request(
    state: AppState,
    decision_id: str,
    req: CanonicalRequest,
    headers: Mapping[str, str],
    key: KeyRecord | None,
    *,
    budget_remaining_usd: float | None = None,
    input_tokens: int | None = None,
) -> Plan:
    """`input_tokens`: the estimate, when the request was already estimated (a re-plan)."""
    if input_tokens is None:
        input_tokens = await state.tokens.estimate(req.view)
    if is_auto(req.model):
        plan = await _routed(state, decision_id, req, headers, key, budget_remaining_usd, input_tokens)
    else:
        plan = _named(state.policy, decision_id, req, key, input_tokens)
    plan.n = plan.request.n if plan.request is not None else req.n
    if not plan.routed:  # auto reserves the classifier's expected output, as selection priced it
        plan.default_output_tokens = state.policy.routing.default_max_output_tokens
    plan.models += last_resort(state.policy, key, plan.models, (plan.request or req).asks)
    plan.decision["estimated_cost_usd"] = plan.estimated_cost_usd(plan.models[0])
    return plan


def last_resort(policy: Policy, key: KeyRecord | None, models: list[ModelSpec], asks: frozenset[str]) -> list[ModelSpec]:
    """`dispatch.last_resort`, tried after the plan: only if this key may use it and it can honour the request."""
    name = policy.dispatch.last_resort
    model = policy.resolve_model(name) if name else None
    if model is None or model in models or not access.allows(key, model) or asks & model.unsupported_params:
        return []
    return [model]


def _named(policy: Policy, decision_id: str, req: CanonicalRequest, key: KeyRecord | None, input_tokens: int) -> Plan:
    name = req.model
    model = policy.resolve_model(name)
    reason = "model named by the caller"
    if model is None and (found := policy.passthrough_model(name)) is not None:
        model, source = found
        if source == "unpriced" and key is not None and key.has_budgets:
            raise PermissionDenied(
                f"'{name}' is not in the registry and has no known price, and this key has a budget; "
                "name a registry model, or set unknown_model_price in models.yaml.",
                param="model",
                code="unknown_model_price",
            )
        reason = f"model named by the caller, forwarded by a deployment pattern; {PRICE_REASONS[source]}"
    if model is None:
        raise ModelNotFound(
            f"The model '{name}' does not exist. GET /v1/models lists the valid ones; use model=\"auto\" to let autoroute choose.",
            param="model",
        )
    access.check(key, model)
    unsupported = req.asks & model.unsupported_params
    if unsupported:
        if policy.routing.unsupported_params != "drop":
            param = sorted(unsupported)[0]
            raise InvalidRequest(
                f"{model.id} cannot honour {', '.join(sorted(unsupported))} (its API has no such parameter); remove "
                f'{"it" if len(unsupported) == 1 else "them"}, name another model, or use model="auto".',
                param=param,
                code="unsupported_parameter",
            )
        req = req.without(unsupported)
    output_tokens = req.output_cap or policy.routing.default_max_output_tokens
    decision = {
        "decision_id": decision_id,
        "model": model.id,
        "provider": model.provider,
        "tier": model.tier,
        "fallbacks": [],
        "estimated_input_tokens": input_tokens,
        "estimated_output_tokens": output_tokens,
        "estimated_cost_usd": 0.0,
        "reason": reason,
        "policy_hash": policy.hash,
    }
    return Plan([model], input_tokens, output_tokens, decision, request=req, capped=req.output_cap is not None)


async def _routed(
    state: AppState,
    decision_id: str,
    req: CanonicalRequest,
    headers: Mapping[str, str],
    key: KeyRecord | None,
    budget_remaining_usd: float | None,
    input_tokens: int,
) -> Plan:
    policy = state.policy
    view = req.view
    options = parse_route_options(
        req.model, {**view, "route": req.route} if req.route is not None else view, headers, key_defaults(key, policy, budget_remaining_usd)
    )
    c = classify(view, router_for(policy), input_tokens)
    llm = state.llm_classifier
    if llm is not None and llm.wants(c) and _may_classify(policy, key):
        c = await llm.refine(view, c)
        _observe_llm(state, c)
    available = state.health.available_models()
    asks = req.asks
    if asks:  # only models that can honour n > 1 / logprobs
        available = frozenset(m for m in available if m in policy.models and not asks & policy.models[m].unsupported_params)
    try:
        route = select(c, policy, options, available)
    except NoCapableModel as exc:
        raise _unavailable_or(exc, state, c, options, available) from None
    decision = decision_record(decision_id, c, route, policy)
    overrides = overrides_of(route)
    state.feedback.remember(
        decision_id,
        key.id if key is not None else None,
        state.policy.models[route.primary].tier,
        route.primary,
        decision["features"],
        route.policy_hash,
        task_id=headers.get("x-task-id") or None,
    )
    state.metrics.observe_route(
        category=c.category, model=route.primary, preference=route.preference, confidence=c.confidence, overrides=overrides
    )
    models = [policy.models[m] for m in route.models]
    return Plan(
        models,
        input_tokens,
        route.output_tokens,
        decision,
        routed=True,
        preference=route.preference,
        classification=c,
        route=route,
        overrides=overrides,
        request=req,
        capped=req.output_cap is not None,
    )


def _unavailable_or(
    exc: NoCapableModel, state: AppState, c: Classification, options: RouteOptions, available: frozenset[str]
) -> ProxyError:
    """Nothing available now: if a model could serve once its deployments stop cooling down, that
    is unavailability (503 + Retry-After, which SDKs retry), not a request no model can serve (422)."""
    health = state.health
    usable = health.table.usable_models
    if available >= usable:
        return _with_setup_hint(exc, state)
    try:
        route = select(c, state.policy, options, usable)
    except NoCapableModel:
        return exc
    last = health.last_error(list(route.models))
    hint = f" {state.dispatcher.missing_setup}" if state.dispatcher.missing_setup else ""
    # A set-up problem (no provider key, only keyless deployments) is not fixed by waiting out the
    # breaker, and SDKs honour Retry-After (the openai SDK waited 30 s before showing the README
    # example's error): 1 s then, else when the first of these models leaves its cool-down.
    retry = 1 if hint else max(1, math.ceil(health.retry_in_s(list(route.models)) or 1))
    return ServiceUnavailable(
        f"Every model that could serve this request ({', '.join(route.models)}) is cooling down after repeated failures"
        + (f" (last: {last})" if last else "")
        + f"; retry in {retry}s.{hint}",
        code="deployments_cooling_down",
        headers={"retry-after": str(retry)},
    )


def _with_setup_hint(exc: NoCapableModel, state: AppState) -> ProxyError:
    if state.dispatcher.missing_setup:
        exc.message = f"{exc.message} {state.dispatcher.missing_setup}"
    return exc


def _may_classify(policy: Policy, key: KeyRecord | None) -> bool:
    """The LLM classifier sends an excerpt of the prompt to its model: only if the key may use it."""
    model = policy.resolve_model(policy.routing.llm_classifier.model)
    return model is not None and access.allows(key, model)


def key_defaults(key: KeyRecord | None, policy: Policy, budget_remaining_usd: float | None) -> KeyRouteDefaults:
    if key is None:
        return KeyRouteDefaults(budget_remaining_usd=budget_remaining_usd)
    return KeyRouteDefaults(
        preference=key.route_preference,
        quality_target=key.route_quality_target,
        self_hosted_only=key.self_hosted_only,
        allowed_model_patterns=tuple(key.allowed_models),
        allowed_models=access.allowed_ids(key, policy.models.values()),
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
