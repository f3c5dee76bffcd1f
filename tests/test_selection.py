"""proxy/routing/selection.py, proxy/routing/options.py and policies/routing.yaml: the matrix, the
preferences, every hard constraint, fallbacks, errors, options parsing and determinism."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.errors import BudgetExceeded, InvalidRequest, NoCapableModel, PolicyError
from proxy.policy import Policy, load_policy
from proxy.policy.routing import CATEGORIES
from proxy.routing.classify import Classification, classify, level_for
from proxy.routing.options import KeyRouteDefaults, RouteOptions, is_auto, parse_route_options
from proxy.routing.selection import RoutePlan, decision_record, select

POLICIES = Path(__file__).resolve().parents[1] / "policies"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(POLICIES, {})


@pytest.fixture(scope="module")
def everything(policy: Policy) -> frozenset[str]:
    return frozenset(policy.models)


def cls(category: str, complexity: int, *, inp: int = 500, out: int = 400, tools: bool = False, vision: bool = False) -> Classification:
    return Classification(
        category=category,
        complexity=complexity,
        level=level_for(complexity),
        estimated_input_tokens=inp,
        estimated_output_tokens=out,
        needs_tools=tools,
        needs_vision=vision,
        needs_long_context=inp > 50_000,
        confidence=0.9,
        signals={},
    )


def custom_policy(tmp_path: Path, routing: dict[str, Any] | None = None, models: dict[str, dict[str, Any]] | None = None) -> Policy:
    """The shipped policy with routing fields and registry model fields overridden."""
    registry = yaml.safe_load((POLICIES / "models.yaml").read_text())
    for model in registry["models"]:
        model.update((models or {}).get(model["id"], {}))
    data = yaml.safe_load((POLICIES / "routing.yaml").read_text())
    data.update(routing or {})
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(registry))
    (tmp_path / "routing.yaml").write_text(yaml.safe_dump(data))
    return load_policy(tmp_path, {})


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


# ── hard constraints ───────────────────────────────────────────────────────
def test_context_window_too_small_moves_to_next_capable(policy: Policy, everything: frozenset[str]) -> None:
    # deep_reasoning 4 -> deepseek-r1 (128k context); 150k tokens do not fit
    plan = select(cls("deep_reasoning", 4, inp=150_000), policy, RouteOptions(), everything)
    assert plan.primary != "deepseek/deepseek-r1"
    assert policy.models[plan.primary].context_window >= 150_400
    assert "deepseek/deepseek-r1 has too small a context window" in plan.reason
    assert policy.models[plan.primary].tier == 2  # same tier first


def test_requested_output_counts_against_context_and_max_output(policy: Policy, everything: frozenset[str]) -> None:
    c = cls("complex_coding", 5, inp=1000)
    plan = select(c, policy, RouteOptions(requested_output_tokens=70_000), everything)
    assert plan.primary != "anthropic/claude-sonnet-4"  # max_output_tokens 64000
    assert "cannot produce that many output tokens" in plan.reason
    assert plan.output_tokens == 70_000


def test_tools_constraint(tmp_path: Path) -> None:
    p = custom_policy(tmp_path, models={"google/gemini-2.5-flash-lite": {"supports_tools": False}})
    plan = select(cls("complex_coding", 1, tools=True), p, RouteOptions(), frozenset(p.models))
    assert plan.primary != "google/gemini-2.5-flash-lite" and p.models[plan.primary].tier == 4
    assert "has no tool calling" in plan.reason
    assert all(p.models[m].supports_tools for m in plan.models)


def test_vision_constraint(policy: Policy, everything: frozenset[str]) -> None:
    plan = select(cls("complex_coding", 1, vision=True), policy, RouteOptions(), everything)
    assert policy.models[plan.primary].supports_vision
    assert "takes no images" in plan.reason
    assert all(policy.models[m].supports_vision for m in plan.models)


def test_unavailable_model_is_replaced_in_the_same_tier(policy: Policy, everything: frozenset[str]) -> None:
    available = everything - {"google/gemini-2.5-flash"}
    plan = select(cls("qa_retrieval", 2), policy, RouteOptions(), available)
    assert plan.primary in available and policy.models[plan.primary].tier == 2
    assert "has no usable deployment" in plan.reason
    assert "google/gemini-2.5-flash" not in plan.models


def test_key_allowed_patterns(policy: Policy, everything: frozenset[str]) -> None:
    openai_ids = frozenset(m for m in policy.models if m.startswith("openai/"))  # what proxy/keys/access.py decides
    options = RouteOptions(allowed_model_patterns=("openai/*",), allowed_models=openai_ids)
    plan = select(cls("complex_coding", 5), policy, options, everything)
    assert all(m.startswith("openai/") for m in plan.models)
    assert "is not allowed for this key" in plan.reason
    assert policy.models[plan.primary].tier == 1  # same tier first: o3


def test_cost_cap_from_request_and_policy(tmp_path: Path, policy: Policy, everything: frozenset[str]) -> None:
    c = cls("complex_coding", 5, inp=2000, out=4000)
    plan = select(c, policy, RouteOptions(max_cost_usd=0.01), everything)
    assert plan.estimated_cost_usd <= 0.01 and "is over the cost cap" in plan.reason
    assert all(policy.models[m].cost_usd(2000, 4000) <= 0.01 for m in plan.models)
    capped = custom_policy(tmp_path, {"max_cost_per_request_usd": 0.01})
    assert select(c, capped, RouteOptions(), frozenset(capped.models)).estimated_cost_usd <= 0.01


def test_latency_cap_uses_model_speed(tmp_path: Path) -> None:
    p = custom_policy(tmp_path, {"max_latency_s": 10})
    plan = select(cls("deep_reasoning", 5, out=4000), p, RouteOptions(), frozenset(p.models))
    assert plan.estimated_latency_s <= 10
    assert plan.primary != "google/gemini-2.5-pro"  # 0.5 + 4000/248 = 16.6 s
    assert "is too slow for max_latency_s" in plan.reason


def test_max_tokens_per_request(tmp_path: Path) -> None:
    p = custom_policy(tmp_path, {"max_tokens_per_request": 10_000})
    with pytest.raises(NoCapableModel, match="max_tokens_per_request"):
        select(cls("long_document", 2, inp=20_000), p, RouteOptions(), frozenset(p.models))


def test_self_hosted_only_uses_the_matrix_self_hosted_slot(policy: Policy, everything: frozenset[str]) -> None:
    plan = select(cls("complex_coding", 5), policy, RouteOptions(self_hosted_only=True), everything)
    assert plan.primary == "deepseek/deepseek-r1" and "self_hosted" in plan.reason
    assert all(policy.models[m].self_hosted for m in plan.models)


def test_self_hosted_only_with_images_finds_a_self_hosted_vision_model(policy: Policy, everything: frozenset[str]) -> None:
    plan = select(cls("deep_reasoning", 3, vision=True), policy, RouteOptions(self_hosted_only=True), everything)
    assert plan.primary == "meta-llama/llama-4-maverick"


def test_local_only(policy: Policy, everything: frozenset[str]) -> None:
    plan = select(cls("qa_retrieval", 1), policy, RouteOptions(local_only=True, self_hosted_only=True), everything)
    assert plan.primary == "ollama/qwen3:1.7b" and plan.fallbacks == () and plan.estimated_cost_usd == 0
    with pytest.raises(NoCapableModel, match="image input"):
        select(cls("qa_retrieval", 1, vision=True), policy, RouteOptions(local_only=True), everything)
    with pytest.raises(NoCapableModel, match="context window"):
        select(cls("long_document", 2, inp=40_000), policy, RouteOptions(local_only=True), everything)


def test_nothing_capable_names_the_unmet_constraints(policy: Policy, everything: frozenset[str]) -> None:
    with pytest.raises(NoCapableModel) as err:
        select(cls("long_document", 3, inp=20_000_000), policy, RouteOptions(), everything)
    assert "context window of 20,000,400 tokens" in err.value.message
    assert err.value.status == 422 and err.value.body()["error"]["code"] == "no_capable_model"
    with pytest.raises(NoCapableModel) as err:
        select(
            cls("qa_retrieval", 1, vision=True),
            policy,
            RouteOptions(allowed_model_patterns=("openai/gpt-4.1-nano",), allowed_models=frozenset({"openai/gpt-4.1-nano"})),
            everything,
        )
    assert "image input" in err.value.message
    with pytest.raises(NoCapableModel, match="usable deployment"):
        select(cls("qa_retrieval", 1), policy, RouteOptions(), frozenset())


# ── budget homeostasis ──────────────────────────────────────────────────────
def test_budget_downgrades_and_says_so(policy: Policy, everything: frozenset[str]) -> None:
    c = cls("complex_coding", 5, inp=2000, out=4000)
    full = select(c, policy, RouteOptions(), everything)
    tight = select(c, policy, RouteOptions(budget_remaining_usd=0.005), everything)
    assert tight.estimated_cost_usd <= 0.005 < full.estimated_cost_usd
    assert tight.reason.count("budget") >= 1 and "downgraded to" in tight.reason
    broke = select(c, policy, RouteOptions(budget_remaining_usd=0.0), everything)
    assert broke.primary == "ollama/qwen3:1.7b"  # free and local: the last rung
    with pytest.raises(BudgetExceeded) as err:
        select(c, policy, RouteOptions(budget_remaining_usd=0.0), everything - {"ollama/qwen3:1.7b"})
    assert err.value.status == 429


# ── prefer_local ────────────────────────────────────────────────────────────
def test_prefer_local_takes_only_what_the_local_model_can_do(tmp_path: Path) -> None:
    p = custom_policy(tmp_path, {"prefer_local": True})
    available = frozenset(p.models)
    easy = select(cls("classification", 1), p, RouteOptions(), available)
    assert easy.primary == "ollama/qwen3:1.7b" and "prefer_local" in easy.reason
    assert easy.fallbacks and easy.fallbacks[0] == "openai/gpt-4.1-nano"  # the cloud choice first
    hard = select(cls("complex_coding", 3), p, RouteOptions(), available)
    assert hard.primary == "google/gemini-2.5-flash"
    too_big = select(cls("classification", 1, inp=40_000), p, RouteOptions(), available)
    assert too_big.primary != "ollama/qwen3:1.7b" and "prefer_local skipped" in too_big.reason
    no_cloud = custom_policy(tmp_path, {"prefer_local": True, "allow_cloud_fallback": False})
    local_only_plan = select(cls("classification", 1), no_cloud, RouteOptions(), frozenset(no_cloud.models))
    assert local_only_plan.primary == "ollama/qwen3:1.7b" and local_only_plan.fallbacks == ()


def test_prefer_local_is_off_by_default(policy: Policy) -> None:
    assert policy.routing.prefer_local is False


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


# ── route options ──────────────────────────────────────────────────────────
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
