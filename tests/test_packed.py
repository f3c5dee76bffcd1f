"""proxy/policy/packed.py: weight rows as one fixed-point int each; sums exact in every lane, or declined."""

from __future__ import annotations

import math
import random

from proxy.policy.packed import HEADROOM_BITS, Packed
from proxy.routing.learned import Router


def _data(weights: dict[str, list[float]]) -> dict[str, object]:
    return {
        "categories": ["a", "b"],
        "tiers": [2],
        "bias": [0.5, -0.25, 0.125],
        "weights": {k: tuple(v) for k, v in weights.items()},
        "calibration": {"2": [[], []]},
        "structure_value": 0.1,
    }


def test_column_sums_are_exact_with_negative_and_extreme_lanes() -> None:
    rng = random.Random(7)
    weights = {f"f{i}": tuple(round(rng.uniform(-30, 30), 4) for _ in range(11)) for i in range(300)}
    weights["low"] = (-30.0,) * 11
    weights["high"] = (30.0,) * 11
    packed = Packed.of(weights, 11)
    assert packed is not None and packed.scale == 10_000
    for key, row in weights.items():
        assert packed[key] == row  # each row unpacks to its floats, bit for bit
    feats = rng.sample(sorted(weights), 200)
    total = packed.unpack(sum(packed.rows[f] for f in feats))
    exact = [sum(round(weights[f][k] * 10_000) for f in feats) / 10_000 for k in range(11)]
    assert total == exact
    floats = [math.fsum(weights[f][k] for f in feats) for k in range(11)]
    assert all(abs(a - b) < 1e-9 for a, b in zip(total, floats, strict=True))
    for name, value in (("low", -30.0), ("high", 30.0)):  # as many extreme rows as fit: no lane overflows
        n = 1 << HEADROOM_BITS
        assert packed.fits(n) and not packed.fits(4 * n * (1 << 8))
        assert packed.unpack(packed.rows[name] * n) == [value * n] * 11


def test_weights_that_are_not_short_decimals_take_the_float_path() -> None:
    router = Router(_data({"x": [math.pi, 1.0, -2.0], "y": [0.5, 0.25, 1e-9]}), "t")
    assert router.packed is None
    assert router.logits({"x", "y", "z"}, ["y"]) == router.float_logits({"x", "y", "z"}, ["y"])
    assert Packed.of({"x": (0.1, 0.2)}, 3) is None  # rows of the wrong width


def test_a_request_with_more_features_than_the_lanes_hold_is_summed_chunk_by_chunk() -> None:
    weights = {f"f{i}": [1.5, -2.25, 0.0625] for i in range(50)}
    router = Router(_data(weights), "t")
    assert router.packed is not None and router.packed.size == 4
    n = next(n for n in range(1, 1 << 30, 1 << 12) if not router.packed.fits(n))
    many = [f"f{i % 50}" for i in range(n)]  # a structure block this long would overflow a lane in one sum
    assert router.packed.chunked_sums(many) == [1.5 * n, -2.25 * n, 0.0625 * n]  # exact: these sums are binary fractions
    assert router.logits(set(many[:100]), many) == router.float_logits(set(many[:100]), many)
    few = [f"f{i}" for i in range(50)]
    assert all(abs(a - b) < 1e-12 for a, b in zip(router.logits(set(few), few), router.float_logits(set(few), few), strict=True))
