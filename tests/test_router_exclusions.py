"""proxy/routing/learned.py: the artifact's exclusions are hard rules. A request bearing an excluding
structure feature is never put in the excluded category, whatever its logit; it drops out of the
argmax and the softmax (as a logit of -inf would), and nothing else changes."""

from __future__ import annotations

import math

from proxy.routing.learned import Router


def _router(exclusions: dict[str, list[str]]) -> Router:
    return Router(
        {
            "categories": ["a", "b", "c"],
            "tiers": [2, 3, 4],
            "bias": [0.0] * 6,
            # "x" makes a win by far, b second; "doc 0" and "other" are structure features with no say on a
            "weights": {"x": [9.0, 1.0, 0.5, 0.25, 0.5, -1.0], "doc 0": [0.0] * 6, "other": [0.0, 0.0, 0.0, 0.5, 0.0, 0.0]},
            "calibration": {t: [[], []] for t in ("2", "3", "4")},
            "structure_value": 0.1,
            "exclusions": exclusions,
        },
        "t",
    )


def test_an_excluding_feature_rules_its_category_out_of_argmax_and_softmax() -> None:
    router = _router({"doc 0": ["a"]})
    free = router.predict_features({"x"}, ["other"])
    assert (free.category, free.runner_up) == ("a", "b")
    ruled = router.predict_features({"x"}, ["other", "doc 0"])
    assert (ruled.category, ruled.runner_up) == ("b", "c")
    logits = router.logits({"x"}, ["other", "doc 0"])
    assert math.isclose(ruled.confidence, 1 / (1 + math.exp(logits[2] - logits[1])), rel_tol=1e-12)  # a takes no share
    unruled = _router({}).predict_features({"x"}, ["other", "doc 0"])
    assert (unruled.category, ruled.adequacy) == ("a", unruled.adequacy)  # the same features, no rule: a; tiers untouched
    assert router.excluded(["doc 0"]) == {0} and router.excluded(["other"]) == frozenset()
