"""proxy/routing/options.py: route options from the model name, the body, headers and the key's
defaults, in that order of precedence; invalid options name their field; options reach the plan."""

from __future__ import annotations

import pytest

from proxy.errors import InvalidRequest
from proxy.policy import Policy
from proxy.routing.classify import classify
from proxy.routing.options import KeyRouteDefaults, is_auto, parse_route_options
from proxy.routing.selection import select
from tests.support.selecting import everything, policy  # noqa: F401  (fixtures)

OPTION_CASES = [
    # (model, body extras, headers, key defaults, expected fields)
    ("auto", {}, {}, None, {"preference": None, "preference_source": "policy", "self_hosted_only": False}),
    ("auto:cheapest", {}, {}, None, {"preference": "cheapest", "preference_source": "model"}),
    ("auto:balanced", {}, {}, None, {"preference": "balanced"}),
    ("auto:best_quality", {"route": {"preference": "cheapest"}}, {}, None, {"preference": "best_quality"}),
    ("auto:local", {}, {}, None, {"local_only": True, "self_hosted_only": True}),
    (
        "auto",
        {"route": {"preference": "best_quality", "self_hosted_only": True, "max_cost_usd": 0.2}},
        {},
        None,
        {"preference": "best_quality", "preference_source": "body", "self_hosted_only": True, "max_cost_usd": 0.2},
    ),
    (
        "auto",
        {},
        {"X-Route-Preference": "cheapest", "x-route-self-hosted-only": "yes"},
        None,
        {"preference": "cheapest", "preference_source": "header", "self_hosted_only": True},
    ),
    (
        "auto",
        {"route": {"preference": "balanced"}},
        {"x-route-preference": "cheapest"},
        None,
        {"preference": "balanced", "preference_source": "body"},
    ),
    (
        "auto",
        {},
        {},
        KeyRouteDefaults(
            preference="cheapest",
            self_hosted_only=True,
            allowed_model_patterns=("meta-llama/*",),
            max_cost_usd=0.5,
            budget_remaining_usd=1.5,
        ),
        {
            "preference": "cheapest",
            "preference_source": "key",
            "self_hosted_only": True,
            "allowed_model_patterns": ("meta-llama/*",),
            "max_cost_usd": 0.5,
            "budget_remaining_usd": 1.5,
        },
    ),
    (
        "auto",
        {"route": {"self_hosted_only": False, "max_cost_usd": 2}},
        {},
        KeyRouteDefaults(self_hosted_only=True, max_cost_usd=0.5),
        {"self_hosted_only": True, "max_cost_usd": 0.5},
    ),
    ("auto", {"max_tokens": 300}, {}, None, {"requested_output_tokens": 300}),
    ("auto", {"max_tokens": 300, "max_completion_tokens": 200}, {}, None, {"requested_output_tokens": 200}),
]


@pytest.mark.parametrize(("model", "extra", "headers", "key", "expected"), OPTION_CASES)
def test_parse_route_options(model: str, extra: dict, headers: dict, key: KeyRouteDefaults | None, expected: dict) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    options = parse_route_options(model, body, headers, key)
    for field, value in expected.items():
        assert getattr(options, field) == value, field


INVALID_OPTIONS = [
    ("auto:fastest", {}, {}, "model"),
    ("gpt-4o", {}, {}, "model"),
    ("auto", {"route": "cheap"}, {}, "route"),
    ("auto", {"route": {"preference": "fast"}}, {}, "route.preference"),
    ("auto", {"route": {"self_hosted_only": "yes"}}, {}, "route.self_hosted_only"),
    ("auto", {"route": {"max_cost_usd": -1}}, {}, "route.max_cost_usd"),
    ("auto", {"route": {"max_cost_usd": True}}, {}, "route.max_cost_usd"),
    ("auto", {"route": {"model": "x"}}, {}, "route.model"),
    ("auto", {}, {"X-Route-Preference": "premium"}, "X-Route-Preference"),
    ("auto", {}, {"X-Route-Self-Hosted-Only": "maybe"}, "X-Route-Self-Hosted-Only"),
    ("auto", {"max_tokens": 0}, {}, "max_tokens"),
    ("auto", {"max_completion_tokens": "100"}, {}, "max_completion_tokens"),
]


@pytest.mark.parametrize(("model", "extra", "headers", "param"), INVALID_OPTIONS)
def test_invalid_route_options_name_the_field(model: str, extra: dict, headers: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_route_options(model, {"model": model, **extra}, headers, None)
    assert err.value.param == param and err.value.status == 400
    assert param.split(".")[-1].lower() in err.value.message.lower()


def test_is_auto() -> None:
    assert is_auto("auto") and is_auto("auto:local") and not is_auto("gpt-4.1") and not is_auto(None)


def test_options_flow_into_the_plan(policy: Policy, everything: frozenset[str]) -> None:
    body = {"model": "auto:cheapest", "messages": [{"role": "user", "content": "Summarize: 'Rain is expected tomorrow in Oslo.'"}]}
    plan = select(classify(body), policy, parse_route_options("auto:cheapest", body, {}, None), everything)
    assert plan.preference == "cheapest" and "(model)" in plan.reason
