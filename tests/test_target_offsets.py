"""Per-category quality-target offsets: fitted for the same adequacy at less cost, applied by the router."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.policy.routing import CATEGORIES
from proxy.routing.learned import Router

np = pytest.importorskip("numpy")


def _data(offsets: dict[str, object]) -> dict:
    n = len(CATEGORIES)
    bias = [0.0] * n + [0.5, 0.0, -0.5]
    bias[CATEGORIES.index("long_document")] = 3.0  # the predicted category
    cal: dict[str, list[list[float]]] = {str(t): [[], []] for t in (2, 3, 4)}  # empty calibrators: the logistic function
    return {"categories": list(CATEGORIES), "tiers": [2, 3, 4], "bias": bias, "weights": {}, "calibration": cal, "target_offsets": offsets}


def test_offsets_are_slack_that_shrinks_as_the_target_nears_one() -> None:
    from proxy.routing import dial

    data = _data({"long_document": -0.08, "qa_retrieval": 0.04})
    data["meta"] = {"offsets_at_target": 0.84}
    plain = Router(_data({}), "a").probabilities(Router(_data({}), "a").logits(set(), []))
    router = Router(data, "b")
    shifted = router.probabilities(router.logits(set(), []))
    assert plain.category == shifted.category == "long_document"
    assert shifted.adequacy == plain.adequacy  # the probabilities are reported as calibrated
    assert shifted.slack == pytest.approx(1.5) and router.slack["qa_retrieval"] == pytest.approx(0.75)
    # at the target the offsets were fitted at, the threshold is exactly target + offset
    assert dial.threshold(0.84, shifted.slack) == pytest.approx(0.84 - 0.08)
    assert dial.threshold(0.84, router.slack["qa_retrieval"]) == pytest.approx(0.84 + 0.04)
    # towards 1 every category's threshold goes to 1 (an additive -0.08 would stop at 0.92)
    assert dial.threshold(0.99, shifted.slack) == pytest.approx(0.985)
    assert dial.threshold(1.0, shifted.slack) == 1.0
    assert dial.threshold(0.99, router.slack["qa_retrieval"]) < 1.0  # +0.04 no longer rules out every cheaper tier
    assert dial.threshold(0.9, 1.0) == 0.9  # no offset: the target itself, bit for bit
    # an artifact without the target its offsets were fitted at keeps them out
    assert Router(_data({"long_document": -0.08}), "c").slack == {}


def test_a_category_with_slack_takes_a_cheaper_tier_at_the_fit_target_and_the_frontier_near_one(policy) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from proxy.routing.classify import classify
    from proxy.routing.options import RouteOptions
    from proxy.routing.selection import select

    base = classify({"model": "auto", "messages": [{"role": "user", "content": "Summarise this report."}]})
    c = replace(base, category="long_document", adequacy=(1.0, 0.95, 0.80, 0.40), slack=1.5)
    everything = frozenset(policy.models)
    at_fit = select(c, policy, RouteOptions(quality_target=0.84), everything)
    near_one = select(c, policy, RouteOptions(quality_target=0.99), everything)
    assert policy.models[at_fit.primary].tier == 3  # 0.80 >= 1 - 0.16 * 1.5 = 0.76
    assert policy.models[near_one.primary].tier == 1  # 0.95 < 1 - 0.01 * 1.5 = 0.985
    assert "category slack 1.50" in at_fit.reason
    plain = select(replace(c, slack=1.0), policy, RouteOptions(quality_target=0.84), everything)
    assert policy.models[plain.primary].tier == 2  # without the slack 0.80 < 0.84


def test_offsets_keep_the_adequacy_of_the_global_target_for_less_cost() -> None:
    from proxy.training.targets import _routed, choose_offsets

    rng = np.random.default_rng(7)
    n = 4000
    predicted = np.where(rng.random(n) < 0.5, "long_document", "qa_retrieval")
    p2 = rng.random(n)
    probs = np.column_stack([np.ones(n), p2, p2 * 0.7, p2 * 0.4])
    labels = np.where(rng.random(n) < p2, 2, 1)  # tier 2 adequate with probability p2
    labels = np.where((labels == 2) & (rng.random(n) < 0.7), 3, labels)
    tier = np.tile([1, 1, 2, 3, 4], (n, 1))
    price = np.where(predicted == "long_document", 30.0, 1.0)[:, None]  # a long document costs 30x per request
    cost = price * np.array([0.0, 1.0, 0.3, 0.1, 0.02])
    offsets = choose_offsets(probs, list(predicted), labels, cost, tier, 0.83)
    assert offsets["long_document"] < 0 < offsets["qa_retrieval"]  # the money moves to the cheap adequacy points
    base_cost, base_ok = _routed(probs, 0.83, cost, tier, labels)
    thresholds = 0.83 + np.array([offsets.get(c, 0.0) for c in predicted])
    new_cost, new_ok = _routed(probs, thresholds, cost, tier, labels)
    assert new_ok.sum() >= base_ok.sum()
    assert new_cost.sum() < 0.95 * base_cost.sum()


def test_no_category_falls_below_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the floor the sweep bought cheap adequacy points elsewhere and left long
    # documents adequate 0.85 of the time in cross-validation (0.97 at the global target).
    from proxy.training import targets

    rng = np.random.default_rng(11)
    n = 4000
    predicted = np.where(rng.random(n) < 0.5, "long_document", "qa_retrieval")
    p2 = rng.random(n)
    probs = np.column_stack([np.ones(n), p2, p2 * 0.7, p2 * 0.4])
    long_docs = predicted == "long_document"
    # long documents: adequacy follows the probability; questions: a coin flip the model cannot see
    labels = np.where(long_docs, np.where(rng.random(n) < 0.3 + 0.7 * p2, 2, 1), np.where(rng.random(n) < 0.5, 1, 2))
    tier = np.tile([1, 1, 2, 3, 4], (n, 1))
    cost = np.where(long_docs, 30.0, 1.0)[:, None] * np.array([0.0, 1.0, 0.3, 0.1, 0.02])

    def long_doc_adequacy(floor: float) -> float:
        monkeypatch.setattr(targets, "FLOOR", floor)
        offsets = targets.choose_offsets(probs, list(predicted), labels, cost, tier, 0.83)
        assert offsets.get("long_document", 0.0) < 0  # money still moves to the cheap adequacy points
        _, ok = targets._routed(probs, 0.83 + np.array([offsets.get(c, 0.0) for c in predicted]), cost, tier, labels)
        return float(ok[long_docs].mean())

    assert long_doc_adequacy(0.0) < 0.95  # without a floor long documents pay for the questions
    assert long_doc_adequacy(0.96) >= 0.96 - 1e-9


def test_an_artifact_with_malformed_offsets_is_refused(tmp_path: Path) -> None:
    import json

    from proxy.policy.artifact import load_artifact

    path = tmp_path / "r.json"
    path.write_text(json.dumps(_data({"long_document": -0.1})))
    assert load_artifact(path).data["target_offsets"] == {"long_document": -0.1}
    path.write_text(json.dumps(_data({"long_document": "low"})))
    with pytest.raises(ValueError, match="target_offsets"):
        load_artifact(path)
