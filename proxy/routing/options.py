"""Per-request routing options (owns: reading what the caller asked of the router).

Pure. Sources, most specific first:
  1. the model alias: `auto`, `auto:cheapest`, `auto:balanced`, `auto:best_quality`,
     `auto:local` (only the local model, i.e. self-hosted on this site's hardware);
  2. the body object `"route": {"preference", "quality_target", "self_hosted_only", "max_cost_usd"}` (what the
     OpenAI SDK sends with `extra_body={"route": {...}}`; the caller strips it before dispatch);
  3. the headers `X-Route-Preference` and `X-Route-Self-Hosted-Only`;
  4. the key's defaults (`KeyRouteDefaults`), which also cap what a request may relax: a key
     restricted to self-hosted models stays restricted, and the tighter cost cap wins.
Unset preference means the policy's `default_preference`. `route.quality_target` (0.5-0.999)
sets the quality dial directly (proxy/routing/dial.py); an explicit preference in the request
beats the key's `quality_target`, which beats the key's preference. Invalid values raise
`InvalidRequest` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.errors import InvalidRequest

PREFERENCES = ("cheapest", "balanced", "best_quality")
ALIASES: dict[str, str | None] = {
    "auto": None,
    "auto:cheapest": "cheapest",
    "auto:balanced": "balanced",
    "auto:best_quality": "best_quality",
    "auto:local": None,
}
_ROUTE_FIELDS = ("preference", "quality_target", "self_hosted_only", "max_cost_usd")
MIN_TARGET, MAX_TARGET = 0.5, 0.999
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class KeyRouteDefaults:
    """What a virtual key imposes on routing (built by the caller from the key's record)."""

    preference: str | None = None
    quality_target: float | None = None
    self_hosted_only: bool = False
    allowed_model_patterns: tuple[str, ...] = ()  # the key's patterns, for messages
    allowed_models: frozenset[str] | None = None  # ids the key may use (proxy/keys/access.py); None = all
    max_cost_usd: float | None = None
    budget_remaining_usd: float | None = None


@dataclass(frozen=True)
class RouteOptions:
    preference: str | None = None  # None = the policy's default_preference
    self_hosted_only: bool = False
    local_only: bool = False
    max_cost_usd: float | None = None
    allowed_model_patterns: tuple[str, ...] = ()
    allowed_models: frozenset[str] | None = None  # None = every model (proxy/keys/access.py decides)
    budget_remaining_usd: float | None = None
    requested_output_tokens: int | None = None
    preference_source: str = "policy"
    quality_target: float | None = None  # None: the preference's point on the dial
    quality_target_source: str = "policy"


def is_auto(model_field: Any) -> bool:
    """True when the request asks the router to choose (`auto` or an `auto:*` alias)."""
    return isinstance(model_field, str) and (model_field == "auto" or model_field.startswith("auto:"))


def parse_route_options(
    model_field: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    key_defaults: KeyRouteDefaults | None = None,
) -> RouteOptions:
    if model_field not in ALIASES:
        raise InvalidRequest(
            f"model {model_field!r} is not a routing alias; use one of {', '.join(ALIASES)} or a model id",
            param="model",
        )
    key = key_defaults or KeyRouteDefaults()
    route = body.get("route")
    if route is None:
        route = {}
    if not isinstance(route, Mapping):
        raise InvalidRequest("route must be an object with preference, self_hosted_only, max_cost_usd", param="route")
    for name in route:
        if name not in _ROUTE_FIELDS:
            raise InvalidRequest(f"route.{name} is not a routing option; use {', '.join(_ROUTE_FIELDS)}", param=f"route.{name}")
    lowered = {k.lower(): v for k, v in headers.items()} if headers else {}

    preference, source = ALIASES[model_field], "model"
    if preference is None and route.get("preference") is not None:
        preference, source = _preference(route["preference"], "route.preference"), "body"
    if preference is None and lowered.get("x-route-preference"):
        preference, source = _preference(lowered["x-route-preference"], "X-Route-Preference"), "header"
    if preference is None and key.preference:
        preference, source = _preference(key.preference, "key.preference"), "key"
    if preference is None:
        source = "policy"

    target, target_source = None, "policy"
    if route.get("quality_target") is not None:
        target, target_source = quality_target(route["quality_target"], "route.quality_target"), "body"
    elif source not in ("model", "body", "header") and key.quality_target is not None:
        target, target_source = quality_target(key.quality_target, "key.quality_target"), "key"

    self_hosted = key.self_hosted_only
    if "self_hosted_only" in route and route["self_hosted_only"] is not None:
        value = route["self_hosted_only"]
        if not isinstance(value, bool):
            raise InvalidRequest("route.self_hosted_only must be true or false", param="route.self_hosted_only")
        self_hosted = self_hosted or value
    elif "x-route-self-hosted-only" in lowered:
        self_hosted = self_hosted or _header_bool(lowered["x-route-self-hosted-only"])
    local_only = model_field == "auto:local"

    max_cost = key.max_cost_usd
    if route.get("max_cost_usd") is not None:
        value = route["max_cost_usd"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise InvalidRequest("route.max_cost_usd must be a positive number (US dollars)", param="route.max_cost_usd")
        max_cost = float(value) if max_cost is None else min(max_cost, float(value))

    return RouteOptions(
        preference=preference,
        self_hosted_only=self_hosted or local_only,
        local_only=local_only,
        max_cost_usd=max_cost,
        allowed_model_patterns=tuple(key.allowed_model_patterns),
        allowed_models=key.allowed_models,
        budget_remaining_usd=key.budget_remaining_usd,
        requested_output_tokens=_requested_output(body),
        preference_source=source,
        quality_target=target,
        quality_target_source=target_source,
    )


def quality_target(value: Any, field: str) -> float:
    """A dial setting: a number from MIN_TARGET to MAX_TARGET (a probability of an adequate answer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_TARGET <= value <= MAX_TARGET:
        raise InvalidRequest(f"{field} must be a number from {MIN_TARGET} to {MAX_TARGET} (got {value!r})", param=field)
    return float(value)


def _preference(value: Any, field: str) -> str:
    if isinstance(value, str) and value.strip().lower() in PREFERENCES:
        return value.strip().lower()
    raise InvalidRequest(f"{field} must be one of {', '.join(PREFERENCES)} (got {value!r})", param=field)


def _header_bool(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidRequest("X-Route-Self-Hosted-Only must be true or false", param="X-Route-Self-Hosted-Only")


def _requested_output(body: Mapping[str, Any]) -> int | None:
    """The one effective output cap (the canonical request's view carries it as max_tokens)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidRequest(f"{name} must be a positive integer", param=name)
        return value
    return None
