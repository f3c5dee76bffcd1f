"""The trained router and the quality dial: probabilities, targets, substitution, no sklearn at run time."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from proxy.errors import InvalidRequest
from proxy.policy import Policy
from proxy.routing import dial
from proxy.routing.classify import Classification, classify
from proxy.routing.learned import router_for
from proxy.routing.options import KeyRouteDefaults, RouteOptions, parse_route_options
from proxy.routing.selection import select
from tests.conftest import REPO

OPENAI_AND_DEEPSEEK = frozenset({"openai/gpt-4.1", "openai/gpt-4.1-nano", "openai/o4-mini", "openai/o3", "deepseek/deepseek-r1"})
OPENAI_AND_ANTHROPIC = frozenset(
    {"openai/gpt-4.1", "openai/gpt-4.1-nano", "openai/o4-mini", "openai/o3", "anthropic/claude-sonnet-4", "anthropic/claude-opus-4"}
)


def user(text: str) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


def fixed(c: Classification, adequacy: tuple[float, float, float, float]) -> Classification:
    return replace(c, adequacy=adequacy)


def test_the_shipped_router_loads_and_gives_monotone_probabilities(policy: Policy) -> None:
    assert router_for(policy) is not None
    c = classify(user("Prove that there are infinitely many primes p with p = 3 mod 4, rigorously."), router_for(policy))
    assert c.adequacy is not None and c.adequacy[0] == 1.0
    assert all(a >= b for a, b in zip(c.adequacy, c.adequacy[1:], strict=False))
    easy = classify(user("hi there!"), router_for(policy))
    assert easy.adequacy is not None and easy.adequacy[3] > c.adequacy[3]  # a greeting is more likely fine on tier 4
    assert c.signals["router"].startswith("learned:")


def test_capital_of_france_without_gemini_goes_to_a_cheap_model_not_a_reasoner(policy: Policy) -> None:
    c = classify(user("Capital of France?"), router_for(policy))
    plan = select(c, policy, RouteOptions(), OPENAI_AND_DEEPSEEK)
    assert plan.primary not in ("deepseek/deepseek-r1", "openai/o4-mini", "openai/o3"), plan.reason
    assert policy.models[plan.primary].tier >= 3


def test_an_image_question_goes_to_the_cheapest_adequate_vision_model_not_the_frontier(policy: Policy) -> None:
    body = {
        "model": "auto",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What colour is the car in this photo?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
    }
    c = classify(body, router_for(policy))
    plan = select(c, policy, RouteOptions(), OPENAI_AND_ANTHROPIC)
    assert policy.models[plan.primary].supports_vision
    assert plan.primary == "openai/gpt-4.1", plan.reason  # the only workhorse with vision among these


def test_the_dial_takes_the_cheapest_model_meeting_the_target(policy: Policy) -> None:
    base = classify(user("Summarise the main causes of the First World War in a paragraph."))
    c = fixed(base, (1.0, 0.97, 0.91, 0.6))
    everything = frozenset(policy.models)
    at_90 = select(c, policy, RouteOptions(quality_target=0.9), everything)
    at_95 = select(c, policy, RouteOptions(quality_target=0.95), everything)
    at_99 = select(c, policy, RouteOptions(quality_target=0.99), everything)
    assert policy.models[at_90.primary].tier == 3
    assert policy.models[at_95.primary].tier == 2
    assert policy.models[at_99.primary].tier == 1
    assert at_90.estimated_cost_usd < at_95.estimated_cost_usd < at_99.estimated_cost_usd
    tier3 = [m for m in policy.models.values() if m.tier == 3]
    assert at_90.primary == min(tier3, key=lambda m: m.cost_usd(c.estimated_input_tokens, c.estimated_output_tokens)).id
    assert at_90.quality_target == 0.9


def test_preferences_are_named_points_on_the_dial(policy: Policy) -> None:
    points = policy.routing.quality_points
    assert dial.target_for(policy, "cheapest", None) == points.cheapest
    assert dial.target_for(policy, "best_quality", None) == points.best_quality
    assert dial.target_for(policy, "balanced", None) == policy.routing.quality_target
    assert dial.target_for(policy, "cheapest", 0.97) == 0.97


def test_feedback_factors_lower_a_tier_and_every_cheaper_one() -> None:
    probs = dial.adequacy("qa_retrieval", (1.0, 0.99, 0.95, 0.9), {"qa_retrieval": {3: 0.5}})
    assert probs == (1.0, 0.99, 0.475, 0.475)
    assert dial.adequacy("coding", (1.0, 0.99, 0.95, 0.9), {"qa_retrieval": {3: 0.5}}) == (1.0, 0.99, 0.95, 0.9)


@pytest.mark.parametrize("bad", ["high", 1.5, 0.2, True, [0.9], float("nan")])
def test_route_quality_target_must_be_a_probability(bad: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_route_options("auto", {"route": {"quality_target": bad}}, {})
    assert info.value.param == "route.quality_target"


def test_quality_target_sources_request_then_preference_then_key() -> None:
    key = KeyRouteDefaults(quality_target=0.97)
    assert parse_route_options("auto", {}, {}, key).quality_target == 0.97
    assert parse_route_options("auto", {"route": {"quality_target": 0.8}}, {}, key).quality_target == 0.8
    explicit = parse_route_options("auto:cheapest", {}, {}, key)
    assert explicit.quality_target is None and explicit.preference == "cheapest"  # the request's own choice wins


def test_inference_needs_neither_sklearn_nor_numpy() -> None:
    code = (
        "import sys; from proxy.policy import load_policy; from proxy.routing.classify import classify; from proxy.routing.learned import router_for\n"
        "p = load_policy('policies', {}); c = classify({'messages': [{'role': 'user', 'content': 'hello'}]}, router_for(p))\n"
        "assert c.adequacy is not None\n"
        "bad = [m for m in ('sklearn', 'numpy', 'scipy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_the_artifact_is_part_of_the_policy_hash(policy: Policy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from proxy.policy import load_policy
    from tests.support.policies import policy_copy

    plain = policy_copy(tmp_path / "a")
    without = policy_copy(tmp_path / "b", files={})
    text = (without / "routing.yaml").read_text()
    (without / "routing.yaml").write_text(text.replace("router: builtin", "router: null"))
    first, second = load_policy(plain, {}), load_policy(without, {})
    assert first.router_artifact is not None and second.router_artifact is None
    assert first.hash != second.hash


def test_pick_is_the_cheapest_meeting_candidate_reasoning_output_and_rank_included(policy: Policy) -> None:
    import random

    rng = random.Random(7)
    index_rank = {m: i for i, m in enumerate(sorted(policy.models))}
    specs = list(policy.models.values())
    for _ in range(300):
        probs = tuple(sorted((round(rng.random(), 2) for _ in range(3)), reverse=True))
        p = (1.0, *probs)
        target = rng.choice([0.5, 0.8, 0.84, 0.9, 0.99])
        tokens_in, tokens_out = rng.randint(10, 50_000), rng.randint(1, 4000)
        pool = rng.sample(specs, rng.randint(1, len(specs)))
        chosen, rule = dial.pick(pool, p, target, tokens_in, tokens_out, 3.0, index_rank)
        meeting = [m for m in pool if p[m.tier - 1] >= target]
        if meeting:  # the reference: cost with reasoning models' output tripled, then rank, first of equals
            ref = min(meeting, key=lambda m: (dial.dial_cost(m, tokens_in, tokens_out, 3.0), index_rank[m.id]))
            assert chosen is ref and rule.startswith("cheapest model"), (chosen.id, ref.id)
        else:
            assert rule.startswith("no capable model reaches")


def test_adequacy_without_feedback_is_the_routers_own_when_ordered() -> None:
    assert dial.adequacy("qa_retrieval", (1.0, 0.9, 0.9, 0.2), {}) == (1.0, 0.9, 0.9, 0.2)
    assert dial.adequacy("qa_retrieval", (1.0, 0.5, 0.7, 1.2), {}) == (1.0, 0.5, 0.5, 0.5)  # not ordered: made so
    assert dial.describe((1.0, 0.934, 0.5, 0.0049)) == "P(adequate) t1=1.00 t2=0.93 t3=0.50 t4=0.00"
