"""Classification + policy + options -> RoutePlan (owns: which model serves a routed request).

Pure: `select(c, policy, options, available)` applies the decision matrix of
`policies/routing.yaml` (see its header for the rules), then the hard constraints, and
returns the primary model, ordered fallbacks, the estimated cost and a human-readable reason
for every step. Same classification, policy, options and availability give the same plan.

Hard constraints (codes used in reasons and errors): available, allowed, local_only,
self_hosted, context, max_output, tools, vision, cost_cap, latency, budget. A matrix choice
that breaks one is replaced by the next capable model in the documented order (same tier,
then more capable tiers nearest first, then less capable tiers; ties by capability_order).
Nothing capable raises `NoCapableModel` (422) naming the unmet constraints, or
`BudgetExceeded` (429) when only the remaining budget is short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from proxy.errors import NoCapableModel
from proxy.policy import Policy
from proxy.policy.registry import ModelSpec
from proxy.policy.routing import CategoryRoute
from proxy.routing import dial
from proxy.routing.classify import Classification
from proxy.routing.index import ModelRow, PolicyIndex, index_of
from proxy.routing.options import KeyRouteDefaults, RouteOptions, is_auto, parse_route_options
from proxy.routing.record import decision_record
from proxy.routing.unmet import _SHORT, _no_capable

__all__ = [
    "KeyRouteDefaults",
    "RouteOptions",
    "RoutePlan",
    "RouteStep",
    "decision_record",
    "is_auto",
    "parse_route_options",
    "select",
]


class RouteStep(NamedTuple):
    model: str
    reason: str


@dataclass(frozen=True)
class RoutePlan:
    primary: str
    fallbacks: tuple[str, ...]
    estimated_cost_usd: float
    estimated_latency_s: float
    output_tokens: int
    preference: str
    reason: str
    policy_hash: str
    steps: tuple[RouteStep, ...]
    overrides: tuple[str, ...] = ()  # constraint codes (see _SHORT) that moved the matrix's pick
    quality_target: float | None = None  # the dial's target (None: the decision matrix chose)

    @property
    def models(self) -> tuple[str, ...]:
        return (self.primary, *self.fallbacks)


class _Need(NamedTuple):
    input_tokens: int
    output_tokens: int
    tools: bool
    vision: bool
    available: frozenset[str]
    patterns: tuple[str, ...]
    allowed: frozenset[str] | None
    self_hosted_only: bool
    local_only: bool
    cost_cap: float | None
    budget: float | None
    latency_cap: float | None
    latency_overhead: float


def _latency(m: ModelSpec, need: _Need) -> float:
    return need.latency_overhead + need.output_tokens / m.speed_tokens_per_sec


def _failures(m: ModelSpec, need: _Need) -> tuple[str, ...]:
    """The hard constraints `m` breaks for this request (empty: capable)."""
    out: list[str] = []
    if m.id not in need.available:
        out.append("available")
    if need.allowed is not None and m.id not in need.allowed:  # decided by proxy/keys/access.py
        out.append("allowed")
    if need.self_hosted_only and not m.self_hosted:
        out.append("self_hosted")
    if need.local_only and not m.local:
        out.append("local_only")
    if m.context_window < need.input_tokens + need.output_tokens:
        out.append("context")
    if m.max_output_tokens is not None and m.max_output_tokens < need.output_tokens:
        out.append("max_output")
    if need.tools and not m.supports_tools:
        out.append("tools")
    if need.vision and not m.supports_vision:
        out.append("vision")
    if need.cost_cap is not None or need.budget is not None:
        cost = m.cost_usd(need.input_tokens, need.output_tokens)
        if need.cost_cap is not None and cost > need.cost_cap:
            out.append("cost_cap")
        if need.budget is not None and cost > need.budget:
            out.append("budget")
    if need.latency_cap is not None and _latency(m, need) > need.latency_cap:
        out.append("latency")
    return tuple(out)


def _all_failures(rows: Iterable[ModelRow], need: _Need) -> dict[str, tuple[str, ...]]:
    """Model id -> `_failures` for every model; a model that plainly passes every check skips the call.
    The fast path covers only the checks of a plain request; any other constraint goes to `_failures`."""
    if need.cost_cap is not None or need.budget is not None or need.latency_cap is not None or need.self_hosted_only or need.local_only:
        return {row.id: _failures(row.spec, need) for row in rows}
    available, allowed, tools, vision = need.available, need.allowed, need.tools, need.vision
    total, output = need.input_tokens + need.output_tokens, need.output_tokens
    out: dict[str, tuple[str, ...]] = {}
    for spec, mid, window, max_output, supports_tools, supports_vision, _ in rows:
        if (
            mid in available
            and (allowed is None or mid in allowed)
            and window >= total
            and (max_output is None or max_output >= output)
            and (supports_tools or not tools)
            and (supports_vision or not vision)
        ):
            out[mid] = ()
        else:
            out[mid] = _failures(spec, need)
    return out


def _preferred(
    c: Classification, row: CategoryRoute | None, pref: str, policy: Policy, need: _Need, rank: Mapping[str, int]
) -> tuple[str, str]:
    """The matrix's choice for this preference, and the rule that made it."""
    models = policy.models
    rules = policy.routing.rules
    if row is None:
        tier = policy.routing.default_tier_by_complexity[c.complexity]
        fits = [m for m in models.values() if m.tier <= tier and not m.local] or list(models.values())
        best = min(fits, key=lambda m: (m.cost_usd(need.input_tokens, need.output_tokens), rank[m.id]))
        return best.id, f"no matrix row: cheapest tier-{tier}-or-better model"
    choice, rule = row.resolve(row.by_complexity[c.complexity]), f"by_complexity[{c.complexity}]"
    if c.needs_long_context and row.long_context and c.complexity >= rules.balanced.long_context_min_complexity:
        choice, rule = row.long_context, "long_context"
    if pref == "cheapest":
        alt = models.get(row.cost_optimized)
        cur = models.get(choice)
        if alt and cur and alt.cost_usd(need.input_tokens, need.output_tokens) < cur.cost_usd(need.input_tokens, need.output_tokens):
            choice, rule = row.cost_optimized, "cost_optimized (cheaper than the balanced choice)"
        else:
            rule += " (already cheaper than cost_optimized)"
    elif pref == "best_quality":
        if rank.get(row.default, 1 << 30) <= rank.get(choice, 1 << 30):
            choice, rule = row.default, "default (best quality)"
        if row.math_heavy and c.complexity >= rules.best_quality.math_heavy_min_complexity:
            choice, rule = row.math_heavy, f"math_heavy (complexity >= {rules.best_quality.math_heavy_min_complexity})"
        if row.high_quality and rules.best_quality.use_high_quality:
            choice, rule = row.high_quality, "high_quality"
    return choice, rule


def _need(c: Classification, policy: Policy, options: RouteOptions, available: frozenset[str]) -> _Need:
    routing = policy.routing
    caps = [x for x in (options.max_cost_usd, routing.max_cost_per_request_usd) if x is not None]
    return _Need(
        input_tokens=c.estimated_input_tokens,
        output_tokens=options.requested_output_tokens or c.estimated_output_tokens,
        tools=c.needs_tools,
        vision=c.needs_vision,
        available=available,
        patterns=options.allowed_model_patterns,
        allowed=options.allowed_models,
        self_hosted_only=options.self_hosted_only or options.local_only,
        local_only=options.local_only,
        cost_cap=min(caps) if caps else None,
        budget=options.budget_remaining_usd,
        latency_cap=routing.max_latency_s,
        latency_overhead=routing.latency_overhead_s,
    )


_MONEY = frozenset({"budget", "cost_cap"})


def select(c: Classification, policy: Policy, options: RouteOptions, available: frozenset[str]) -> RoutePlan:
    """Choose the primary model and fallbacks for a classified request (pure)."""
    routing = policy.routing
    pref = options.preference or routing.default_preference
    need = _need(c, policy, options, available)
    if routing.max_tokens_per_request is not None and need.input_tokens + need.output_tokens > routing.max_tokens_per_request:
        raise NoCapableModel(
            f"the request needs about {need.input_tokens + need.output_tokens:,} tokens, above the policy's "
            f"max_tokens_per_request of {routing.max_tokens_per_request:,}; shorten it or lower max_tokens",
            param="messages",
        )
    index = index_of(policy)
    rank = index.rank
    models = policy.models
    failures = _all_failures(index.rows, need)
    capable = {mid for mid, f in failures.items() if not f}
    if not capable:
        raise _no_capable(failures, need)

    row = routing.matrix.get(c.category)  # type: ignore[call-overload]
    target: float | None = None
    if c.adequacy is not None and routing.quality_target is not None and not options.local_only:
        target = dial.target_for(policy, pref, options.quality_target)
        source = options.quality_target_source if options.quality_target is not None else f"{pref}, {options.preference_source}"
        probs = dial.adequacy(c.category, c.adequacy, policy.calibration)
        # the dial chooses among models that fit everything but the money; a budget or cost cap then
        # downgrades the choice below, with the reason and the override saying so
        if len(capable) == len(failures):  # every model is capable: the cloud ones, as the line below would find them
            pool = list(index.cloud) or [models[m] for m in capable]
        else:
            pool = [r.spec for r in index.rows if not r.local and _MONEY.issuperset(failures[r.id])] or [models[m] for m in capable]
        chosen, rule = dial.pick(pool, probs, target, need.input_tokens, need.output_tokens, routing.reasoning_output_factor, rank, c.slack)
        pick = chosen.id
        notes = [f"{c.category}, {dial.describe(probs)}, quality target {target:.2f} ({source}): {rule} -> {pick}"]
    else:
        pick, rule = _preferred(c, row, pref, policy, need, rank)
        notes = [f"{c.category}, complexity {c.complexity}, {pref} ({options.preference_source}): {rule} -> {pick}"]
    if options.local_only:
        local = policy.resolve_model(routing.local_model) if routing.local_model else None
        if local is not None and local.id != pick:
            pick = local.id
            notes.append(f"auto:local -> {pick}")
    elif options.self_hosted_only and pick in models and not models[pick].self_hosted and row is not None:
        pick = row.self_hosted
        notes.append(f"self-hosted only -> matrix self_hosted {pick}")

    primary = pick
    overrides: list[str] = []
    if pick not in capable:
        spec = models.get(pick)
        if spec is None:
            substitutes = sorted(capable, key=lambda mid: rank[mid])
            primary = substitutes[0]
            notes.append(f"{pick} is not in the registry; next capable: {primary}")
        else:
            primary = next(m.id for m in index.order_from(spec) if m.id in capable)
            notes.append(_substitution_note(spec, models[primary], failures[pick], need))
            overrides.extend(failures[pick])

    if routing.prefer_local and not options.local_only:
        local = policy.resolve_model(routing.local_model) if routing.local_model else None
        limit = routing.local_capable.get(c.category, 0)  # type: ignore[call-overload]
        if local is not None and local.id != primary and c.complexity <= limit:
            if local.id in capable:
                notes.append(f"prefer_local: {c.category} up to complexity {limit} runs locally on {local.id}")
                cloud = primary
                primary = local.id
                return _plan(
                    c,
                    policy,
                    pref,
                    need,
                    primary,
                    notes,
                    index,
                    capable,
                    row,
                    first_fallback=cloud if routing.allow_cloud_fallback else None,
                    local_fallbacks_only=not routing.allow_cloud_fallback,
                    overrides=(*overrides, "prefer_local"),
                    quality_target=target,
                )
            notes.append(f"prefer_local skipped: {local.id} {', '.join(_SHORT[code] for code in failures[local.id])}")
    return _plan(
        c,
        policy,
        pref,
        need,
        primary,
        notes,
        index,
        capable,
        row,
        first_fallback=None,
        local_fallbacks_only=options.local_only,
        overrides=tuple(overrides),
        quality_target=target,
    )


def _substitution_note(pick: ModelSpec, chosen: ModelSpec, failed: tuple[str, ...], need: _Need) -> str:
    if failed == ("budget",):
        before = pick.cost_usd(need.input_tokens, need.output_tokens)
        after = chosen.cost_usd(need.input_tokens, need.output_tokens)
        return f"budget: {pick.id} would cost ~${before:.6f} but ${need.budget or 0:.6f} remains; downgraded to {chosen.id} (~${after:.6f})"
    return f"{pick.id} {', '.join(_SHORT[code] for code in failed)}; next capable: {chosen.id}"


def _plan(
    c: Classification,
    policy: Policy,
    pref: str,
    need: _Need,
    primary: str,
    notes: list[str],
    index: PolicyIndex,
    capable: set[str],
    row: CategoryRoute | None,
    first_fallback: str | None,
    local_fallbacks_only: bool,
    overrides: tuple[str, ...] = (),
    quality_target: float | None = None,
) -> RoutePlan:
    models = policy.models
    spec = models[primary]
    key = (primary, first_fallback, row.fallback if row is not None else None, local_fallbacks_only, frozenset(capable))
    fallbacks = index.fallbacks.get(key)
    if fallbacks is None:
        fallbacks = _fallbacks(policy, index, spec, capable, row, first_fallback, local_fallbacks_only)
        index.remember(key, fallbacks)
    steps = [RouteStep(primary, "; ".join(notes))]
    for mid in fallbacks:
        if mid == first_fallback:
            why = "cloud fallback (the balanced choice)"
        elif row is not None and mid == row.fallback:
            why = "matrix fallback"
        else:
            why = "next capable model"
        steps.append(RouteStep(mid, why))
    return RoutePlan(
        primary=primary,
        fallbacks=fallbacks,
        estimated_cost_usd=round(spec.cost_usd(need.input_tokens, need.output_tokens), 8),
        estimated_latency_s=round(_latency(spec, need), 3),
        output_tokens=need.output_tokens,
        preference=pref,
        reason=steps[0].reason,
        policy_hash=policy.hash,
        overrides=overrides,
        steps=tuple(steps),
        quality_target=quality_target,
    )


def _fallbacks(
    policy: Policy,
    index: PolicyIndex,
    spec: ModelSpec,
    capable: set[str],
    row: CategoryRoute | None,
    first_fallback: str | None,
    local_fallbacks_only: bool,
) -> tuple[str, ...]:
    """The fallbacks after `spec` (a function of its arguments alone, so `_plan` keeps them per policy)."""
    models, primary = policy.models, spec.id
    preferred: list[str] = []  # explicit fallbacks first: the cloud choice, the matrix fallback
    if first_fallback:
        preferred.append(first_fallback)
    if row is not None and row.fallback not in preferred:
        preferred.append(row.fallback)
    other: list[str] = []  # then the substitution order, other providers before the primary's
    same: list[str] = []
    for m in index.order_from(spec):
        if m.id in capable and m.id not in preferred and (m.local or not local_fallbacks_only):
            (same if m.provider == spec.provider else other).append(m.id)
    explicit = [mid for mid in preferred if mid != primary and mid in capable and (models[mid].local or not local_fallbacks_only)]
    if first_fallback not in explicit and explicit:  # the matrix fallback yields to other providers
        if models[explicit[0]].provider == spec.provider:
            same.insert(0, explicit.pop(0))
    return tuple((explicit + other + same)[: policy.routing.max_fallbacks])
