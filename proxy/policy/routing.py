"""Routing policy (`policies/routing.yaml`): decision matrix, complexity map, preferences, knobs.

The schema only; `proxy/routing/selection.py` applies it and `policies/routing.yaml` documents each
field. Every model id here is checked against the registry at load
(`proxy.policy._check_cross_references` calls `RoutingPolicy.model_references`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, model_validator

from proxy.policy.registry import Strict
from proxy.vocab import Category, Preference

CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)  # plain str: JSON object keys
Slot = Literal[
    "default",
    "cost_optimized",
    "self_hosted",
    "fallback",
    "math_heavy",
    "long_context",
    "high_complexity",
    "high_quality",
]
SLOTS: tuple[str, ...] = Slot.__args__  # type: ignore[attr-defined]
COMPLEXITIES = (1, 2, 3, 4, 5)


class CategoryRoute(Strict):
    """One row of the tutorial's decision matrix plus the complexity map that refines it."""

    default: str
    cost_optimized: str
    self_hosted: str
    fallback: str
    math_heavy: str | None = None
    long_context: str | None = None
    high_complexity: str | None = None
    high_quality: str | None = None
    by_complexity: dict[int, str] = Field(description="complexity 1-5 -> a model id or the name of a slot of this row (balanced choice)")

    @model_validator(mode="after")
    def _complete(self) -> CategoryRoute:
        missing = [c for c in COMPLEXITIES if c not in self.by_complexity]
        extra = [c for c in self.by_complexity if c not in COMPLEXITIES]
        if missing or extra:
            raise ValueError(f"by_complexity needs exactly the keys 1-5 (missing {missing}, unexpected {extra})")
        for value in self.by_complexity.values():
            if value in SLOTS and self.slot(value) is None:
                raise ValueError(f"by_complexity names slot {value!r}, which this category does not define")
        return self

    def slot(self, name: str) -> str | None:
        return getattr(self, name) if name in SLOTS else None

    def resolve(self, value: str) -> str:
        """A by_complexity value as a model id (slot names are looked up in this row)."""
        return self.slot(value) or value

    def model_ids(self) -> Iterator[tuple[str, str]]:
        for name in SLOTS:
            value = self.slot(name)
            if value:
                yield name, value
        for level, value in sorted(self.by_complexity.items()):
            if value not in SLOTS:
                yield f"by_complexity.{level}", value


class BalancedRules(Strict):
    long_context_min_complexity: int = Field(
        3, ge=1, le=5, description="needs_long_context upgrades to the row's long_context slot from this complexity"
    )


class BestQualityRules(Strict):
    math_heavy_min_complexity: int = Field(
        4, ge=1, le=5, description="deep_reasoning from this complexity uses the math_heavy slot (tutorial: o3)"
    )
    use_high_quality: bool = Field(True, description="text_generation uses the high_quality slot (tutorial: Opus)")


class PreferenceRules(Strict):
    balanced: BalancedRules = BalancedRules()
    best_quality: BestQualityRules = BestQualityRules()


class LLMClassifierSettings(Strict):
    """The tutorial's Layer 1: ask a cheap model when the heuristic is unsure. Off by default."""

    enabled: bool = False
    model: str = "openai/gpt-4.1-nano"
    min_confidence: float = Field(0.5, ge=0, le=1, description="heuristic verdicts below this are refined")
    timeout_s: float = Field(1.5, gt=0)
    cache_size: int = Field(4096, ge=0)
    cache_ttl_s: float = Field(600.0, gt=0)
    max_prompt_chars: int = Field(2000, ge=200, description="excerpt of the request sent to the classifier")


class QualityPoints(Strict):
    """The preferences as named points on the quality dial (`balanced` is `quality_target`)."""

    cheapest: float = Field(0.7, gt=0, lt=1)
    best_quality: float = Field(0.99, gt=0, lt=1)


class RoutingPolicy(Strict):
    default_preference: Preference = Preference.BALANCED
    router: str | None = Field(
        "builtin", description="trained router artifact: 'builtin' (proxy/routing/model), a path (relative to the policy), or null"
    )
    quality_target: float | None = Field(
        0.84, gt=0, lt=1, description="the dial: cheapest model whose P(adequate) meets it; null = the decision matrix"
    )
    quality_points: QualityPoints = QualityPoints()
    reasoning_output_factor: float = Field(3.0, ge=1, description="hidden reasoning tokens: reasoning models' output cost x this")
    local_model: str = "ollama/qwen3:1.7b"
    prefer_local: bool = False
    allow_cloud_fallback: bool = True
    max_cost_per_request_usd: float | None = Field(None, gt=0)
    max_latency_s: float | None = Field(None, gt=0)
    max_tokens_per_request: int | None = Field(None, gt=0)
    default_max_output_tokens: int = Field(
        1024, gt=0, description="output tokens estimated (and reserved) per choice when a request sets no max_tokens"
    )
    unsupported_params: Literal["reject", "drop"] = Field(
        "reject", description="a named model that cannot honour n/logprobs: 400 (reject) or drop them and say so in a header"
    )
    local_capable: dict[Category, int] = Field({}, description="category -> highest complexity the local model handles (prefer_local)")
    latency_overhead_s: float = Field(0.5, ge=0, description="fixed part of the latency estimate")
    max_fallbacks: int = Field(3, ge=0, le=8)
    capability_order: tuple[str, ...] = Field((), description="models from most to least capable; ties within a tier when substituting")
    default_tier_by_complexity: dict[int, int] = Field({1: 4, 2: 2, 3: 2, 4: 2, 5: 1}, description="for categories without a matrix row")
    matrix: dict[Category, CategoryRoute] = {}
    rules: PreferenceRules = PreferenceRules()
    llm_classifier: LLMClassifierSettings = LLMClassifierSettings()

    @model_validator(mode="after")
    def _check(self) -> RoutingPolicy:
        dupes = sorted({m for m in self.capability_order if self.capability_order.count(m) > 1})
        if dupes:
            raise ValueError(f"capability_order lists {', '.join(dupes)} more than once")
        bad = [k for k, v in self.local_capable.items() if not 0 <= v <= 5]
        if bad:
            raise ValueError(f"local_capable values must be 0-5 (got {bad})")
        if sorted(self.default_tier_by_complexity) != list(COMPLEXITIES):
            raise ValueError("default_tier_by_complexity needs exactly the keys 1-5")
        return self

    def model_references(self) -> Iterator[tuple[str, str]]:
        """(field, model id) for every model this policy names, to check against the registry."""
        for category, row in self.matrix.items():
            for where, model_id in row.model_ids():
                yield f"matrix.{category}.{where}", model_id
        for i, model_id in enumerate(self.capability_order):
            yield f"capability_order[{i}]", model_id
        if self.llm_classifier.enabled:
            yield "llm_classifier.model", self.llm_classifier.model
