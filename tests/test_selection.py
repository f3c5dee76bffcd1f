"""proxy/routing/selection.py and policies/routing.yaml: the matrix, the complexity map and the
preferences, fallbacks, determinism, the decision record and policy validation. (Hard
constraints, budget and prefer_local: tests/test_selection_constraints.py; route options:
tests/test_selection_options.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from proxy.errors import PolicyError
from proxy.policy import Policy, load_policy
from proxy.policy.routing import CATEGORIES
from proxy.routing.classify import classify
from proxy.routing.options import RouteOptions, parse_route_options
from proxy.routing.selection import RoutePlan, decision_record, select
from tests.support.policies import POLICIES
from tests.support.selecting import cls, custom_policy, everything, policy  # noqa: F401  (fixtures)


def check_plan(plan: RoutePlan, policy: Policy) -> None:
    """Invariants of every plan."""
    assert plan.primary not in plan.fallbacks
    assert len(set(plan.fallbacks)) == len(plan.fallbacks) <= policy.routing.max_fallbacks
    assert plan.policy_hash == policy.hash and plan.reason
    assert [s.model for s in plan.steps] == list(plan.models)


# ── the matrix, the complexity map and the three preferences ────────────────
MATRIX_CASES = [
    # (category, complexity, preference, expected model, why)
    ("complex_coding", 1, "balanced", "google/gemini-2.5-flash-lite", "a one-line refactor needs no frontier model"),
    ("complex_coding", 3, "balanced", "google/gemini-2.5-flash", "complexity map"),
    ("complex_coding", 5, "balanced", "anthropic/claude-sonnet-4", "matrix default at the top"),
    ("complex_coding", 5, "cheapest", "deepseek/deepseek-r1", "tutorial: cost_optimized"),
    ("complex_coding", 1, "cheapest", "google/gemini-2.5-flash-lite", "already cheaper than cost_optimized"),
    ("complex_coding", 2, "best_quality", "anthropic/claude-sonnet-4", "tutorial: best quality -> default"),
    ("classification", 1, "balanced", "openai/gpt-4.1-nano", "tutorial default"),
    ("classification", 3, "balanced", "google/gemini-2.5-flash", "a subtle extraction needs more than the smallest"),
    ("classification", 5, "best_quality", "anthropic/claude-sonnet-4", "never below the balanced choice"),
    ("qa_retrieval", 1, "balanced", "google/gemini-2.5-flash", "tutorial default, even for trivia"),
    ("qa_retrieval", 2, "balanced", "google/gemini-2.5-flash", "tutorial default"),
    ("qa_retrieval", 4, "balanced", "anthropic/claude-sonnet-4", "tutorial: high_complexity from 4"),
    ("qa_retrieval", 2, "cheapest", "meta-llama/llama-4-maverick", "tutorial: cost_optimized"),
    ("deep_reasoning", 2, "balanced", "google/gemini-2.5-flash", "complexity map"),
    ("deep_reasoning", 4, "balanced", "deepseek/deepseek-r1", "complexity map -> cost_optimized slot"),
    ("deep_reasoning", 5, "balanced", "google/gemini-2.5-pro", "matrix default"),
    ("deep_reasoning", 4, "best_quality", "openai/o3", "tutorial: math_heavy from complexity 4"),
    ("deep_reasoning", 3, "best_quality", "google/gemini-2.5-pro", "below 4: default"),
    ("text_generation", 2, "best_quality", "anthropic/claude-opus-4", "tutorial: high_quality"),
    ("text_generation", 5, "balanced", "anthropic/claude-sonnet-4", "complexity map"),
    ("long_document", 2, "balanced", "google/gemini-2.5-flash", "cost_optimized slot"),
    ("long_document", 5, "balanced", "google/gemini-2.5-pro", "matrix default"),
    ("agentic_tool_use", 5, "balanced", "anthropic/claude-sonnet-4", "matrix default"),
    ("embedding", 1, "balanced", "openai/gpt-4.1-nano", "tutorial default"),
]


@pytest.mark.parametrize(
    ("category", "complexity", "preference", "expected", "why"), MATRIX_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in MATRIX_CASES]
)
def test_matrix_and_preferences(
    policy: Policy, everything: frozenset[str], category: str, complexity: int, preference: str, expected: str, why: str
) -> None:
    plan = select(cls(category, complexity), policy, RouteOptions(preference=preference), everything)
    assert plan.primary == expected, (why, plan.reason)
    assert plan.preference == preference
    check_plan(plan, policy)


def test_every_category_has_a_row_and_complexity_moves_the_choice(policy: Policy, everything: frozenset[str]) -> None:
    assert set(policy.routing.matrix) == set(CATEGORIES)
    for category in CATEGORIES:
        costs = []
        for complexity in range(1, 6):
            plan = select(cls(category, complexity), policy, RouteOptions(), everything)
            costs.append(plan.estimated_cost_usd)
        assert costs == sorted(costs), (category, costs)  # harder never routes to a cheaper model
        assert costs[0] < costs[-1], category


def test_default_preference_comes_from_the_policy(tmp_path: Path) -> None:
    p = custom_policy(tmp_path, {"default_preference": "best_quality"})
    plan = select(cls("qa_retrieval", 1), p, RouteOptions(), frozenset(p.models))
    assert plan.preference == "best_quality" and plan.primary == "google/gemini-2.5-flash"  # the default slot


def test_long_context_rule_for_coding(policy: Policy, everything: frozenset[str]) -> None:
    plan = select(cls("complex_coding", 3, inp=150_000), policy, RouteOptions(), everything)
    assert plan.primary == "google/gemini-2.5-pro" and "long_context" in plan.reason
    low = select(cls("complex_coding", 2, inp=150_000), policy, RouteOptions(), everything)
    assert low.primary == "google/gemini-2.5-flash"


# ── fallbacks, determinism, decision record ─────────────────────────────────
@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("complexity", [1, 3, 5])
def test_fallbacks_are_capable_distinct_and_prefer_other_providers(
    policy: Policy, everything: frozenset[str], category: str, complexity: int
) -> None:
    plan = select(cls(category, complexity, tools=True), policy, RouteOptions(), everything)
    check_plan(plan, policy)
    assert len(plan.fallbacks) == policy.routing.max_fallbacks
    primary_provider = policy.models[plan.primary].provider
    assert policy.models[plan.fallbacks[0]].provider != primary_provider


def test_same_request_and_policy_give_the_same_plan(policy: Policy, everything: frozenset[str]) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "Write a Python function that merges two sorted lists."}]}
    options = parse_route_options("auto", body, {}, None)
    first = select(classify(body), policy, options, everything)
    again = select(classify(body), load_policy(POLICIES, {}), options, everything)
    assert first == again and first.policy_hash == policy.hash and len(policy.hash) == 16


def test_policy_hash_changes_with_the_routing_policy(tmp_path: Path, policy: Policy) -> None:
    changed = custom_policy(tmp_path, {"max_fallbacks": 2})
    assert changed.hash != policy.hash


def test_decision_record_has_exactly_the_route_fields(policy: Policy, everything: frozenset[str]) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of Peru?"}]}
    c = classify(body)
    plan = select(c, policy, RouteOptions(), everything)
    record = decision_record("dec-1", c, plan, policy)
    assert list(record) == [
        "decision_id",
        "category",
        "complexity",
        "level",
        "confidence",
        "model",
        "provider",
        "tier",
        "fallbacks",
        "estimated_input_tokens",
        "estimated_output_tokens",
        "estimated_cost_usd",
        "reason",
        "policy_hash",
        "signals",
        "features",
    ]
    assert record["model"] == plan.primary and record["tier"] == policy.models[plan.primary].tier
    assert record["provider"] == policy.models[plan.primary].provider and record["decision_id"] == "dec-1"
    import orjson

    orjson.dumps(record)  # JSON-serialisable as is


# ── policy validation ──────────────────────────────────────────────────────
def test_shipped_policy_is_valid_and_names_only_registry_models(policy: Policy) -> None:
    for where, model_id in policy.routing.model_references():
        assert model_id in policy.models, where


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "matrix": {
                    "qa_retrieval": {
                        "default": "openai/gpt-9",
                        "cost_optimized": "openai/gpt-4.1-nano",
                        "self_hosted": "meta-llama/llama-4-scout",
                        "fallback": "openai/gpt-4.1",
                        "by_complexity": {1: "default", 2: "default", 3: "default", 4: "default", 5: "default"},
                    }
                }
            },
            "matrix.qa_retrieval.default: unknown model 'openai/gpt-9'",
        ),
        ({"capability_order": ["google/gemini-2.5-pro", "acme/unknown"]}, "capability_order[1]: unknown model"),
        (
            {
                "matrix": {
                    "qa_retrieval": {
                        "default": "openai/gpt-4.1",
                        "cost_optimized": "openai/gpt-4.1-nano",
                        "self_hosted": "meta-llama/llama-4-scout",
                        "fallback": "openai/gpt-4.1",
                        "by_complexity": {1: "default", 2: "default"},
                    }
                }
            },
            "by_complexity needs exactly the keys 1-5",
        ),
        (
            {
                "matrix": {
                    "qa_retrieval": {
                        "default": "openai/gpt-4.1",
                        "cost_optimized": "openai/gpt-4.1-nano",
                        "self_hosted": "meta-llama/llama-4-scout",
                        "fallback": "openai/gpt-4.1",
                        "by_complexity": {1: "math_heavy", 2: "default", 3: "default", 4: "default", 5: "default"},
                    }
                }
            },
            "names slot 'math_heavy'",
        ),
        ({"llm_classifier": {"enabled": True, "model": "acme/tiny"}}, "llm_classifier.model: unknown model"),
        ({"default_preference": "fastest"}, "default_preference"),
    ],
)
def test_invalid_routing_policy_is_rejected_with_its_field(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        custom_policy(tmp_path, change)
    assert message in str(err.value)


def test_partial_matrix_falls_back_to_default_tiers(tmp_path: Path) -> None:
    data = yaml.safe_load((POLICIES / "routing.yaml").read_text())
    del data["matrix"]["embedding"]
    (tmp_path / "models.yaml").write_text((POLICIES / "models.yaml").read_text())
    (tmp_path / "routing.yaml").write_text(yaml.safe_dump(data))
    p = load_policy(tmp_path, {})
    plan = select(cls("embedding", 1), p, RouteOptions(), frozenset(p.models))
    assert p.models[plan.primary].tier == 4 and "no matrix row" in plan.reason
    plan5 = select(cls("embedding", 5), p, RouteOptions(), frozenset(p.models))
    assert p.models[plan5.primary].tier == 1


def test_classification_replace_keeps_selection_pure(policy: Policy, everything: frozenset[str]) -> None:
    c = cls("qa_retrieval", 2)
    before = dataclasses.asdict(c)
    select(c, policy, RouteOptions(), everything)
    assert dataclasses.asdict(c) == before


def test_policy_without_routing_yaml_still_routes(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text((POLICIES / "models.yaml").read_text())
    p = load_policy(tmp_path, {})
    assert p.routing.matrix == {}
    for complexity, tier in p.routing.default_tier_by_complexity.items():
        plan = select(cls("qa_retrieval", complexity), p, RouteOptions(), frozenset(p.models))
        assert p.models[plan.primary].tier <= tier and not p.models[plan.primary].local
        check_plan(plan, p)
