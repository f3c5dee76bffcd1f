"""proxy/routing/selection.py: every hard constraint (context window, output tokens, tools,
vision, availability, the key's allowed models, cost, latency, token caps, self-hosted and
local only), the errors when nothing fits, budget homeostasis and prefer_local."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.errors import BudgetExceeded, NoCapableModel
from proxy.policy import Policy
from proxy.routing.options import RouteOptions
from proxy.routing.selection import select
from tests.support.selecting import cls, custom_policy, everything, policy  # noqa: F401  (fixtures)


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
