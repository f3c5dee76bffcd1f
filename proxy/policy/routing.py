"""Routing policy (`policies/routing.yaml`): decision matrix, preferences, knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from proxy.policy.registry import Strict

Preference = Literal["cheapest", "balanced", "best_quality"]


class RoutingPolicy(Strict):
    default_preference: Preference = "balanced"
    local_model: str = "ollama/qwen3:1.7b"
    prefer_local: bool = False
    allow_cloud_fallback: bool = True
    max_cost_per_request_usd: float | None = Field(None, gt=0)
    max_latency_s: float | None = Field(None, gt=0)
    max_tokens_per_request: int | None = Field(None, gt=0)
