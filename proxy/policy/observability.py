"""What is recorded about requests (`policies/observability.yaml`)."""

from __future__ import annotations

from pydantic import Field

from proxy.policy.registry import Strict


class ObservabilityPolicy(Strict):
    log_prompts: bool = Field(False, description="include prompt text in decision logs (off: never)")
    key_name_labels: bool = Field(False, description="label cost/budget metrics by key name")
    decisions_kept: int = Field(1000, ge=0, description="last N decisions kept in a capped Redis stream")
