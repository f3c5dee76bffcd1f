"""The trained router (owns: category and per-tier adequacy probabilities from the shipped weights).

The artifact (`proxy/routing/model/router.json.gz`, rebuilt by `autoroute train`, read by the
policy loader and part of the policy hash) holds one
linear model over the features of `proxy/routing/features.py`: 8 category logits (softmax) and,
for tiers 2, 3 and 4, the logit of "a model of this tier is adequate" (ordinal: the least
adequate tier is >= t), each mapped to a probability by an isotonic calibrator fitted on
cross-validated predictions of the training split. Tier 1 is adequate by definition. The
artifact's `target_offsets` (category -> offset, fitted by `proxy/training/targets.py` at the
quality target `meta.offsets_at_target`, t0) shift the quality target per predicted category. They
are held as each category's slack, its share of the allowed inadequacy: (1 - t0 - offset) / (1 - t0).
A tier meets a target t when P >= 1 - (1 - t) * slack (`dial.threshold`): exactly t0 + offset at t0,
and the shift shrinks with the headroom as t nears 1 (an additive offset kept a category with a
negative one off the frontier at any target, and one with a positive offset above 1 - offset off
every cheaper tier). The probabilities themselves are reported as calibrated. The artifact's
`exclusions` (structure feature -> categories) are hard rules: a request bearing such a feature
is never put in those categories (they drop out of the argmax and the softmax, as a logit of
-inf would), e.g. no long_document under 2,500 tokens (`proxy/training/fit.py`, EXCLUSIONS).

Inference is pure Python (no scikit-learn, no numpy): a dict lookup per feature string and a
column sum over the found weight rows, done as one sum of packed fixed-point ints
(`proxy/policy/packed.py`: the artifact loader packs the rows as it reads them, and no float
rows are kept; `weights` is the packed rows' Mapping view, or the float rows of an artifact that
does not pack). `router_for(policy)` builds the model once per artifact; `predict` is pure.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.policy.packed import Packed
from proxy.routing.classify import refined_as
from proxy.routing.features import structure_features, text_features
from proxy.routing.textscan import Conversation

if TYPE_CHECKING:
    from proxy.policy import Policy

DEFAULT_ARTIFACT = Path(__file__).with_name("model") / "router.json.gz"
TIERS = (1, 2, 3, 4)


@dataclass(frozen=True)
class Calibrator:
    """Piecewise-linear isotonic map from a logit to a probability (clipped at the ends)."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __call__(self, x: float) -> float:
        xs, ys = self.xs, self.ys
        if not xs:
            return 1.0 / (1.0 + math.exp(-x))
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, x)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True)
class Prediction:
    category: str
    confidence: float  # softmax probability of the category
    adequacy: tuple[float, float, float, float]  # P(a tier-t model is adequate), t = 1..4, non-increasing
    runner_up: str
    slack: float = 1.0  # the category's share of 1 - quality_target (its target offset; 1.0: none)


class Router:
    """A loaded artifact. `predict` reads a parsed conversation; `refine` updates a heuristic Classification."""

    def __init__(self, data: Mapping[str, Any], digest: str) -> None:
        self.digest = digest
        self.signal = "learned:" + digest[:12]  # the decision record's `router` signal
        self.categories: tuple[str, ...] = tuple(data["categories"])
        self.tiers: tuple[int, ...] = tuple(data["tiers"])  # the thresholds after the categories (2, 3, 4)
        self.bias: tuple[float, ...] = tuple(data["bias"])
        weights = data["weights"]
        # load_artifact's Packed as it is; plain float rows (training, tests) are packed here
        packed = weights if isinstance(weights, Packed) else Packed.of(weights, len(self.bias))
        self.packed: Packed | None = packed  # None: weights that are not short decimals (the float path)
        self.weights: Mapping[str, Sequence[float]] = packed if packed is not None else {k: tuple(v) for k, v in weights.items()}
        exclusions: Mapping[str, Sequence[str]] = data.get("exclusions", {})
        self.exclusions = {f: frozenset(map(self.categories.index, cats)) for f, cats in exclusions.items()}  # feature -> category indices
        cal = data["calibration"]
        self.calibrators = {int(t): Calibrator(tuple(c[0]), tuple(c[1])) for t, c in cal.items() if ":" not in t}
        self.blend = float(data.get("calibration_blend", 0.0))  # weight of the predicted category's own calibrator
        self.by_category = {
            (t.split(":")[0], int(t.split(":")[1])): Calibrator(tuple(c[0]), tuple(c[1])) for t, c in cal.items() if ":" in t
        }
        self.offsets: dict[str, float] = {k: float(v) for k, v in data.get("target_offsets", {}).items()}
        self.meta: Mapping[str, Any] = data.get("meta", {})
        self.slack = slack_of(self.offsets, self.meta.get("offsets_at_target"))
        self._zero = (0.0,) * len(self.bias)
        self.structure_value = float(data.get("structure_value", 1.0))  # a structure feature's value in the design matrix

    def logits(self, text: set[str] | list[str], structure: list[str]) -> list[float]:
        packed = self.packed
        if packed is None:
            return self.float_logits(text, structure)
        if packed.fits(max(len(text), len(structure))):
            get = packed.rows.get
            tsum = packed.unpack(sum(filter(None, map(get, text))))  # all 11 column sums in one big-int sum
            ssum = packed.unpack(sum(filter(None, map(get, structure))))
        else:  # more rows than a lane's headroom holds: summed chunk by chunk
            tsum, ssum = packed.chunked_sums(text), packed.chunked_sums(structure)
        scale = 1.0 / math.sqrt(len(text)) if text else 0.0
        sv = self.structure_value
        return [b + scale * t + sv * s for b, t, s in zip(self.bias, tsum, ssum, strict=False)]

    def float_logits(self, text: set[str] | list[str], structure: list[str]) -> list[float]:
        """`logits` summed over the float rows (for artifacts `Packed` declines; the reference in tests)."""
        get = self.weights.get
        found = list(filter(None, map(get, text)))  # weight rows are non-empty tuples: filter(None) drops the misses in C
        tsum = list(map(sum, zip(*found, strict=False))) if found else self._zero
        scale = 1.0 / math.sqrt(len(text)) if text else 0.0
        found = list(filter(None, map(get, structure)))
        ssum = list(map(sum, zip(*found, strict=False))) if found else self._zero
        sv = self.structure_value
        return [b + scale * t + sv * s for b, t, s in zip(self.bias, tsum, ssum, strict=False)]

    def excluded(self, structure: list[str]) -> frozenset[int]:
        """The categories the request's structure features rule out (indices; usually none)."""
        rules = self.exclusions
        if not rules or rules.keys().isdisjoint(structure):
            return frozenset()
        return frozenset().union(*(rules[f] for f in structure if f in rules))

    def probabilities(self, logits: Sequence[float], excluded: Collection[int] = ()) -> Prediction:
        n = len(self.categories)
        cat = list(logits[:n])
        for i in excluded:  # ruled out: out of the argmax and the softmax (exp(-inf) = 0)
            cat[i] = -math.inf
        top = max(cat)
        best = cat.index(top)  # the first of equals: ties keep the category order
        second, low = -1, -math.inf
        for i, v in enumerate(cat):  # the runner-up: the first of the best others
            if i != best and (second < 0 or v > low):
                second, low = i, v
        exp = math.exp
        total = sum([exp(v - top) for v in cat])  # the best one's term is exp(0) = 1
        category = self.categories[best]
        calibrators = self.calibrators
        own = self.by_category if self.blend else None
        p = 1.0
        adequacy = [1.0]
        for i, tier in enumerate(self.tiers):
            x = logits[n + i]
            q = calibrators[tier](x)
            if own is not None and (mine := own.get((category, tier))) is not None:
                q = (1.0 - self.blend) * q + self.blend * mine(x)
            p = min(p, q)
            adequacy.append(p)
        return Prediction(
            category=category,
            confidence=1.0 / total,
            adequacy=(adequacy[0], adequacy[1], adequacy[2], adequacy[3]),
            runner_up=self.categories[second],
            slack=self.slack.get(category, 1.0),
        )

    def predict_features(self, text: set[str] | list[str], structure: list[str]) -> Prediction:
        """The prediction for a request's features: logits, its exclusions, probabilities."""
        return self.probabilities(self.logits(text, structure), self.excluded(structure))

    def predict(self, conv: Conversation, tools: list[Any], body: Mapping[str, Any], heuristic: Any) -> Prediction:
        return self.predict_features(text_features(conv, tools), structure_features(conv, tools, body, heuristic))

    def refine(self, conv: Conversation, tools: list[Any], body: Mapping[str, Any], c: Any) -> Any:
        """The heuristic Classification `c` with the learned category, confidence and adequacy."""
        p = self.predict(conv, tools, body, c)
        signals = dict(c.signals)
        signals["heuristic"] = c.category
        signals["router"] = self.signal
        signals["adequacy"] = [round(x, 4) for x in p.adequacy]
        if p.slack != 1.0:
            signals["slack"] = round(p.slack, 4)
        return refined_as(c, p.category, round(p.confidence, 3), signals, p.adequacy, c.estimated_output_tokens, p.slack)


def slack_of(offsets: Mapping[str, float], fitted_at: Any) -> dict[str, float]:
    """Category -> slack, (1 - t0 - offset) / (1 - t0), from offsets fitted at target t0 (never below 0).
    Without t0 (an artifact from before it was recorded, or no offsets) there is nothing to scale: none."""
    if not offsets or not isinstance(fitted_at, int | float) or isinstance(fitted_at, bool) or not 0.0 <= fitted_at < 1.0:
        return {}
    room = 1.0 - float(fitted_at)
    return {c: max(0.0, (room - off) / room) for c, off in offsets.items() if off}


_ROUTERS: dict[str, Router] = {}  # artifact digest -> model, built once per artifact


def router_for(policy: Policy) -> Router | None:
    """The policy's trained router (None: heuristic and matrix only). Built on first use, then cached."""
    artifact = policy.router_artifact
    if artifact is None:
        return None
    router = _ROUTERS.get(artifact.digest)
    if router is None:
        router = _ROUTERS[artifact.digest] = Router(artifact.data, artifact.digest)
    return router


def load_router(path: Path | str = DEFAULT_ARTIFACT) -> Router:
    """Read an artifact file into a model (training and tests; the proxy goes through the policy)."""
    from proxy.policy.artifact import load_artifact

    artifact = load_artifact(path)
    return Router(artifact.data, artifact.digest)
